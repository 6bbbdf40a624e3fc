package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// Limits on what an image source may describe. Real images are far below
// them; anything above is a broken or hostile source, refused before bale
// plans work in proportion to it.
// The bytes of one manifest or index and the layers of one manifest are
// the pack's limits (pack.MaxManifestSize, pack.MaxLayers), and so is the
// number of blobs an image's chosen manifests may list
// (pack.MaxImageBlobs): the resolver refuses what the pack cannot hold as
// soon as it sees it, not after fetching the rest.
const (
	// MaxIndexEntries bounds the manifests one index or index.json lists.
	MaxIndexEntries = 10_000
	// MaxConfigSize bounds the bytes of one image config.
	MaxConfigSize = 16 << 20
	// MaxBlobSize bounds the size a descriptor may declare for a layer
	// (or any blob): the largest entry bale's own pack reader accepts
	// (archive.DefaultLimits), so nothing bale plans makes a pack that
	// `bale verify` refuses, and absurd sizes (2^63-1) are refused by
	// name before any arithmetic on them.
	MaxBlobSize = 8 << 30
)

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

func isIndexType(mt string) bool {
	return mt == string(types.OCIImageIndex) || mt == string(types.DockerManifestList)
}

func isManifestType(mt string) bool {
	return mt == string(types.OCIManifestSchema1) || mt == string(types.DockerManifestSchema2)
}

