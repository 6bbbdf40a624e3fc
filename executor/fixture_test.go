package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// buildTime is the fixture plan's build timestamp, the seeds' epoch.
var buildTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const packName = "bootstrap-pack-v1"

// fixture is a small, real set of inputs (an OCI layout made with
// go-containerregistry, a Helm chart made with chartutil.Create, signature
// files) and a hand-built plan over them, made the way the planner will.
type fixture struct {
	dir    string
	plan   *plan.Plan
	planID string
	src    *testSource
}

// fixtureOpts varies what changes content (compression level).
type fixtureOpts struct {
	level int
	// big adds a 3 MiB incompressible file to the app image, so its layer
	// is an entry cut into several gzip members.
	big bool
}

// testLayer is a deterministic gzip'd tar layer: go-containerregistry's
// own layer helpers compress with compress/gzip, whose bytes may change
// with the toolchain; fixtures should not.
type testLayer struct {
	compressed, uncompressed []byte
	mt                       types.MediaType
}

func newTestLayer(t testing.TB, mt types.MediaType, files map[string]string) *testLayer {
	t.Helper()
	var entries []archive.Entry
	for name, body := range files {
		entries = append(entries, fileEntry(name, []byte(body)))
	}
	var tarBuf, gzBuf bytes.Buffer
	if err := archive.WriteTar(context.Background(), &tarBuf, entries, buildTime); err != nil {
		t.Fatal(err)
	}
	zw, err := archive.NewGzipWriter(&gzBuf, 6, buildTime)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tarBuf.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return &testLayer{compressed: gzBuf.Bytes(), uncompressed: tarBuf.Bytes(), mt: mt}
}

