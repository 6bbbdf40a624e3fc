// Package push loads a verified bale bootstrap pack into a registry on the
// far side of the air gap: `bale push`.
//
// Push verifies the pack offline (verify.PackAt) and refuses one that
// fails, or whose sha256 is not the one the caller expects. That one read
// of the pack is also the scan push works from: the pack reader keeps
// every entry's place, size and sha256 and the image indexes and
// manifests, and the descriptor walker (pack.ImageWalker) says what each
// image needs. Then each blob the registry lacks is read again from its
// own gzip members (pack.File.Open, checked against the verified digest as
// it streams) and uploaded, up to Jobs at once. Nothing is extracted to
// disk; memory holds manifests, and a decompressor per upload.
//
// Images keep their digests: every index, manifest, config and layer is
// pushed byte for byte, children before the index that names them, and the
// tags the pack records are put last. Charts become Helm OCI artifacts
// (the config and layer media types `helm push` writes), so `helm pull
// oci://…` fetches them.
//
// Blobs are checked with HEAD first and skipped when present; a blob the
// registry says it has is read back and hashed (unless TrustExisting), so
// a registry that claims a blob it does not hold is caught. An interrupted
// push leaves only whole blobs behind (a registry commits a blob only when
// its digest matches), so running it again finishes the job.
package push

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/inspect"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/verify"
)

