package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
	"github.com/bale-build/bale/schemas"
)

// ArtifactType is the artifactType of the OCI artifact bale publishes.
const ArtifactType = "application/vnd.bale.release.v1"

// MediaTypeFile is the media type of each file's layer.
const MediaTypeFile = "application/octet-stream"

// AnnotationTitle names a layer's file, as oras does.
const AnnotationTitle = "org.opencontainers.image.title"

// The OCI empty config ("{}"), as the image spec defines it for artifacts.
const (
	emptyConfigType   = "application/vnd.oci.empty.v1+json"
	emptyConfigDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
)

// OCIOptions configure publishing to, and pulling from, a registry.
type OCIOptions struct {
	Jobs      int
	Insecure  bool
	Transport http.RoundTripper
	Keychain  authn.Keychain
	// MaxSize bounds what Pull accepts: the sizes an artifact's layers
	// declare, in all; 0 means DefaultMaxPull.
	MaxSize int64
}

func (o *OCIOptions) remote(ctx context.Context) []remote.Option {
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Transport == nil {
		o.Transport = remote.DefaultTransport
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(o.Keychain), remote.WithTransport(o.Transport), remote.WithJobs(o.Jobs)}
}

// ParseOCI parses oci://REGISTRY/REPO:TAG (or @DIGEST for pull).
func ParseOCI(to string, insecure, tagOnly bool) (name.Reference, error) {
	rest, ok := strings.CutPrefix(to, "oci://")
	if !ok {
		return nil, fmt.Errorf("destination %q: want oci://REGISTRY/REPO:TAG", to)
	}
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(rest, append(nopts, name.StrictValidation)...)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", to, err)
	}
	if _, isTag := ref.(name.Tag); tagOnly && !isTag {
		return nil, fmt.Errorf("destination %q: want a tag", to)
	}
	return ref, nil
}

// artifact is the manifest bale writes: ggcr's v1.Manifest has no
// artifactType field order guarantee of its own, so it is spelled out.
type artifact struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// fileLayer is a file of the output directory as a layer; it can be read
// again, so the registry client may retry.
type fileLayer struct{ f *File }

func (l fileLayer) Digest() (v1.Hash, error) { return v1.NewHash("sha256:" + l.f.SHA256) }
func (l fileLayer) DiffID() (v1.Hash, error) { return l.Digest() }
func (l fileLayer) Size() (int64, error)     { return l.f.Size, nil }
func (l fileLayer) MediaType() (types.MediaType, error) {
	return MediaTypeFile, nil
}
func (l fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.f.abs) }
func (l fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.f.abs) }

type staticLayer struct {
	b  []byte
	mt string
}

