package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/google/go-containerregistry/pkg/name"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/ignore"
	"sigs.k8s.io/yaml"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// Chart source limits.
const (
	// MaxChartArchiveSize bounds a chart archive's compressed bytes; the
	// decompressed ones are bounded by archive.ChartLimits.
	MaxChartArchiveSize = 100 << 20
	// MaxRepoIndexSize bounds a chart repository's index.yaml. Large public
	// repositories' indexes are tens of MiB.
	MaxRepoIndexSize = 128 << 20
	// HelmChartLayerType is the media type of the chart archive layer of a
	// chart stored in an OCI registry.
	HelmChartLayerType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// Chart pins a Helm chart. The digest is the sha256 of the chart archive
// for a .tgz path, a chart repository or an OCI registry, and DirDigest for
// a chart directory. The chart is loaded with Helm's loader, which checks
// Chart.yaml; its name must be the spec's name, and its version the spec's
// version when the spec gives one.
func (r *Resolver) Chart(ctx context.Context, specDir string, c spec.Chart) (plan.Input, error) {
	var (
		in   plan.Input
		ch   *chart.Chart
		err  error
		what string
	)
	switch {
	case c.Path != "":
		what = c.Path
		in, ch, err = r.chartPath(ctx, specDir, c)
	case c.Repository != "":
		what = c.Repository
		in, ch, err = r.chartRepo(ctx, c)
	case c.OCI != "":
		what = c.OCI
		in, ch, err = r.chartOCI(ctx, c)
	default:
		what, err = "no source", errors.New("set one of path, repository and oci")
	}
	if err == nil {
		err = checkChart(c, in.Digest, ch)
	}
	if err != nil {
		return plan.Input{}, inputErr("chart", c.Name, what, err)
	}
	in.Kind, in.Name = plan.KindChart, c.Name
	in.Chart = &plan.Chart{Version: ch.Metadata.Version, AppVersion: ch.Metadata.AppVersion}
	return in, nil
}

// checkChart compares a loaded chart with what the spec says of it.
func checkChart(c spec.Chart, digest string, ch *chart.Chart) error {
	md := ch.Metadata
	if md.Name != c.Name {
		return fmt.Errorf("chart is named %q in Chart.yaml, the spec says %q", md.Name, c.Name)
	}
	if c.Version != "" && md.Version != c.Version {
		if _, err := PickVersion(c.Version, []string{md.Version}); err != nil || IsExactVersion(c.Version) {
			return fmt.Errorf("chart version is %s, the spec says %s", md.Version, c.Version)
		}
	}
	if c.Digest != "" && c.Digest != digest {
		return &movedError{what: "chart", pinned: c.Digest, has: digest}
	}
	return nil
}

// chartPath pins a local chart directory or archive.
func (r *Resolver) chartPath(ctx context.Context, specDir string, c spec.Chart) (plan.Input, *chart.Chart, error) {
	rel, err := r.local(specDir, c.Path)
	if err != nil {
		return plan.Input{}, nil, err
	}
	fi, err := r.lstatLocal(rel)
	if err != nil {
		return plan.Input{}, nil, err
	}
	if fi.IsDir() {
		ch, d, n, err := r.loadChartDir(rel)
		if err != nil {
			return plan.Input{}, nil, err
		}
		return plan.Input{Source: plan.Source{Type: plan.SourceDir, Path: rel}, Digest: d, Size: n}, ch, nil
	}
	b, err := r.readChartFile(rel)
	if err != nil {
		return plan.Input{}, nil, err
	}
	ch, err := loadChartArchive(ctx, b)
	if err != nil {
		return plan.Input{}, nil, err
	}
	return plan.Input{Source: plan.Source{Type: plan.SourceArchive, Path: rel}, Digest: sha256Digest(b), Size: int64(len(b))}, ch, nil
}

// readChartFile reads the local chart archive rel, up to
// MaxChartArchiveSize bytes.
func (r *Resolver) readChartFile(rel string) ([]byte, error) {
	f, _, err := r.openLocal(rel, singleLink)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, MaxChartArchiveSize, "chart archive "+rel)
}