func (l *testLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.compressed))
	return h, err
}
func (l *testLayer) DiffID() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.uncompressed))
	return h, err
}
func (l *testLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *testLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.uncompressed)), nil
}
func (l *testLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *testLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// testImage builds an image of the given media types and platform.
func testImage(t testing.TB, oci bool, platform string, layers ...*testLayer) v1.Image {
	t.Helper()
	img := empty.Image
	if oci {
		img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	for _, l := range layers {
		var err error
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Cmd = []string{"/bin/app", "--platform=" + platform}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// planManifest describes an image manifest as the plan does.
func planManifest(t testing.TB, img v1.Image, platform string) plan.Manifest {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	size, _ := img.Size()
	mt, _ := img.MediaType()
	pm := plan.Manifest{
		Platform:  platform,
		Digest:    d.String(),
		Size:      size,
		MediaType: string(mt),
		Config:    plan.Blob{Digest: m.Config.Digest.String(), Size: m.Config.Size, MediaType: string(m.Config.MediaType)},
		Layers:    []plan.Blob{},
	}
	for _, l := range m.Layers {
		pm.Layers = append(pm.Layers, plan.Blob{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
	}
	return pm
}

// makeFixture writes the fixture inputs under dir and returns the plan.
func makeFixture(t testing.TB, dir string, opts fixtureOpts) *fixture {
	t.Helper()
	if opts.level == 0 {
		opts.level = 1
	}
	shared := newTestLayer(t, types.OCILayer, map[string]string{"etc/os-release": "ID=bale-test\n"})
	appFiles := map[string]string{"bin/app": "#!/bin/sh\necho app\n"}
	if opts.big {
		b := make([]byte, 3<<20)
		x := uint64(88172645463325252)
		for i := range b {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			b[i] = byte(x)
		}
		appFiles["bin/big"] = string(b)
	}
	appLayer := newTestLayer(t, types.OCILayer, appFiles)
	app := testImage(t, true, "linux/amd64", shared, appLayer)

	var plats []v1.Image
	platforms := []string{"linux/amd64", "linux/arm64/v8", "linux/s390x"}
	for _, p := range platforms {
		l := newTestLayer(t, types.OCILayer, map[string]string{"bin/agent": "agent for " + p + "\n"})
		plats = append(plats, testImage(t, true, p, shared, l))
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, p := range platforms {
		pl, _ := v1.ParsePlatform(p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: plats[i], Descriptor: v1.Descriptor{Platform: pl}})
	}
	toolLayer := newTestLayer(t, types.DockerLayer, map[string]string{"usr/bin/tool": "tool\n"})
	tool := testImage(t, false, "linux/amd64", toolLayer)

	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{"agent": "registry.example/team/agent:0.9.1", "app": "registry.example/team/app:1.4.2", "tool": "registry.example/team/tool:2.0.0"}
	ann := func(name string) layout.Option {
		return layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refs[name]})
	}
	if err := lp.AppendImage(app, ann("app")); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, ann("agent")); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(tool, ann("tool")); err != nil {
		t.Fatal(err)
	}

	// Chart with a subchart, as `helm create` makes them.
	if err := os.MkdirAll(filepath.Join(dir, "charts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := chartutil.Create("web", filepath.Join(dir, "charts")); err != nil {
		t.Fatal(err)
	}
	if _, err := chartutil.Create("db", filepath.Join(dir, "charts", "web", "charts")); err != nil {
		t.Fatal(err)
	}
	// Declare the subchart, as `helm lint` requires of a chart shipping one.
	chartYAML := filepath.Join(dir, "charts", "web", "Chart.yaml")
	cy, err := os.ReadFile(chartYAML)
	if err != nil {
		t.Fatal(err)
	}
	cy = append(cy, "dependencies:\n- name: db\n  version: 0.1.0\n"...)
	if err := os.WriteFile(chartYAML, cy, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loader.LoadDir(filepath.Join(dir, "charts", "web"))
	if err != nil {
		t.Fatal(err)
	}

	sigs := map[string]string{
		"evidence-bundle.dsse.json": `{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"k","sig":"MEUCIQ=="}]}` + "\n",
		"root.json":                 `{"signed":{"_type":"root","version":1},"signatures":[]}` + "\n",
	}
	os.MkdirAll(filepath.Join(dir, "sig"), 0o755)
	for name, body := range sigs {
		if err := os.WriteFile(filepath.Join(dir, "sig", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Inputs.
	var inputs []plan.Input
	imageInput := func(name string, img v1.Image) plan.Input {
		d, _ := img.Digest()
		size, _ := img.Size()
		mt, _ := img.MediaType()
		return plan.Input{
			Kind: plan.KindImage, Name: name, Digest: d.String(), Size: size, MediaType: string(mt),
			Source: plan.Source{Type: plan.SourceLayout, Path: "oci", Select: refs[name]},
			Image:  &plan.Image{Tags: []string{refs[name]}, Manifests: []plan.Manifest{planManifest(t, img, "")}},
		}
	}
	inputs = append(inputs, imageInput("app", app), imageInput("tool", tool))
	{
		d, _ := idx.Digest()
		size, _ := idx.Size()
		chosen := []string{"linux/amd64", "linux/arm64/v8"}
		in := plan.Input{
			Kind: plan.KindImage, Name: "agent", Digest: d.String(), Size: size, MediaType: string(types.OCIImageIndex),
			Source: plan.Source{Type: plan.SourceLayout, Path: "oci", Select: refs["agent"]},
			Image:  &plan.Image{Tags: []string{refs["agent"]}, Index: true, Platforms: chosen},
		}
		keep := map[string]bool{}
		for _, p := range chosen {
			m := planManifest(t, plats[slices.Index(platforms, p)], p)
			in.Image.Manifests = append(in.Image.Manifests, m)
			keep[m.Digest] = true
		}
		// As the resolver pins it: the index with only the chosen
		// manifests, which the pack holds in place of the original.
		raw, err := idx.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		filtered, err := plan.FilterIndex(raw, keep)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(filtered)
		in.Image.Filtered = &plan.Blob{Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(filtered)), MediaType: string(types.OCIImageIndex)}
		inputs = append(inputs, in)
	}
	chartSum := sha256.New()
	for _, f := range c.Raw {
		fmt.Fprintf(chartSum, "%s\x00%d\x00", f.Name, len(f.Data))
		chartSum.Write(f.Data)
	}
	inputs = append(inputs, plan.Input{
		Kind: plan.KindChart, Name: "web", Digest: "sha256:" + hex.EncodeToString(chartSum.Sum(nil)),
		Source: plan.Source{Type: plan.SourceDir, Path: "charts/web"},
		Chart:  &plan.Chart{Version: c.Metadata.Version, AppVersion: c.Metadata.AppVersion},
	})
	for name, body := range sigs {
		sum := sha256.Sum256([]byte(body))
		inputs = append(inputs, plan.Input{
			Kind: plan.KindSignature, Name: name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(body)),
			Source: plan.Source{Type: plan.SourceFile, Path: "sig/" + name},
		})
	}
	for _, b := range []struct{ name, kind string }{{"evidence-bundle-2025.01", "evidence"}, {"mirror-bundle-2025.01", "mirror"}} {
		sum := sha256.Sum256([]byte(b.name))
		url := "https://exports.example/v1/exports/" + b.kind + "/" + b.name + ".tar.gz"
		inputs = append(inputs, plan.Input{
			Kind: plan.KindBundle, Name: b.name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: 1,
			Source: plan.Source{Type: plan.SourceURL, URL: url}, URL: url,
		})
	}
	plan.SortInputs(inputs)

	p := basePlan(opts.level)
	p.Inputs = inputs
	p.Steps = packSteps(t, p, fixtureBundles)
	fx := &fixture{dir: dir, plan: p, src: &testSource{root: dir}}
	fx.planID = planID(t, p)

	return fx
}

// fixtureBundles are the fixture's bundle kinds, by name.
var fixtureBundles = map[string]string{"evidence-bundle-2025.01": "evidence", "mirror-bundle-2025.01": "mirror"}

// basePlan is a plan with one bootstrap pack target and no inputs yet.
func basePlan(level int) *plan.Plan {
	spec := sha256.Sum256([]byte("spec"))
	return &plan.Plan{
		FormatVersion:   plan.FormatVersion,
		Spec:            plan.SpecRef{Digest: "sha256:" + hex.EncodeToString(spec[:])},
		SourceDateEpoch: buildTime.Format(time.RFC3339),
		Builder:         plan.Builder{Tar: "bale-tar/1", Compressor: archive.Compressor},
		Targets: []plan.Target{{
			Kind: plan.TargetBootstrapPack, Name: packName,
			Compression: plan.Compression{Algorithm: "gzip", Level: level},
			Artifacts:   []string{packName + ".tar", packName + ".tar.sha256"},
		}},
	}
}

// packSteps makes a bootstrap pack's steps the way the planner does.
func packSteps(t testing.TB, p *plan.Plan, bundleKinds map[string]string) []plan.Step {
	t.Helper()
	tar := packName + ".tar"
	var steps []plan.Step
	add := func(s plan.Step) plan.Step {
		s.ID = plan.StepID(s)
		steps = append(steps, s)
		return s
	}
	var entrySteps, imageSteps []string
	var imageKeys, bundleKeys []string
	params := map[string]string{}
	for _, in := range p.Inputs {
		switch in.Kind {
		case plan.KindChart:
			s := add(plan.Step{Action: plan.ActionChart, Inputs: []string{in.Key()},
				Params:  map[string]string{"name": in.Name, "version": in.Chart.Version},
				Outputs: []string{tar + ":" + pack.ChartPath(in.Name, in.Chart.Version)}})
			entrySteps = append(entrySteps, s.ID)
		case plan.KindImage:
			paths, err := plan.ImageEntries(in)
			if err != nil {
				t.Fatal(err)
			}
			var outs []string
			for _, pth := range paths {
				outs = append(outs, tar+":"+pth)
			}
			s := add(plan.Step{Action: plan.ActionImage, Inputs: []string{in.Key()}, Outputs: outs})
			entrySteps = append(entrySteps, s.ID)
			imageSteps = append(imageSteps, s.ID)
			imageKeys = append(imageKeys, in.Key())
		case plan.KindSignature:
			s := add(plan.Step{Action: plan.ActionCopy, Inputs: []string{in.Key()}, Outputs: []string{tar + ":" + pack.SignaturePath(in.Name)}})
			entrySteps = append(entrySteps, s.ID)
		case plan.KindBundle:
			bundleKeys = append(bundleKeys, in.Key())
			params[plan.ParamBundleKindPrefix+in.Name] = bundleKinds[in.Name]
		}
	}
	if len(imageKeys) > 0 {
		s := add(plan.Step{Action: plan.ActionOCILayout, Inputs: imageKeys, Needs: imageSteps,
			Outputs: []string{tar + ":" + pack.OCIIndexPath, tar + ":" + pack.DockerManifestPath, tar + ":" + pack.OCILayoutPath}})
		entrySteps = append(entrySteps, s.ID)
	}
	ix := add(plan.Step{Action: plan.ActionPackIndex, Inputs: bundleKeys, Needs: entrySteps, Params: params,
		Outputs: []string{tar + ":" + pack.IndexPath}})
	level := fmt.Sprint(p.Targets[0].Compression.Level)
	pk := add(plan.Step{Action: plan.ActionPack, Needs: append([]string{ix.ID}, entrySteps...),
		Params: map[string]string{"compression": "gzip", "level": level}, Outputs: []string{tar}})
	add(plan.Step{Action: plan.ActionChecksum, Needs: []string{pk.ID}, Outputs: []string{tar + ".sha256"}})
	return steps
}

// restep recomputes step ids after a test edits steps, fixing Needs.
func restep(p *plan.Plan) {
	ids := map[string]string{}
	for i := range p.Steps {
		s := &p.Steps[i]
		for j, n := range s.Needs {
			if id, ok := ids[n]; ok {
				s.Needs[j] = id
			}
		}
		old := s.ID
		s.ID = plan.StepID(*s)
		ids[old] = s.ID
	}
}

func planID(t testing.TB, p *plan.Plan) string {
	t.Helper()
	b, err := plan.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return plan.ID(b)
}

// testSource serves a fixture's inputs from disk, as the resolver would,
// counting what it opens. It does not verify digests: the executor must.
type testSource struct {
	root string
	// failAfter, if positive, fails the nth blob opened.
	failAfter int

	mu        sync.Mutex
	opened    []string
	openCount int
}

func (s *testSource) record(what string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = append(s.opened, what)
	s.openCount++
	return s.openCount
}

func (s *testSource) opens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openCount
}

func (s *testSource) path(in plan.Input) (string, error) {
	if !plan.ValidPath(in.Source.Path) {
		return "", fmt.Errorf("test source: path %q escapes", in.Source.Path)
	}
	return filepath.Join(s.root, filepath.FromSlash(in.Source.Path)), nil
}

func (s *testSource) OpenBlob(ctx context.Context, in plan.Input, digest string) (io.ReadCloser, int64, error) {
	n := s.record(digest)
	if s.failAfter > 0 && n >= s.failAfter {
		return nil, 0, errors.New("test source: injected failure")
	}
	if !plan.ValidDigest(digest) {
		return nil, 0, fmt.Errorf("test source: digest %q", digest)
	}
	dir, err := s.path(in)
	if err != nil {
		return nil, 0, err
	}
	return s.open(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
}

func (s *testSource) LoadChart(ctx context.Context, in plan.Input) (*chart.Chart, error) {
	s.record(in.Key())
	dir, err := s.path(in)
	if err != nil {
		return nil, err
	}
	return loader.LoadDir(dir)
}

func (s *testSource) OpenFile(ctx context.Context, in plan.Input) (io.ReadCloser, int64, error) {
	s.record(in.Key())
	p, err := s.path(in)
	if err != nil {
		return nil, 0, err
	}
	return s.open(p)
}

func (s *testSource) open(p string) (io.ReadCloser, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// build runs Execute on a fixture with a store at cacheDir.
func build(t testing.TB, fx *fixture, outDir, cacheDir string, jobs int) *Result {
	t.Helper()
	res, err := buildErr(fx, outDir, cacheDir, jobs)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	return res
}

func buildErr(fx *fixture, outDir, cacheDir string, jobs int) (*Result, error) {
	store, err := cas.Open(cacheDir)
	if err != nil {
		return nil, err
	}
	sp, err := plan.Seal(fx.plan)
	if err != nil {
		return nil, err
	}
	return Execute(context.Background(), sp, fx.src, Options{OutDir: outDir, Store: store, Jobs: jobs})
}

// readArtifacts returns every file in outDir (hidden temporaries too).
func readArtifacts(t testing.TB, outDir string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	ents, err := os.ReadDir(outDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(outDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = b
	}
	return got
}

func sortedNames[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// randomReader yields deterministic incompressible bytes.
func randomReader(seed uint64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

// sealed returns the fixture's plan sealed, failing the test if it does
// not validate.
func (fx *fixture) sealed(t testing.TB) *plan.Sealed {
	t.Helper()
	sp, err := plan.Seal(fx.plan)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}