func (l staticLayer) Digest() (v1.Hash, error) {
	s := sha256.Sum256(l.b)
	return v1.NewHash("sha256:" + hex.EncodeToString(s[:]))
}
func (l staticLayer) DiffID() (v1.Hash, error)            { return l.Digest() }
func (l staticLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l staticLayer) MediaType() (types.MediaType, error) { return types.MediaType(l.mt), nil }
func (l staticLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(l.b))), nil
}
func (l staticLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (a rawManifest) RawManifest() ([]byte, error)         { return a.raw, nil }
func (a rawManifest) MediaType() (types.MediaType, error)  { return types.OCIManifestSchema1, nil }

type rawManifest struct{ raw []byte }

// OCI publishes the files of dir (see Collect) as one OCI artifact at
// oci://REGISTRY/REPO:TAG: artifactType ArtifactType, the empty config,
// one layer per file with its path as org.opencontainers.image.title, in
// Collect's order (checksum files last). Blobs the registry has are
// skipped; the manifest is put last, so the tag never names a missing
// blob. `oras pull` and `bale pull` fetch it back.
func OCI(ctx context.Context, dir, to string, opts OCIOptions) (*Report, error) {
	ref, err := ParseOCI(to, opts.Insecure, true)
	if err != nil {
		return nil, err
	}
	files, err := Collect(ctx, dir)
	if err != nil {
		return nil, err
	}
	ropts := opts.remote(ctx)
	p, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	g.Go(func() error { return p.Upload(gctx, repo, staticLayer{[]byte("{}"), emptyConfigType}) })
	m := artifact{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), ArtifactType: ArtifactType}
	m.Config = v1.Descriptor{MediaType: emptyConfigType, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(emptyConfigDigest, "sha256:")}, Size: 2, Data: []byte("{}")}
	rep := &Report{To: to, Files: files}
	for i := range files {
		f := &files[i]
		h, _ := v1.NewHash("sha256:" + f.SHA256)
		f.Location = h.String()
		// ggcr skips blobs the registry has (HEAD first) without saying
		// which, so the action does not claim an upload.
		f.Action = "pushed"
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: MediaTypeFile, Digest: h, Size: f.Size, Annotations: map[string]string{AnnotationTitle: f.Path}})
		g.Go(func() error {
			if err := p.Upload(gctx, repo, fileLayer{f}); err != nil {
				return fmt.Errorf("upload %s to %s: %w", f.Path, repo, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("publish %s to %s: %w", dir, to, err)
	}
	raw, err := json.Marshal(&m)
	if err != nil {
		return nil, err
	}
	if err := p.Put(ctx, ref, rawManifest{raw}); err != nil {
		return nil, fmt.Errorf("publish %s to %s: put manifest: %w", dir, to, err)
	}
	sum := sha256.Sum256(raw)
	rep.Digest = "sha256:" + hex.EncodeToString(sum[:])
	rep.count()
	return rep, nil
}

// maxArtifactManifest bounds the manifest Pull reads.
const maxArtifactManifest = 4 << 20

// DefaultMaxPull is OCIOptions.MaxSize's default: what the layers of one
// artifact may declare in all. It is the most one pack may hold
// (archive.DefaultLimits' total), so every artifact bale publishes fits.
const DefaultMaxPull = 64 << 30

// Pull fetches the artifact at oci://REGISTRY/REPO:TAG|@DIGEST into dir,
// which must be empty or absent, all or nothing: every layer's title must
// be a path bale's schema accepts (#RelPath) that neither repeats nor
// clashes with another, the sizes the layers declare must total at most
// opts.MaxSize and fit in the free space of dir's file system, all before
// a byte is fetched. Each layer is written into a staging directory beside
// dir and checked against its digest as it is written, then every .sha256
// and SHA256SUMS is checked against the files; only then does the staging
// directory become dir. A failed pull leaves dir as it was.
func Pull(ctx context.Context, from, dir string, opts OCIOptions) (*Report, error) {
	ref, err := ParseOCI(from, opts.Insecure, false)
	if err != nil {
		return nil, err
	}
	maxSize := opts.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxPull
	}
	ropts := opts.remote(ctx)
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", from, err)
	}
	var m artifact
	if err := strictjson.Unmarshal(desc.Manifest, maxArtifactManifest, &m); err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", from, err)
	}
	if m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("pull %s: artifactType %q, not bale's %q", from, m.ArtifactType, ArtifactType)
	}
	if len(m.Layers) > maxFiles {
		return nil, fmt.Errorf("pull %s: %d layers, more than %d", from, len(m.Layers), maxFiles)
	}
	rules, err := schemas.Compile()
	if err != nil {
		return nil, err
	}
	rep := &Report{To: dir, Digest: desc.Digest.String()}
	// files and dirs hold the titles so far and their parents: a title may
	// be neither a repeat nor a file's parent nor under a file.
	files, dirs := map[string]bool{}, map[string]bool{}
	var total int64
	for i, l := range m.Layers {
		title := l.Annotations[AnnotationTitle]
		if err := checkName(rules, title); err != nil {
			return nil, fmt.Errorf("pull %s: layer %d: title %w", from, i, err)
		}
		bad := files[title] || dirs[title]
		for p := path.Dir(title); p != "."; p = path.Dir(p) {
			bad = bad || files[p]
			dirs[p] = true
		}
		if bad {
			return nil, fmt.Errorf("pull %s: layer %d: title %q repeats, or is both a file and a directory", from, i, title)
		}
		files[title] = true
		if l.Digest.Algorithm != "sha256" || !digest.ValidHex(l.Digest.Hex) || l.Size < 0 {
			return nil, fmt.Errorf("pull %s: layer %q: digest %q, size %d: want a sha256 digest and a size", from, title, l.Digest, l.Size)
		}
		if l.Size > maxSize-total {
			return nil, fmt.Errorf("pull %s: layer %q declares %d bytes, which with the layers before it is more than the %d-byte cap (--max-size)", from, title, l.Size, maxSize)
		}
		total += l.Size
		rep.Files = append(rep.Files, File{Path: title, Size: l.Size, SHA256: l.Digest.Hex, Location: l.Digest.String(), Action: "pulled"})
	}
	stage, err := newStage(dir, total)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", from, err)
	}
	defer stage.abort()
	repo := ref.Context()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for i := range rep.Files {
		f := &rep.Files[i]
		g.Go(func() error {
			if err := fetch(gctx, stage.root, repo, f, ropts); err != nil {
				return fmt.Errorf("pull %s: %q: %w", from, f.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := CheckSums(rep.Files, func(f File) (io.ReadCloser, error) { return stage.root.Open(f.Path) }); err != nil {
		return nil, fmt.Errorf("pull %s: %w", from, err)
	}
	if err := stage.publish(); err != nil {
		return nil, fmt.Errorf("pull %s: %w", from, err)
	}
	return rep, nil
}

// checkName holds a file's path to the rule a spec's paths are held to
// (#RelPath: ASCII letters, digits, '.', '_', '+', '-' and '/' between
// segments; no "." or ".." segment; at most 255 characters), so no control
// character, line break or other invisible rune reaches a file name or a
// terminal.
func checkName(rules *schemas.Rules, p string) error {
	if err := rules.Check("#RelPath", p); err != nil {
		return fmt.Errorf("%q is not a safe relative path: %w", p, err)
	}
	if _, err := archive.CleanName(p); err != nil {
		return fmt.Errorf("%q: %w", p, err)
	}
	return nil
}

// fetch writes one layer to f.Path under root, checking its size and
// digest as it is written.
func fetch(ctx context.Context, root *os.Root, repo name.Repository, f *File, ropts []remote.Option) error {
	l, err := remote.Layer(repo.Digest(f.Location), append(ropts, remote.WithContext(ctx))...)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	if dir := path.Dir(f.Path); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	out, err := root.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(rc, f.Size+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256) {
		err = fmt.Errorf("the registry served %d bytes with sha256 %x, the manifest says %d bytes, %s", n, h.Sum(nil), f.Size, f.Location)
	}
	return err
}