// loadChartArchive walks an untrusted chart archive with archive
// (no links, no "..", no absolute names, Helm's size limits) and only then
// hands it to Helm's loader. The same bytes are checked, hashed and
// loaded, so nothing changes in between.
func loadChartArchive(ctx context.Context, b []byte) (*chart.Chart, error) {
	err := archive.Walk(ctx, bytes.NewReader(b), archive.ChartLimits(), func(*tar.Header, io.Reader) error { return nil })
	if err != nil {
		return nil, fmt.Errorf("chart archive: %w", err)
	}
	ch, err := loader.LoadArchive(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("load chart archive: %w", err)
	}
	return ch, nil
}

// loadChartDir loads the chart directory rel. Helm's own LoadDir follows
// symbolic links and reads files by path, so bale reads the directory
// itself, through os.Root (see local.go), and hands Helm's LoadFiles what
// LoadDir would have read: every file not matched by .helmignore (with
// Helm's defaults), in Helm's walk order, a UTF-8 byte order mark trimmed.
// It refuses, anywhere in the directory, symbolic links, irregular files
// and multiply-linked files, and applies the limits of chart archives
// (archive.ChartLimits: 5 MiB a file, 100 MiB in all, 10,000 entries), so
// a directory is no easier a way to make bale buffer than an archive.
func (r *Resolver) loadChartDir(rel string) (*chart.Chart, string, int64, error) {
	root, err := r.openDir(rel)
	if err != nil {
		return nil, "", 0, err
	}
	defer root.Close()
	files, err := readChartDir(root, rel)
	if err != nil {
		return nil, "", 0, err
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, "", 0, fmt.Errorf("load chart directory %s: %w", rel, err)
	}
	d, n := DirDigest(ch)
	return ch, d, n, nil
}