// Helm's OCI media types, as `helm push` writes them.
const (
	MediaTypeHelmConfig = "application/vnd.cncf.helm.config.v1+json"
	MediaTypeHelmChart  = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// ChartsPrefix is the repository path below the target prefix that charts
// are pushed under: PREFIX/charts/NAME:VERSION. It keeps a chart and an
// image of the same name apart.
const ChartsPrefix = "charts"

// DefaultJobs is the default bound on concurrent uploads and checks.
const DefaultJobs = 4

// Options configure Push.
type Options struct {
	// Target is REGISTRY[/PREFIX], e.g. "mirror.example:5000/airgap".
	Target string
	// SHA256, if set, is the pack's expected hex sha256 (its
	// artifactSha256); a pack with another is refused.
	SHA256 string
	// Jobs bounds concurrent uploads and checks; 0 means DefaultJobs.
	Jobs int
	// Insecure allows plain HTTP to the registry.
	Insecure bool
	// Transport is the base HTTP transport (TLS settings, custom CA);
	// nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Keychain resolves credentials; nil means authn.DefaultKeychain
	// (docker config and credential helpers).
	Keychain authn.Keychain
	// TrustExisting skips reading back blobs the registry says it has.
	TrustExisting bool
	// ValuesDir, if set, receives NAME-VERSION.values-airgap.yaml for each
	// chart whose default values reference images (see ValuesAirgap).
	ValuesDir string
}

// Report lists what Push put where. It encodes as JSON for
// `bale push --format json`.
type Report struct {
	Pack string `json:"pack"`
	// SHA256 is the pack's hex sha256.
	SHA256 string `json:"artifactSha256"`
	Target string `json:"target"`
	// Refs are every reference pushed, images then charts, each with the
	// digest the registry reports for it.
	Refs  []Ref `json:"refs"`
	Blobs Blobs `json:"blobs"`
	// ValuesFiles are the values-airgap files written.
	ValuesFiles []string `json:"valuesFiles"`
}

// Ref is one reference pushed.
type Ref struct {
	// Kind is "image" or "chart".
	Kind string `json:"kind"`
	// Name is the image's or chart's name in the pack.
	Name string `json:"name"`
	// Ref is the full reference: REGISTRY/PREFIX/REPO:TAG, or @DIGEST for
	// an image without tags.
	Ref       string `json:"ref"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
}

// Blobs counts blob transfers, one per blob and repository.
type Blobs struct {
	Uploaded      int   `json:"uploaded"`
	UploadedBytes int64 `json:"uploadedBytes"`
	Existing      int   `json:"existing"`
	ExistingBytes int64 `json:"existingBytes"`
	// Checked counts existing blobs read back and hashed.
	Checked int `json:"checked"`
}

// target is one repository the push writes, and what goes there.
type target struct {
	repo name.Repository
	// blobs are the digests of the configs and layers it needs.
	blobs map[string]blobInfo
	// docs are the manifests to put, children first.
	docs []doc
	// tags are the tags to put on top.
	tags []string
	kind string
	name string
}

type blobInfo struct {
	size      int64
	mediaType string
}

// doc is a manifest or index to put, byte for byte.
type doc struct {
	digest    string
	mediaType string
	raw       []byte
}

func (d doc) RawManifest() ([]byte, error)        { return d.raw, nil }
func (d doc) MediaType() (types.MediaType, error) { return types.MediaType(d.mediaType), nil }

// Push verifies the pack at packPath and pushes it as the package
// documentation describes.
func Push(ctx context.Context, packPath string, opts Options) (*Report, error) {
	if _, _, err := ParseTarget(opts.Target, opts.Insecure); err != nil {
		return nil, err
	}
	f, size, err := pack.OpenFile(packPath)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	defer f.Close()
	return PushAt(ctx, f, size, packPath, opts)
}

// PushAt is Push of the pack in r, size bytes, named packPath (in the
// report, and for the NAME.sha256 beside it): it reads r through once to
// verify and scan the pack, and again only for the blobs the registry
// lacks, each from its own gzip members.
func PushAt(ctx context.Context, r io.ReaderAt, size int64, packPath string, opts Options) (*Report, error) {
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	if opts.Transport == nil {
		opts.Transport = remote.DefaultTransport
	}
	reg, prefix, err := ParseTarget(opts.Target, opts.Insecure)
	if err != nil {
		return nil, err
	}
	vrep, pr, err := verify.PackAt(ctx, r, size, packPath, archive.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", packPath, err)
	}
	if !vrep.OK() {
		return nil, fmt.Errorf("push %s: refusing a pack that fails verification: %w", packPath, vrep.Err())
	}
	if opts.SHA256 != "" && !strings.EqualFold(opts.SHA256, vrep.SHA256) {
		return nil, fmt.Errorf("push %s: refusing the pack: its sha256 is %s, --sha256 expects %s", packPath, vrep.SHA256, opts.SHA256)
	}
	c, err := inspect.Read(ctx, pr)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", packPath, err)
	}
	c.Report.Path = packPath
	p := &pusher{opts: opts, reg: reg, clients: map[string]*http.Client{}}
	p.remoteOpts = []remote.Option{
		remote.WithAuthFromKeychain(opts.Keychain),
		remote.WithTransport(opts.Transport),
		remote.WithNondistributable,
		// A blob's bytes come from the pack stream once; a retry would
		// need them again. A failed push is retried by running it again.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}
	if p.rp, err = remote.NewPusher(p.remoteOpts...); err != nil {
		return nil, err
	}
	targets, err := placement(c, reg, prefix)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", packPath, err)
	}
	rep := &Report{Pack: packPath, SHA256: vrep.SHA256, Target: opts.Target, Refs: []Ref{}, ValuesFiles: []string{}}
	if err := p.run(ctx, pr, c, targets, rep); err != nil {
		return nil, fmt.Errorf("push %s to %s: %w", packPath, opts.Target, err)
	}
	if opts.ValuesDir != "" {
		files, err := WriteValuesAirgap(opts.ValuesDir, c.Report.Charts, reg, prefix)
		if err != nil {
			return nil, err
		}
		rep.ValuesFiles = files
	}
	return rep, nil
}

// ParseTarget splits REGISTRY[/PREFIX] into the registry and the prefix.
func ParseTarget(s string, insecure bool) (name.Registry, string, error) {
	s = strings.TrimSuffix(s, "/")
	host, prefix, _ := strings.Cut(s, "/")
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, append(nopts, name.StrictValidation)...)
	if err != nil || host == "" {
		return name.Registry{}, "", fmt.Errorf("push target %q: want REGISTRY[/PREFIX]: %v", s, err)
	}
	if prefix != "" {
		// The prefix must be a valid repository path on its own.
		if _, err := name.NewRepository(host+"/"+prefix, nopts...); err != nil {
			return name.Registry{}, "", fmt.Errorf("push target %q: prefix %q: %w", s, prefix, err)
		}
	}
	return reg, prefix, nil
}

// repository returns REGISTRY/PREFIX/p.
func repository(reg name.Registry, prefix, p string) (name.Repository, error) {
	full := path.Join(prefix, p)
	opts := []name.Option{}
	if reg.Scheme() == "http" {
		opts = append(opts, name.Insecure)
	}
	return name.NewRepository(reg.RegistryStr()+"/"+full, opts...)
}

// placement decides which repository each image and chart goes to and what
// each repository needs.
func placement(c *inspect.Contents, reg name.Registry, prefix string) ([]*target, error) {
	byRepo := map[string]*target{}
	var order []*target
	get := func(repo name.Repository, kind, nm string) *target {
		t := byRepo[repo.String()]
		if t == nil {
			t = &target{repo: repo, blobs: map[string]blobInfo{}, kind: kind, name: nm}
			byRepo[repo.String()] = t
			order = append(order, t)
		}
		return t
	}
	// Images in the pack index's order (by name), so the report is stable.
	imgs := slices.Clone(c.Report.Images)
	slices.SortFunc(imgs, func(a, b inspect.Image) int { return strings.Compare(a.Name, b.Name) })
	for _, im := range imgs {
		docs, blobs, err := imageContent(c.Images[im.Name])
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Name, err)
		}
		type dest struct {
			repo name.Repository
			tag  string
		}
		var dests []dest
		for _, tag := range im.Tags {
			ref, err := name.ParseReference(tag, name.WeakValidation)
			if err != nil {
				return nil, fmt.Errorf("image %s: tag %q: %w", im.Name, tag, err)
			}
			repo, err := repository(reg, prefix, ref.Context().RepositoryStr())
			if err != nil {
				return nil, fmt.Errorf("image %s: tag %q: %w", im.Name, tag, err)
			}
			t, _ := ref.(name.Tag)
			dests = append(dests, dest{repo, t.TagStr()})
		}
		if len(dests) == 0 {
			repo, err := repository(reg, prefix, im.Name)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", im.Name, err)
			}
			dests = append(dests, dest{repo: repo})
		}
		for _, d := range dests {
			t := get(d.repo, "image", im.Name)
			if t.kind != "image" || t.name != im.Name {
				return nil, fmt.Errorf("image %s: repository %s is also the target of %s %s", im.Name, d.repo, t.kind, t.name)
			}
			for k, v := range blobs {
				t.blobs[k] = v
			}
			for _, dc := range docs {
				if !slices.ContainsFunc(t.docs, func(x doc) bool { return x.digest == dc.digest }) {
					t.docs = append(t.docs, dc)
				}
			}
			if d.tag != "" && !slices.Contains(t.tags, d.tag) {
				t.tags = append(t.tags, d.tag)
			}
		}
	}
	for _, ch := range c.Report.Charts {
		repo, err := repository(reg, prefix, path.Join(ChartsPrefix, ch.Name))
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", ch.Path, err)
		}
		t := get(repo, "chart", ch.Name)
		if t.kind != "chart" || len(t.docs) > 0 {
			return nil, fmt.Errorf("chart %s: repository %s is also the target of %s %s", ch.Path, repo, t.kind, t.name)
		}
		meta := c.ChartMeta[ch.Path]
		m, err := chartManifest(ch, meta, c.Report.SourceDateEpoch)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", ch.Path, err)
		}
		t.blobs["sha256:"+ch.SHA256] = blobInfo{size: ch.Size, mediaType: MediaTypeHelmChart}
		t.blobs[digestOf(meta)] = blobInfo{size: int64(len(meta)), mediaType: MediaTypeHelmConfig}
		t.docs = append(t.docs, m)
		t.tags = append(t.tags, strings.ReplaceAll(ch.Version, "+", "_"))
	}
	return order, nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// imageContent returns the manifests of an image, children before
// parents, and the configs and layers they name, from what the descriptor
// walker found.
func imageContent(g *pack.Graph) ([]doc, map[string]blobInfo, error) {
	if g == nil || len(g.Docs) == 0 {
		return nil, nil, errors.New("the pack holds none of its manifests")
	}
	var docs []doc
	blobs := map[string]blobInfo{}
	for _, d := range g.Docs {
		if d.MediaType == "" {
			return nil, nil, fmt.Errorf("manifest %s: no media type", d.Digest)
		}
		docs = append(docs, doc{digest: d.Digest, mediaType: d.MediaType, raw: d.Raw})
	}
	for _, m := range g.Manifests {
		blobs[m.Config.Digest] = blobInfo{size: m.Config.Size, mediaType: m.Config.MediaType}
		for _, l := range m.Layers {
			blobs[l.Digest] = blobInfo{size: l.Size, mediaType: l.MediaType}
		}
	}
	for dg, b := range blobs {
		if !digest.Valid(dg) || b.size < 0 {
			return nil, nil, fmt.Errorf("blob %q: not a sha256 digest", dg)
		}
		if b.mediaType == "" {
			b.mediaType = "application/octet-stream"
			blobs[dg] = b
		}
	}
	return docs, blobs, nil
}

// pusher holds one push's clients and counters.
type pusher struct {
	opts       Options
	reg        name.Registry
	rp         *remote.Pusher
	remoteOpts []remote.Option

	mu      sync.Mutex
	clients map[string]*http.Client

	uploaded, existing, checked atomic.Int64
	upBytes, existBytes         atomic.Int64
}

// client returns an authenticated client for repo, scoped to push.
func (p *pusher) client(ctx context.Context, repo name.Repository) (*http.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[repo.String()]; ok {
		return c, nil
	}
	auth, err := authn.Resolve(ctx, p.opts.Keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo, err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, p.opts.Transport, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", repo, err)
	}
	c := &http.Client{Transport: rt}
	p.clients[repo.String()] = c
	return c, nil
}

func blobURL(repo name.Repository, digest string) string {
	return fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), digest)
}

// exists asks the registry whether repo has the blob. A 200 whose length
// or digest headers disagree with the pack is an error, not a skip.
func (p *pusher) exists(ctx context.Context, repo name.Repository, digest string, size int64) (bool, error) {
	c, err := p.client(ctx, repo)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, blobURL(repo, digest), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, fmt.Errorf("check blob %s in %s: %w", digest, repo, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("check blob %s in %s: %w", digest, repo, transport.CheckError(resp, http.StatusOK, http.StatusNotFound))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		return false, fmt.Errorf("check blob %s in %s: the registry says it has it with %d bytes, the pack's is %d", digest, repo, resp.ContentLength, size)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != digest {
		return false, fmt.Errorf("check blob %s in %s: the registry says it has it as %s", digest, repo, got)
	}
	return true, nil
}

// readBack fetches a blob the registry says it has and checks its digest
// and size.
func (p *pusher) readBack(ctx context.Context, repo name.Repository, digest string, size int64) error {
	c, err := p.client(ctx, repo)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, blobURL(repo, digest), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("read back blob %s from %s: %w", digest, repo, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fmt.Errorf("read back blob %s from %s, which the registry said it has: %w", digest, repo, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, size+1))
	if err != nil {
		return fmt.Errorf("read back blob %s from %s: %w", digest, repo, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != size || got != digest {
		return fmt.Errorf("read back blob %s from %s: the registry said it has it, but serves %d bytes with digest %s (want %d bytes)", digest, repo, n, got, size)
	}
	return nil
}

// run does the push proper: checks, uploads, manifests, tags, report.
func (p *pusher) run(ctx context.Context, pr *pack.Reader, c *inspect.Contents, targets []*target, rep *Report) error {
	// missing maps a blob digest to the repositories that lack it.
	missing := map[string][]name.Repository{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.opts.Jobs)
	for _, t := range targets {
		for _, dg := range slices.Sorted(maps.Keys(t.blobs)) {
			b := t.blobs[dg]
			g.Go(func() error {
				ok, err := p.exists(gctx, t.repo, dg, b.size)
				if err != nil {
					return err
				}
				if ok {
					p.existing.Add(1)
					p.existBytes.Add(b.size)
					if !p.opts.TrustExisting {
						if err := p.readBack(gctx, t.repo, dg, b.size); err != nil {
							return err
						}
						p.checked.Add(1)
					}
					return nil
				}
				mu.Lock()
				missing[dg] = append(missing[dg], t.repo)
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(missing) > 0 {
		if err := p.upload(ctx, pr, c, targets, missing); err != nil {
			return err
		}
	}
	// Manifests, children first, then tags; each target's in turn, so an
	// image's tag appears only once all it names is there.
	for _, t := range targets {
		for _, d := range t.docs {
			if err := p.rp.Put(ctx, t.repo.Digest(d.digest), d); err != nil {
				return fmt.Errorf("put manifest %s in %s: %w", d.digest, t.repo, err)
			}
		}
		top := t.docs[len(t.docs)-1]
		refs := []name.Reference{}
		for _, tag := range t.tags {
			refs = append(refs, t.repo.Tag(tag))
		}
		if len(t.tags) == 0 {
			refs = append(refs, t.repo.Digest(top.digest))
		}
		for _, ref := range refs {
			if _, isTag := ref.(name.Tag); isTag {
				if err := p.rp.Put(ctx, ref, top); err != nil {
					return fmt.Errorf("tag %s: %w", ref, err)
				}
			}
			// The report gives the digest the registry now resolves the
			// reference to, and it must be the pack's.
			desc, err := remote.Head(ref, append(p.remoteOpts, remote.WithContext(ctx))...)
			if err != nil {
				return fmt.Errorf("check %s: %w", ref, err)
			}
			if desc.Digest.String() != top.digest {
				return fmt.Errorf("check %s: the registry resolves it to %s, the pack's is %s", ref, desc.Digest, top.digest)
			}
			rep.Refs = append(rep.Refs, Ref{Kind: t.kind, Name: t.name, Ref: ref.String(), Digest: top.digest, MediaType: top.mediaType})
		}
	}
	rep.Blobs = Blobs{
		Uploaded: int(p.uploaded.Load()), UploadedBytes: p.upBytes.Load(),
		Existing: int(p.existing.Load()), ExistingBytes: p.existBytes.Load(),
		Checked: int(p.checked.Load()),
	}
	return nil
}

// upload uploads each missing blob to the repositories that lack it, up
// to Jobs blobs at once: a chart's config from its Chart.yaml, every other
// blob read again from its own entry of the pack, checked against the
// verified digest as it streams. A blob several repositories lack is read
// once and streamed to all of them.
func (p *pusher) upload(ctx context.Context, pr *pack.Reader, c *inspect.Contents, targets []*target, missing map[string][]name.Repository) error {
	info := map[string]blobInfo{}
	for _, t := range targets {
		for dg, b := range t.blobs {
			info[dg] = b
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.opts.Jobs)
	// Chart configs are not in the pack: bale makes them from Chart.yaml.
	// A chart archive is its own entry.
	entries := map[string]string{}
	for _, ch := range c.Report.Charts {
		entries["sha256:"+ch.SHA256] = ch.Path
		meta := c.ChartMeta[ch.Path]
		dg := digestOf(meta)
		for _, repo := range missing[dg] {
			g.Go(func() error { return p.send(gctx, repo, dg, info[dg], bytesBlob(meta)) })
		}
		delete(missing, dg)
	}
	for _, dg := range slices.Sorted(maps.Keys(missing)) {
		repos, b := missing[dg], info[dg]
		path, ok := entries[dg]
		if !ok {
			path = pack.BlobPath(dg)
		}
		f, ok := pr.File(path)
		if !ok || f.Dir {
			g.Go(func() error { return fmt.Errorf("blob %s, which the images need, is not in the pack", dg) })
			break
		}
		if f.Size != b.size {
			g.Go(func() error { return fmt.Errorf("blob %s: %d bytes, the manifest says %d", dg, f.Size, b.size) })
			break
		}
		g.Go(func() error {
			if len(repos) == 1 {
				return p.send(gctx, repos[0], dg, b, f.Open)
			}
			rc, err := f.Open()
			if err != nil {
				return err
			}
			defer rc.Close()
			return p.fanOut(gctx, repos, dg, b, rc)
		})
	}
	return g.Wait()
}

// bytesBlob opens a blob held in memory.
func bytesBlob(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// fanOut streams one blob from body to every repository that lacks it at
// once.
func (p *pusher) fanOut(ctx context.Context, repos []name.Repository, dg string, b blobInfo, body io.Reader) error {
	g, gctx := errgroup.WithContext(ctx)
	writers := make([]io.Writer, 0, len(repos))
	pipes := make([]*io.PipeWriter, 0, len(repos))
	for _, repo := range repos {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		writers = append(writers, pw)
		var once sync.Once
		open := func() (io.ReadCloser, error) {
			err := fmt.Errorf("blob %s: its bytes were already sent once; run the push again", dg)
			once.Do(func() { err = nil })
			if err != nil {
				return nil, err
			}
			return io.NopCloser(pr), nil
		}
		g.Go(func() error {
			err := p.send(gctx, repo, dg, b, open)
			// Whatever the upload read, let the copy go on.
			_, _ = io.Copy(io.Discard, pr)
			return err
		})
	}
	_, err := io.Copy(io.MultiWriter(writers...), body)
	for _, pw := range pipes {
		pw.CloseWithError(err)
	}
	if gerr := g.Wait(); gerr != nil && err == nil {
		err = gerr
	}
	return err
}

// send uploads one blob, its bytes from open, to repo.
func (p *pusher) send(ctx context.Context, repo name.Repository, dg string, b blobInfo, open func() (io.ReadCloser, error)) error {
	l := &blobLayer{digest: dg, size: b.size, mediaType: b.mediaType, open: open}
	if err := p.rp.Upload(ctx, repo, l); err != nil {
		return fmt.Errorf("upload blob %s to %s: %w", dg, repo, err)
	}
	p.uploaded.Add(1)
	p.upBytes.Add(b.size)
	return nil
}

// blobLayer is a blob to upload as it is.
type blobLayer struct {
	digest, mediaType string
	size              int64
	open              func() (io.ReadCloser, error)
}

func (l *blobLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.digest) }
func (l *blobLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("push: a blob's diff id is not known")
}
func (l *blobLayer) Size() (int64, error)                { return l.size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return types.MediaType(l.mediaType), nil }
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("push: blobs are pushed as they are")
}
func (l *blobLayer) Compressed() (io.ReadCloser, error) { return l.open() }