// parseManifest parses raw manifest bytes and settles their media type:
// the document's own mediaType, else the one its descriptor or the
// registry gave, else what its shape says (OCI allows omitting it).
func parseManifest(raw []byte, hint string) (*pack.ManifestOrIndex, string, error) {
	if len(raw) > pack.MaxManifestSize {
		return nil, "", fmt.Errorf("manifest is %d bytes, more than the %d-byte limit", len(raw), pack.MaxManifestSize)
	}
	var m pack.ManifestOrIndex
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", fmt.Errorf("parse manifest: %w", err)
	}
	// Registries append parameters ("; charset=utf-8") to Content-Type.
	hint, _, _ = strings.Cut(hint, ";")
	hint = strings.TrimSpace(hint)
	mt := m.MediaType
	switch {
	case mt != "":
	case isIndexType(hint) || isManifestType(hint):
		mt = hint
	case m.Manifests != nil:
		mt = string(types.OCIImageIndex)
	case m.Config != nil:
		mt = string(types.OCIManifestSchema1)
	}
	switch {
	case isIndexType(mt):
		if m.Config != nil || m.Layers != nil {
			return nil, "", fmt.Errorf("index of type %s has config or layers", mt)
		}
		if len(m.Manifests) > MaxIndexEntries {
			return nil, "", fmt.Errorf("index lists %d manifests, more than the limit of %d", len(m.Manifests), MaxIndexEntries)
		}
	case isManifestType(mt):
		if m.Config == nil {
			return nil, "", fmt.Errorf("manifest of type %s has no config", mt)
		}
		if m.Manifests != nil {
			return nil, "", fmt.Errorf("manifest of type %s lists manifests", mt)
		}
		if len(m.Layers) > pack.MaxLayers {
			return nil, "", fmt.Errorf("manifest has %d layers, more than the limit of %d a pack holds for one manifest", len(m.Layers), pack.MaxLayers)
		}
	case mt == string(types.DockerManifestSchema1) || mt == string(types.DockerManifestSchema1Signed):
		return nil, "", fmt.Errorf("docker schema 1 manifests (%s) are not supported", mt)
	default:
		return nil, "", fmt.Errorf("unsupported manifest media type %q", mt)
	}
	if m.SchemaVersion != 2 {
		return nil, "", fmt.Errorf("manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	return &m, mt, nil
}

// checkDesc validates a descriptor's digest and size before either is used
// for a request or a path.
func checkDesc(d pack.Descriptor, what string, maxSize int64) error {
	if !plan.ValidDigest(d.Digest) {
		return fmt.Errorf("%s digest %q: want sha256:<64 lowercase hex>", what, d.Digest)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s %s: negative size %d", what, d.Digest, d.Size)
	}
	if d.Size > maxSize {
		return fmt.Errorf("%s %s: declared size %d exceeds the %d-byte limit", what, d.Digest, d.Size, maxSize)
	}
	return nil
}

// imageSource reads one image's manifests and blobs from wherever they
// live. Implementations verify manifests; blob readers are verified by the
// caller.
type imageSource interface {
	// manifest returns the manifest or index with digest d, its bytes
	// verified against d (and size, when size >= 0), and the media type the
	// source reported, if any.
	manifest(ctx context.Context, d string, size int64) ([]byte, string, error)
	// blob opens the config or layer blob d.
	blob(ctx context.Context, d string) (io.ReadCloser, error)
}

// checkManifestBytes verifies raw against the digest and size expected.
func checkManifestBytes(raw []byte, d string, size int64) error {
	if len(raw) > pack.MaxManifestSize {
		return fmt.Errorf("manifest %s is %d bytes, more than the %d-byte limit", d, len(raw), pack.MaxManifestSize)
	}
	if got := sha256Digest(raw); got != d {
		return fmt.Errorf("manifest bytes hash to %s, not the requested %s", got, d)
	}
	if size >= 0 && int64(len(raw)) != size {
		return fmt.Errorf("manifest %s is %d bytes, its pack.Descriptor says %d", d, len(raw), size)
	}
	return nil
}

// Image pins an image: its manifest or index digest and, for every chosen
// platform, the manifest, config and layer blobs. A digest pinned by the
// spec (or written into the ref) that the source disagrees with is an
// error.
func (r *Resolver) Image(ctx context.Context, specDir string, img spec.Image) (plan.Input, error) {
	var (
		in   plan.Input
		err  error
		what string
	)
	switch {
	case img.Ref != "":
		what = img.Ref
		in, err = r.imageRegistry(ctx, img)
	case img.Layout != nil:
		what = img.Layout.Path
		if img.Layout.RefName != "" {
			what += " " + img.Layout.RefName
		}
		in, err = r.imageLayout(ctx, specDir, img)
	case img.Tarball != nil:
		what = img.Tarball.Path
		if img.Tarball.Tag != "" {
			what += " " + img.Tarball.Tag
		}
		in, err = r.imageTarball(ctx, specDir, img)
	default:
		what, err = "no source", errors.New("set one of ref, layout and tarball")
	}
	if err != nil {
		return plan.Input{}, inputErr("image", img.Name, what, err)
	}
	return in, nil
}

// finishImage fills what every image source shares: the pin check and the
// per-platform manifests.
func (r *Resolver) finishImage(ctx context.Context, img spec.Image, src imageSource, raw []byte, hint string, tags []string, source plan.Source) (plan.Input, error) {
	digest := sha256Digest(raw)
	if img.Digest != "" && img.Digest != digest {
		return plan.Input{}, &movedError{what: "source", pinned: img.Digest, has: digest}
	}
	pinned, mt, err := r.pin(ctx, src, raw, hint, img.Platforms)
	if err != nil {
		return plan.Input{}, err
	}
	if len(img.Tags) > 0 {
		tags = append([]string(nil), img.Tags...)
	}
	if tags == nil {
		tags = []string{}
	}
	pinned.Tags = tags
	return plan.Input{
		Kind:      plan.KindImage,
		Name:      img.Name,
		Source:    source,
		Digest:    digest,
		Size:      int64(len(raw)),
		MediaType: mt,
		Image:     pinned,
	}, nil
}

// pin walks from a root manifest or index to the blobs of the chosen
// platforms.
func (r *Resolver) pin(ctx context.Context, src imageSource, raw []byte, hint string, want []string) (*plan.Image, string, error) {
	m, mt, err := parseManifest(raw, hint)
	if err != nil {
		return nil, "", err
	}
	if !isIndexType(mt) {
		man, err := r.pinManifest(ctx, src, m, mt, sha256Digest(raw), int64(len(raw)), "")
		if err != nil {
			return nil, "", err
		}
		if len(want) > 0 && !matchAny(want, man.Platform) {
			return nil, "", fmt.Errorf("image is a single manifest for platform %q, not one of %s", man.Platform, strings.Join(want, ", "))
		}
		return &plan.Image{Manifests: []plan.Manifest{man}}, mt, nil
	}
	chosen, err := choosePlatforms(m.Manifests, want)
	if err != nil {
		return nil, "", err
	}
	out := &plan.Image{Index: true, Platforms: []string{}, Manifests: []plan.Manifest{}}
	// The blobs the plan will record, counted as the manifests arrive
	// (plan.ImageEntries counts the same way): past what a pack holds, no
	// further manifest is fetched.
	blobs := 1
	for i, c := range chosen {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		craw, cmt, err := src.manifest(ctx, c.Digest, c.Size)
		if err != nil {
			return nil, "", fmt.Errorf("platform %s: %w", c.Platform, err)
		}
		if c.MediaType != "" {
			cmt = c.MediaType
		}
		cm, cmt, err := parseManifest(craw, cmt)
		if err != nil {
			return nil, "", fmt.Errorf("platform %s manifest %s: %w", c.Platform, c.Digest, err)
		}
		if isIndexType(cmt) {
			return nil, "", fmt.Errorf("platform %s: %s is a nested index, which bale does not support", c.Platform, c.Digest)
		}
		if blobs += 2 + len(cm.Layers); blobs > pack.MaxImageBlobs {
			return nil, "", fmt.Errorf("the manifests of %d of its %d chosen platforms list more than %d blobs (manifests, configs and layers), more than a pack holds; stopped at platform %s", i+1, len(chosen), pack.MaxImageBlobs, c.Platform)
		}
		man, err := r.pinManifest(ctx, src, cm, cmt, c.Digest, c.Size, c.Platform.String())
		if err != nil {
			return nil, "", fmt.Errorf("platform %s: %w", c.Platform, err)
		}
		out.Platforms = append(out.Platforms, man.Platform)
		out.Manifests = append(out.Manifests, man)
	}
	// An index that lists anything not chosen (another platform, an
	// attestation) is written to the pack filtered, so the pack never
	// names a manifest it does not carry.
	keep := make(map[string]bool, len(out.Manifests))
	for _, man := range out.Manifests {
		keep[man.Digest] = true
	}
	for _, d := range m.Manifests {
		if !keep[d.Digest] {
			filtered, err := plan.FilterIndex(raw, keep)
			if err != nil {
				return nil, "", err
			}
			out.Filtered = &plan.Blob{Digest: sha256Digest(filtered), Size: int64(len(filtered)), MediaType: mt}
			break
		}
	}
	return out, mt, nil
}

// pinManifest records one image manifest. Without a platform from an index
// the config is read for it, verified against its digest.
func (r *Resolver) pinManifest(ctx context.Context, src imageSource, m *pack.ManifestOrIndex, mt, digest string, size int64, plat string) (plan.Manifest, error) {
	if err := checkDesc(*m.Config, "config", MaxConfigSize); err != nil {
		return plan.Manifest{}, err
	}
	man := plan.Manifest{
		Platform:  plat,
		Digest:    digest,
		Size:      size,
		MediaType: mt,
		Config:    plan.Blob{Digest: m.Config.Digest, Size: m.Config.Size, MediaType: m.Config.MediaType},
		Layers:    make([]plan.Blob, 0, len(m.Layers)),
	}
	for i, l := range m.Layers {
		if err := checkDesc(l, fmt.Sprintf("layer %d", i), MaxBlobSize); err != nil {
			return plan.Manifest{}, err
		}
		man.Layers = append(man.Layers, plan.Blob{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	}
	if plat != "" {
		return man, nil
	}
	rc, err := src.blob(ctx, m.Config.Digest)
	if err != nil {
		return plan.Manifest{}, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	defer rc.Close()
	cfg, err := io.ReadAll(newVerifier(rc, m.Config.Digest, m.Config.Size, "config"))
	if err != nil {
		return plan.Manifest{}, err
	}
	var p pack.Platform
	// A config that is not an image config (an artifact) has no platform;
	// that is not an error.
	if json.Unmarshal(cfg, &p) == nil {
		man.Platform = p.String()
	}
	return man, nil
}

// choosePlatforms picks the index entries to pin, sorted by platform. With
// no platforms asked for, it takes every entry that names a real platform:
// entries without one, or "unknown/unknown" (build attestations), are not
// runnable images. A requested platform without a variant matches a sole
// entry with that os/arch and some variant ("linux/arm64" finds
// "linux/arm64/v8").
func choosePlatforms(entries []pack.Descriptor, want []string) ([]pack.Descriptor, error) {
	byPlat := map[string]pack.Descriptor{}
	var all []string
	for i, e := range entries {
		if err := checkDesc(e, fmt.Sprintf("index entry %d", i), pack.MaxManifestSize); err != nil {
			return nil, err
		}
		p := e.Platform.String()
		if p == "" || e.Platform.OS == "unknown" {
			continue
		}
		if prev, dup := byPlat[p]; dup && prev.Digest != e.Digest {
			return nil, fmt.Errorf("index lists platform %s twice (%s and %s)", p, prev.Digest, e.Digest)
		}
		if _, dup := byPlat[p]; !dup {
			all = append(all, p)
		}
		byPlat[p] = e
	}
	if len(want) == 0 {
		want = all
		if len(want) == 0 {
			return nil, errors.New("index lists no platform manifests")
		}
	}
	seen := map[string]bool{}
	var out []pack.Descriptor
	for _, w := range want {
		e, ok := byPlat[w]
		if !ok {
			var cands []string
			for _, p := range all {
				if strings.Count(w, "/") == 1 && strings.HasPrefix(p, w+"/") {
					cands = append(cands, p)
				}
			}
			if len(cands) != 1 {
				sort.Strings(all)
				return nil, fmt.Errorf("index has no manifest for platform %s (it has %s)", w, strings.Join(all, ", "))
			}
			e = byPlat[cands[0]]
		}
		p := e.Platform.String()
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Platform.String() < out[j].Platform.String() })
	return out, nil
}

// matchAny reports whether platform p satisfies one of want, a want
// without variant matching any variant.
func matchAny(want []string, p string) bool {
	for _, w := range want {
		if w == p || (strings.Count(w, "/") == 1 && strings.HasPrefix(p, w+"/")) {
			return true
		}
	}
	return false
}

// --- registry ---

// OpenBlob opens one blob of an image input, from the input's source: the
// root manifest or index, a platform manifest, a config or a layer. The
// digest must be one the plan lists for the input. The reader fails at its
// end, instead of returning io.EOF, when the bytes do not hash to digest or
// are not the planned size, so a source changed since planning never goes
// unnoticed. The returned size is the planned one. Read the blob promptly:
// a registry body idle for Options.Timeout is abandoned.
func (r *Resolver) OpenBlob(ctx context.Context, in plan.Input, digest string) (io.ReadCloser, int64, error) {
	rc, size, err := r.openBlob(ctx, in, digest, true)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s of image %s (%s): %w", digest, in.Name, sourceString(in.Source), err)
	}
	return rc, size, nil
}

// openBlob opens a blob of in; verify hashes config and layer blobs on
// the way.
func (r *Resolver) openBlob(ctx context.Context, in plan.Input, digest string, verify bool) (io.ReadCloser, int64, error) {
	if in.Kind != plan.KindImage || in.Image == nil {
		return nil, 0, fmt.Errorf("input %s is not an image", in.Key())
	}
	if !plan.ValidDigest(digest) {
		return nil, 0, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", digest)
	}
	isManifest, size, ok := findBlob(in, digest)
	if !ok {
		return nil, 0, fmt.Errorf("the plan lists no blob %s for this image", digest)
	}
	if max := blobLimit(isManifest); size < 0 || size > max {
		return nil, 0, fmt.Errorf("the plan gives blob %s a size of %d bytes, outside 0..%d", digest, size, max)
	}
	src, err := r.sourceFor(ctx, in)
	if err != nil {
		return nil, 0, err
	}
	if isManifest {
		raw, _, err := src.manifest(ctx, digest, size)
		var ee *egressError
		switch {
		case errors.As(err, &ee):
			return nil, 0, err
		case err != nil:
			return nil, 0, fmt.Errorf("source changed since planning? %w", err)
		}
		return io.NopCloser(bytes.NewReader(raw)), size, nil
	}
	rc, err := src.blob(ctx, digest)
	if err != nil {
		return nil, 0, err
	}
	if !verify {
		return limitedBody{io.LimitReader(rc, size+1), rc}, size, nil
	}
	return newVerifier(rc, digest, size, "blob"), size, nil
}

// BlobFile returns the path of blob digest of image input in when its
// source keeps blobs as plain files (an OCI layout directory), so the
// executor can take the file into its store by path. The store verifies
// the bytes; BlobFile vouches that the path is the layout's regular file
// for that digest, reached from the workspace root with no symbolic link
// at any element (checked through os.Root, as OpenBlob opens it). Between
// this check and the store's open a local writer could swap an element
// for a link; the bytes must still hash to digest, and a caller that
// needs no such window uses OpenBlob, which reads the checked file.
func (r *Resolver) BlobFile(ctx context.Context, in plan.Input, digest string) (string, bool) {
	if in.Kind != plan.KindImage || in.Image == nil || in.Source.Type != plan.SourceLayout || !plan.ValidDigest(digest) {
		return "", false
	}
	if _, size, ok := findBlob(in, digest); !ok || size < 0 || size > MaxBlobSize {
		return "", false
	}
	ls := &layoutSource{r: r, rel: in.Source.Path}
	rel, err := ls.blobRel(digest)
	if err != nil {
		return "", false
	}
	f, _, err := r.openLocal(rel, anyLinks)
	if err != nil {
		return "", false
	}
	f.Close()
	return filepath.Join(r.root, filepath.FromSlash(rel)), true
}

// blobLimit is the largest size a plan may give a manifest or other blob.
func blobLimit(isManifest bool) int64 {
	if isManifest {
		return pack.MaxManifestSize
	}
	return MaxBlobSize
}

// findBlob looks digest up among the input's manifests and blobs.
func findBlob(in plan.Input, d string) (isManifest bool, size int64, ok bool) {
	if d == in.Digest {
		return true, in.Size, true
	}
	for _, m := range in.Image.Manifests {
		if m.Digest == d {
			return true, m.Size, true
		}
	}
	for _, m := range in.Image.Manifests {
		if m.Config.Digest == d {
			return false, m.Config.Size, true
		}
		for _, l := range m.Layers {
			if l.Digest == d {
				return false, l.Size, true
			}
		}
	}
	return false, 0, false
}

// sourceFor reopens the source an image input was pinned from.
func (r *Resolver) sourceFor(ctx context.Context, in plan.Input) (imageSource, error) {
	switch in.Source.Type {
	case plan.SourceRegistry:
		ref, err := r.parseRef(in.Source.Ref)
		if err != nil {
			return nil, err
		}
		if err := r.offline(in.Source.Ref); err != nil {
			return nil, err
		}
		return &registrySource{r: r, repo: ref.Context()}, nil
	case plan.SourceLayout:
		if err := checkRel(in.Source.Path); err != nil {
			return nil, err
		}
		// Blobs are opened by digest; index.json need not be read again.
		return &layoutSource{r: r, rel: in.Source.Path}, nil
	case plan.SourceTarball:
		if err := checkRel(in.Source.Path); err != nil {
			return nil, err
		}
		src, _, err := r.openTarball(ctx, in.Source.Path, in.Source.Select)
		return src, err
	default:
		return nil, fmt.Errorf("source type %q is not an image source", in.Source.Type)
	}
}

// sourceString describes a plan source for errors.
func sourceString(s plan.Source) string {
	for _, v := range []string{s.Ref, s.Path, s.URL} {
		if v != "" {
			if s.Select != "" {
				return v + " " + s.Select
			}
			return v
		}
	}
	return s.Type
}