// utf8BOM is the byte order mark Helm's LoadDir trims from each file.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// readChartDir reads the files of the chart directory open as root (shown
// as rel in errors) as loadChartDir describes.
func readChartDir(root *os.Root, rel string) ([]*loader.BufferedFile, error) {
	lim := archive.ChartLimits()
	shown := func(n string) string { return rel + "/" + n }
	rules := ignore.Empty()
	if _, err := root.Lstat(ignore.HelmIgnore); err == nil {
		f, _, err := openIn(root, ignore.HelmIgnore, shown(ignore.HelmIgnore), singleLink)
		if err != nil {
			return nil, fmt.Errorf("chart directory: %w", err)
		}
		b, err := readLimited(f, lim.MaxEntrySize, shown(ignore.HelmIgnore))
		f.Close()
		if err != nil {
			return nil, err
		}
		if rules, err = ignore.Parse(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("%s: %w", shown(ignore.HelmIgnore), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, localErr(shown(ignore.HelmIgnore), err)
	}
	rules.AddDefaults()
	var (
		files   []*loader.BufferedFile
		total   int64
		entries int
	)
	var walk func(dir string) error
	walk = func(dir string) error {
		list, err := fs.ReadDir(root.FS(), dir)
		if err != nil {
			return localErr(shown(dir), err)
		}
		for _, e := range list {
			n := path.Join(dir, e.Name())
			if entries++; entries > lim.MaxEntries {
				return fmt.Errorf("chart directory %s: more than %d entries", rel, lim.MaxEntries)
			}
			if e.Type()&fs.ModeSymlink != 0 {
				return fmt.Errorf("chart directory holds a symbolic link, %s: %s", shown(n), errLinkMsg)
			}
			if !e.IsDir() && !e.Type().IsRegular() {
				return fmt.Errorf("chart directory holds an irregular file, %s", shown(n))
			}
			fi, err := e.Info()
			if err != nil {
				return localErr(shown(n), err)
			}
			if rules.Ignore(n, fi) {
				continue
			}
			if e.IsDir() {
				if err := walk(n); err != nil {
					return err
				}
				continue
			}
			if fi.Size() > lim.MaxEntrySize {
				return fmt.Errorf("chart file %s is %d bytes, more than the %d-byte limit", shown(n), fi.Size(), lim.MaxEntrySize)
			}
			f, _, err := openIn(root, n, shown(n), singleLink)
			if err != nil {
				return fmt.Errorf("chart directory: %w", err)
			}
			data, err := readLimited(f, lim.MaxEntrySize, "chart file "+shown(n))
			f.Close()
			if err != nil {
				return err
			}
			if total += int64(len(data)); total > lim.MaxTotalSize {
				return fmt.Errorf("chart directory %s: files total more than %d bytes", rel, lim.MaxTotalSize)
			}
			files = append(files, &loader.BufferedFile{Name: n, Data: bytes.TrimPrefix(data, utf8BOM)})
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, err
	}
	return files, nil
}

// DirDigest is the digest bale pins for a chart loaded from a directory,
// and its size. A directory has no archive bytes to hash, so the digest is
// the sha256 of a sha256sum-style listing: one line "HEX  NAME\n" per file
// in the loaded chart's Raw files (every file Helm's loader read, subcharts
// included, after .helmignore), HEX the sha256 of its content and NAME its
// slash path in the chart, lines sorted by name. The size is the total of
// those files' bytes. The executor does not depend on this form (it
// re-archives the loaded chart), but `bale diff` does: the same files give
// the same digest on any machine, and any change to them changes it.
func DirDigest(ch *chart.Chart) (digest string, size int64) {
	files := append([]*chart.File(nil), ch.Raw...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	h := sha256.New()
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(h, "%s  %s\n", hex.EncodeToString(sum[:]), f.Name)
		size += int64(len(f.Data))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), size
}

// chartRepo pins a chart from an HTTP chart repository: the version of
// index.yaml the spec names (exactly, or the newest in its range, or the
// newest at all), downloaded and checked against the index's digest.
func (r *Resolver) chartRepo(ctx context.Context, c spec.Chart) (plan.Input, *chart.Chart, error) {
	indexURL := strings.TrimSuffix(c.Repository, "/") + "/index.yaml"
	if err := r.offline(indexURL); err != nil {
		return plan.Input{}, nil, err
	}
	raw, err := r.download(ctx, indexURL, MaxRepoIndexSize)
	if err != nil {
		return plan.Input{}, nil, err
	}
	var idx repoIndex
	if err := yaml.Unmarshal(raw, &idx); err != nil {
		return plan.Input{}, nil, fmt.Errorf("parse %s: %w", indexURL, err)
	}
	var versions []string
	byVersion := map[string]*repoChartVersion{}
	for _, v := range idx.Entries[c.Name] {
		if v == nil {
			continue
		}
		if _, dup := byVersion[v.Version]; !dup {
			byVersion[v.Version] = v
			versions = append(versions, v.Version)
		}
	}
	if _, ok := idx.Entries[c.Name]; !ok {
		names := make([]string, 0, len(idx.Entries))
		for n := range idx.Entries {
			names = append(names, n)
		}
		return plan.Input{}, nil, fmt.Errorf("index.yaml has no chart %q (charts: %s)", c.Name, shownList(names))
	}
	version, err := PickVersion(c.Version, versions)
	if err != nil {
		if IsExactVersion(c.Version) {
			return plan.Input{}, nil, fmt.Errorf("index.yaml has no version %s of chart %s (versions: %s)", c.Version, c.Name, shownList(versions))
		}
		return plan.Input{}, nil, fmt.Errorf("index.yaml, chart %s: %w", c.Name, err)
	}
	cv := byVersion[version]
	// From here on the chart is this exact version.
	c.Version = version
	if len(cv.URLs) == 0 {
		return plan.Input{}, nil, fmt.Errorf("%s: chart %s %s lists no URL", indexURL, c.Name, c.Version)
	}
	want := cv.Digest
	if want != "" && !strings.HasPrefix(want, "sha256:") {
		want = "sha256:" + want
	}
	if want != "" && !plan.ValidDigest(want) {
		return plan.Input{}, nil, fmt.Errorf("%s: chart %s %s has digest %q: want 64 lowercase hex", indexURL, c.Name, c.Version, cv.Digest)
	}
	if want == "" {
		if c.Digest == "" {
			return plan.Input{}, nil, fmt.Errorf("%s: chart %s %s has no digest and the spec pins none: nothing to verify the download against", indexURL, c.Name, c.Version)
		}
		want = c.Digest
	}
	archiveURL, err := resolveReferenceURL(c.Repository, cv.URLs[0])
	if err != nil {
		return plan.Input{}, nil, err
	}
	if u, err := url.Parse(archiveURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return plan.Input{}, nil, fmt.Errorf("%s: chart %s %s URL %q is not http(s)", indexURL, c.Name, c.Version, archiveURL)
	}
	b, err := r.download(ctx, archiveURL, MaxChartArchiveSize)
	if err != nil {
		return plan.Input{}, nil, err
	}
	if got := sha256Digest(b); got != want {
		return plan.Input{}, nil, fmt.Errorf("chart %s %s: archive %s has %s but the repository index says %s", c.Name, c.Version, archiveURL, got, want)
	}
	ch, err := loadChartArchive(ctx, b)
	if err != nil {
		return plan.Input{}, nil, err
	}
	return plan.Input{
		Source: plan.Source{Type: plan.SourceRepository, Ref: c.Repository, URL: archiveURL},
		Digest: want,
		Size:   int64(len(b)),
	}, ch, nil
}

// download GETs url into memory, up to max bytes.
func (r *Resolver) download(ctx context.Context, url string, max int64) ([]byte, error) {
	resp, err := r.get(ctx, url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readLimited(resp.Body, max, url)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return b, nil
}

// OCIChartRef turns a spec's "oci://host/repo/name" and version into the
// image reference the chart is fetched by. Helm stores a version's "+" as
// "_" in tags, which may not hold "+".
func OCIChartRef(oci, version string) string {
	return strings.TrimPrefix(oci, "oci://") + ":" + strings.ReplaceAll(version, "+", "_")
}

// chartOCI pins a chart stored in an OCI registry: the manifest tagged with
// the version, and its chart content layer, whose digest is the chart's.
func (r *Resolver) chartOCI(ctx context.Context, c spec.Chart) (plan.Input, *chart.Chart, error) {
	if c.Version == "" {
		return plan.Input{}, nil, errors.New("an oci chart needs a version")
	}
	refStr := OCIChartRef(c.OCI, c.Version)
	ref, err := r.parseRef(refStr)
	if err != nil {
		return plan.Input{}, nil, err
	}
	if err := r.offline(c.OCI); err != nil {
		return plan.Input{}, nil, err
	}
	desc, err := r.puller.Get(ctx, ref)
	if err != nil {
		return plan.Input{}, nil, err
	}
	m, _, err := parseManifest(desc.Manifest, string(desc.MediaType))
	if err != nil {
		return plan.Input{}, nil, err
	}
	if m.Config == nil {
		return plan.Input{}, nil, fmt.Errorf("%s is an index, not a chart manifest", refStr)
	}
	var layer *pack.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == HelmChartLayerType {
			if layer != nil {
				return plan.Input{}, nil, fmt.Errorf("%s has more than one %s layer", refStr, HelmChartLayerType)
			}
			layer = &m.Layers[i]
		}
	}
	if layer == nil {
		return plan.Input{}, nil, fmt.Errorf("%s has no %s layer: not a Helm chart", refStr, HelmChartLayerType)
	}
	if err := checkDesc(*layer, "chart layer", MaxChartArchiveSize); err != nil {
		return plan.Input{}, nil, err
	}
	b, err := r.fetchChartLayer(ctx, ref.Context(), layer.Digest, layer.Size)
	if err != nil {
		return plan.Input{}, nil, err
	}
	ch, err := loadChartArchive(ctx, b)
	if err != nil {
		return plan.Input{}, nil, err
	}
	return plan.Input{
		Source:    plan.Source{Type: plan.SourceOCI, Ref: refStr},
		Digest:    layer.Digest,
		Size:      layer.Size,
		MediaType: layer.MediaType,
	}, ch, nil
}

// fetchChartLayer downloads a chart layer by digest and verifies it.
func (r *Resolver) fetchChartLayer(ctx context.Context, repo name.Repository, digest string, size int64) ([]byte, error) {
	src := &registrySource{r: r, repo: repo}
	rc, err := src.blob(ctx, digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readLimited(newVerifier(rc, digest, size, "chart layer"), MaxChartArchiveSize, "chart layer")
}

// LoadChart loads a chart input with Helm's loader from its source, after
// checking that the source still has the planned digest: the archive bytes
// for an archive, repository or OCI chart, DirDigest for a directory.
func (r *Resolver) LoadChart(ctx context.Context, in plan.Input) (*chart.Chart, error) {
	ch, err := r.loadChart(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("load chart %s (%s): %w", in.Name, sourceString(in.Source), err)
	}
	return ch, nil
}

func (r *Resolver) loadChart(ctx context.Context, in plan.Input) (*chart.Chart, error) {
	if in.Kind != plan.KindChart {
		return nil, fmt.Errorf("input %s is not a chart", in.Key())
	}
	if !plan.ValidDigest(in.Digest) {
		return nil, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", in.Digest)
	}
	var b []byte
	switch in.Source.Type {
	case plan.SourceDir:
		ch, d, _, err := r.loadChartDir(in.Source.Path)
		if err != nil {
			return nil, err
		}
		if d != in.Digest {
			return nil, fmt.Errorf("chart directory has %s, not the planned %s: it changed since planning", d, in.Digest)
		}
		return ch, nil
	case plan.SourceArchive:
		var err error
		if b, err = r.readChartFile(in.Source.Path); err != nil {
			return nil, err
		}
	case plan.SourceRepository:
		if err := r.offline(in.Source.URL); err != nil {
			return nil, err
		}
		var err error
		if b, err = r.download(ctx, in.Source.URL, MaxChartArchiveSize); err != nil {
			return nil, err
		}
	case plan.SourceOCI:
		if err := r.offline(in.Source.Ref); err != nil {
			return nil, err
		}
		ref, err := r.parseRef(in.Source.Ref)
		if err != nil {
			return nil, err
		}
		if b, err = r.fetchChartLayer(ctx, ref.Context(), in.Digest, in.Size); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("source type %q is not a chart source", in.Source.Type)
	}
	if got := sha256Digest(b); got != in.Digest {
		return nil, fmt.Errorf("chart archive has %s, not the planned %s: it changed since planning", got, in.Digest)
	}
	return loadChartArchive(ctx, b)
}

// repoIndex is the part of a chart repository's index.yaml bale reads.
// It is not helm's repo.IndexFile: importing helm's pkg/repo links
// client-go and kubectl (some 540 packages, half of bale's binary), whose
// package initialisers every bale command paid at start.
type repoIndex struct {
	Entries map[string][]*repoChartVersion `json:"entries"`
}

// repoChartVersion is one version of a chart in index.yaml.
type repoChartVersion struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	URLs    []string `json:"urls"`
	Digest  string   `json:"digest"`
}

// resolveReferenceURL resolves a chart URL from index.yaml against the
// repository URL as helm's repo.ResolveReferenceURL does: an absolute URL
// stands; a relative one is taken under the repository's path, keeping
// the repository URL's query (a token some repositories need).
func resolveReferenceURL(baseURL, refURL string) (string, error) {
	ref, err := url.Parse(refURL)
	if err != nil {
		return "", fmt.Errorf("parse chart URL %q: %w", refURL, err)
	}
	if ref.IsAbs() {
		return refURL, nil
	}
	base, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("parse repository URL %q: %w", baseURL, err)
	}
	base.RawPath = strings.TrimSuffix(base.RawPath, "/") + "/"
	base.Path = strings.TrimSuffix(base.Path, "/") + "/"
	u := base.ResolveReference(ref)
	u.RawQuery = base.RawQuery
	return u.String(), nil
}

// IsExactVersion says whether a spec's chart version names one version (a
// strict SemVer 2 version such as "1.4.2") rather than a range such as
// "^1.4" or ">=1.0 <2".
func IsExactVersion(v string) bool {
	_, err := semver.StrictNewVersion(v)
	return err == nil
}

// PickVersion chooses the chart version a spec's version names among a
// repository's: the same string when it lists it, else the newest that
// satisfies it as a SemVer range (Helm's "^1.4", "~1.4.2", ">=1 <2",
// "1.x"), or the newest of all when want is empty. Like Helm, a range
// matches pre-releases only when it names one.
func PickVersion(want string, have []string) (string, error) {
	if want != "" {
		for _, h := range have {
			if h == want {
				return h, nil
			}
		}
		if IsExactVersion(want) {
			return "", fmt.Errorf("no version %s (versions: %s)", want, shownList(have))
		}
	}
	rng := want
	if rng == "" {
		rng = "*"
	}
	cons, err := semver.NewConstraint(rng)
	if err != nil {
		return "", fmt.Errorf("version %q is neither a version nor a range: %w", want, err)
	}
	var best *semver.Version
	pick := ""
	for _, h := range have {
		v, err := semver.NewVersion(h)
		if err != nil || !cons.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(best) {
			best, pick = v, h
		}
	}
	if best == nil {
		if want == "" {
			return "", fmt.Errorf("no SemVer version (versions: %s)", shownList(have))
		}
		return "", fmt.Errorf("no version in range %s (versions: %s)", want, shownList(have))
	}
	return pick, nil
}
