package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/verify"
)

// readPack returns a pack's files by path, and its directories, read
// through the hostile reader.
// packLimits are bale's default limits with gzip members allowed, as a
// pack is written.
func packLimits() archive.Limits { return archive.Limits{GzipMembers: true} }

func readPack(t testing.TB, path string) (files map[string][]byte, dirs []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files = map[string][]byte{}
	err = archive.Walk(context.Background(), f, packLimits(), func(h *tar.Header, body io.Reader) error {
		if h.Typeflag == tar.TypeDir {
			dirs = append(dirs, h.Name)
			return nil
		}
		b, err := io.ReadAll(body)
		files[h.Name] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, dirs
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBuildPack(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	out := t.TempDir()
	res := build(t, fx, out, t.TempDir(), 0)
	if res.StepsRun != len(fx.plan.Steps) || res.StepsCached != 0 {
		t.Errorf("cold build ran %d, cached %d; want %d, 0", res.StepsRun, res.StepsCached, len(fx.plan.Steps))
	}
	if got := sortedNames(readArtifacts(t, out)); !slices.Equal(got, []string{packName + ".tar", packName + ".tar.sha256"}) {
		t.Fatalf("out dir holds %v", got)
	}
	tarBytes, _ := os.ReadFile(filepath.Join(out, packName+".tar"))
	sumFile, _ := os.ReadFile(filepath.Join(out, packName+".tar.sha256"))
	if want := sha(tarBytes) + "  " + packName + ".tar\n"; string(sumFile) != want {
		t.Errorf("sha256 file %q, want %q", sumFile, want)
	}
	if len(res.Artifacts) != 2 || res.Artifacts[0].Path != packName+".tar" || res.Artifacts[0].SHA256 != sha(tarBytes) || res.Artifacts[0].Size != int64(len(tarBytes)) {
		t.Errorf("artifacts %+v", res.Artifacts)
	}

	files, dirs := readPack(t, filepath.Join(out, packName+".tar"))
	if res.Artifacts[0].RootHash != sha(files[pack.IndexPath]) {
		t.Errorf("root hash %s, want sha256 of the pack index %s", res.Artifacts[0].RootHash, sha(files[pack.IndexPath]))
	}
	wantDirs := []string{"charts", "images", "images/blobs", "images/blobs/sha256", "signatures"}
	if !slices.Equal(dirs, wantDirs) {
		t.Errorf("dirs %v, want %v", dirs, wantDirs)
	}
	for _, p := range []string{"charts/web-0.1.0.tgz", "signatures/root.json", "signatures/evidence-bundle.dsse.json", pack.OCILayoutPath, pack.OCIIndexPath, pack.DockerManifestPath, pack.IndexPath} {
		if _, ok := files[p]; !ok {
			t.Errorf("pack lacks %s", p)
		}
	}
	if got := string(files[pack.OCILayoutPath]); got != "{\n  \"imageLayoutVersion\": \"1.0.0\"\n}\n" {
		t.Errorf("oci-layout = %q", got)
	}
	// Every blob matches its name; the shared layer is there once.
	blobs := 0
	for p, b := range files {
		if h, ok := strings.CutPrefix(p, pack.BlobsDir+"/"); ok {
			blobs++
			if sha(b) != h {
				t.Errorf("%s has sha256 %s", p, sha(b))
			}
		}
	}
	// app: manifest, config, 2 layers; tool: manifest, config, 1 layer;
	// agent: filtered index, 2 x (manifest, config, own layer); the
	// shared layer once for app and both agent platforms.
	if want := 4 + 3 + 1 + 2*3; blobs != want {
		t.Errorf("%d blobs, want %d", blobs, want)
	}

	var ix pack.Index
	if err := json.Unmarshal(files[pack.IndexPath], &ix); err != nil {
		t.Fatal(err)
	}
	if ix.PlanID != fx.planID || ix.Name != packName || ix.SourceDateEpoch != "2025-01-01T00:00:00Z" || len(ix.Entries) != len(files)-1 {
		t.Errorf("pack index header %+v (%d entries, pack has %d files)", ix, len(ix.Entries), len(files))
	}
	if len(ix.Images) != 3 || ix.Images[0].Name != "agent" || !slices.Equal(ix.Images[0].Platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("images %+v", ix.Images)
	}
	if len(ix.Bundles) != 2 || ix.Bundles[0].Kind != "evidence" || ix.Bundles[1].URL == "" {
		t.Errorf("bundles %+v", ix.Bundles)
	}

	var oix pack.OCIIndex
	if err := json.Unmarshal(files[pack.OCIIndexPath], &oix); err != nil {
		t.Fatal(err)
	}
	agent, _ := fx.plan.Input("image/agent")
	if len(oix.Manifests) != 3 || oix.Manifests[0].Annotations[pack.AnnotationImageName] != "agent" ||
		oix.Manifests[0].Annotations[pack.AnnotationRefName] != agent.Image.Tags[0] {
		t.Fatalf("index.json %s", files[pack.OCIIndexPath])
	}
	// The agent index is filtered to the two chosen platforms.
	if oix.Manifests[0].Digest != agent.Image.Filtered.Digest {
		t.Error("index.json does not point at the filtered agent index")
	}
	var filtered v1.IndexManifest
	if err := json.Unmarshal(files[pack.BlobPath(oix.Manifests[0].Digest)], &filtered); err != nil {
		t.Fatal(err)
	}
	if len(filtered.Manifests) != 2 || filtered.Manifests[0].Digest.String() != agent.Image.Manifests[0].Digest {
		t.Errorf("filtered index %s", files[pack.BlobPath(oix.Manifests[0].Digest)])
	}
	if _, ok := files[pack.BlobPath(agent.Digest)]; ok {
		t.Error("the original agent index, naming a manifest not in the pack, is in the pack")
	}

	var dm []pack.DockerManifest
	if err := json.Unmarshal(files[pack.DockerManifestPath], &dm); err != nil {
		t.Fatal(err)
	}
	amd := agent.Image.Manifests[0]
	if len(dm) != 3 || dm[0].Config != "blobs/sha256/"+strings.TrimPrefix(amd.Config.Digest, "sha256:") || len(dm[0].Layers) != 2 || dm[0].RepoTags[0] != agent.Image.Tags[0] {
		t.Errorf("manifest.json %s", files[pack.DockerManifestPath])
	}

	rep, err := verify.Pack(context.Background(), filepath.Join(out, packName+".tar"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.RootHash != res.Artifacts[0].RootHash || rep.SHA256 != res.Artifacts[0].SHA256 {
		t.Errorf("verify report %+v disagrees with %+v", rep, res.Artifacts[0])
	}
}

func TestWarmBuildRunsNothing(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	cache := t.TempDir()
	out1, out2 := t.TempDir(), t.TempDir()
	build(t, fx, out1, cache, 2)
	opens := fx.src.opens()
	var events []Event
	store, _ := cas.Open(cache)
	res, err := Execute(context.Background(), fx.sealed(t), fx.src, Options{OutDir: out2, Store: store, Progress: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.StepsRun != 0 || res.StepsCached != len(fx.plan.Steps) {
		t.Errorf("warm build ran %d steps, cached %d", res.StepsRun, res.StepsCached)
	}
	if fx.src.opens() != opens {
		t.Errorf("warm build read %d inputs", fx.src.opens()-opens)
	}
	cached, arts := 0, 0
	var packed, packTotal int64
	for _, e := range events {
		switch e.Kind {
		case EventCached:
			cached++
		case EventArtifact:
			arts++
		case EventPacked:
			// The pack is assembled again from the cache into the new
			// directory, and says how far it is.
			packed, packTotal = packed+e.Bytes, e.Total
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	if cached != len(fx.plan.Steps) || arts != 2 {
		t.Errorf("events: %d cached, %d artifacts", cached, arts)
	}
	if packed == 0 || packed != packTotal {
		t.Errorf("pack progress reached %d of %d bytes", packed, packTotal)
	}
	assertSameArtifacts(t, out1, out2)
	// The artifacts are copies: no inode shared with the store.
	fi1, _ := os.Stat(filepath.Join(out2, packName+".tar"))
	h, _ := v1.NewHash("sha256:" + res.Artifacts[0].SHA256)
	fi2, _ := os.Stat(store.Path(h))
	if os.SameFile(fi1, fi2) {
		t.Error("warm artifact is a hard link to the store")
	}
	// Rebuilding into the same directory replaces nothing (the same
	// inode stays) and leaves no temporary behind.
	build(t, fx, out2, cache, 1)
	if got := sortedNames(readArtifacts(t, out2)); len(got) != 2 {
		t.Errorf("out dir after rebuild: %v", got)
	}
	if fi3, _ := os.Stat(filepath.Join(out2, packName+".tar")); !os.SameFile(fi1, fi3) {
		t.Error("a no-op rebuild rewrote the pack")
	}
}

func assertSameArtifacts(t testing.TB, a, b string) {
	t.Helper()
	fa, fb := readArtifacts(t, a), readArtifacts(t, b)
	if !slices.Equal(sortedNames(fa), sortedNames(fb)) {
		t.Fatalf("artifacts differ: %v vs %v", sortedNames(fa), sortedNames(fb))
	}
	for n, ba := range fa {
		if !bytes.Equal(ba, fb[n]) {
			t.Errorf("%s differs: %s vs %s", n, sha(ba), sha(fb[n]))
		}
	}
}

// flip flips one byte of a file in place.
func flip(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptStoreIsRebuilt(t *testing.T) {
	t.Parallel()
	for _, tc := range []string{"layer blob, pack cached", "layer blob", "chart blob", "action entry"} {
		t.Run(tc, func(t *testing.T) {
			fx := makeFixture(t, t.TempDir(), fixtureOpts{})
			cache := t.TempDir()
			ref := t.TempDir()
			res := build(t, fx, ref, cache, 0)
			want := readArtifacts(t, ref)
			store, _ := cas.Open(cache)
			agent, _ := fx.plan.Input("image/agent")
			layer, _ := v1.NewHash(agent.Image.Manifests[1].Layers[1].Digest)
			packHash, _ := v1.NewHash("sha256:" + res.Artifacts[0].SHA256)
			packNode := fx.plan.Steps[len(fx.plan.Steps)-2]
			x, _ := newExecution(fx.sealed(t), fx.src, Options{OutDir: ref, Store: store})
			packKey := x.nodes[len(x.nodes)-2].key
			switch tc {
			case "layer blob, pack cached":
				// The pack is made again into a fresh directory from the
				// entries, the corrupt layer among them.
				flip(t, store.Path(layer), 20)
			case "layer blob":
				// The pack must be rebuilt for the layer to be read.
				flip(t, store.Path(layer), 20)
				os.Remove(filepath.Join(cache, "ac", packKey.Hex))
			case "chart blob":
				for _, n := range x.nodes {
					if n.step.Action == plan.ActionChart {
						res, _, _ := store.GetAction(context.Background(), n.key)
						flip(t, store.Path(res.Outputs[0].Digest), 30)
					}
				}
				os.Remove(filepath.Join(cache, "ac", packKey.Hex))
			case "action entry":
				os.WriteFile(filepath.Join(cache, "ac", packKey.Hex), []byte(`{"outputs":[{"path":"x"`), 0o644)
			}
			_ = packNode
			out := t.TempDir()
			var retried bool
			res2, err := Execute(context.Background(), fx.sealed(t), fx.src, Options{OutDir: out, Store: store, Progress: func(e Event) {
				if e.Kind == EventRetry {
					retried = true
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			got := readArtifacts(t, out)
			for n, b := range want {
				if !bytes.Equal(got[n], b) {
					t.Errorf("%s differs after rebuild", n)
				}
			}
			if tc != "action entry" && !retried {
				t.Error("no retry reported")
			}
			if res2.StepsRun == 0 {
				t.Error("nothing was rebuilt")
			}
			if n := res2.StepsRun + res2.StepsCached; n != len(fx.plan.Steps) {
				t.Errorf("%d steps run + %d cached = %d, want the plan's %d", res2.StepsRun, res2.StepsCached, n, len(fx.plan.Steps))
			}
			// The pack is a derived output: the store keeps its pieces,
			// never a second copy of it.
			if ok, _ := store.Has(packHash); ok {
				t.Error("the store holds the pack")
			}
		})
	}
}

func TestFailedBuildLeavesNoArtifact(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	fx.src.failAfter = 5
	out := t.TempDir()
	_, err := buildErr(fx, out, t.TempDir(), 2)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("err = %v", err)
	}
	if got := readArtifacts(t, out); len(got) != 0 {
		t.Errorf("failed build left %v", sortedNames(got))
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	store, _ := cas.Open(t.TempDir())
	out := t.TempDir()
	_, err := Execute(ctx, fx.sealed(t), fx.src, Options{OutDir: out, Store: store, Progress: func(e Event) {
		if e.Kind == EventDone {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := readArtifacts(t, out); len(got) != 0 {
		t.Errorf("cancelled build left %v", sortedNames(got))
	}
}

func TestPlanBoundCacheKeys(t *testing.T) {
	t.Parallel()
	// Two plans that differ only outside the pack's steps (the spec
	// digest) share every entry step's cache but not the pack index.
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	cache := t.TempDir()
	build(t, fx, t.TempDir(), cache, 0)
	fx.plan.Spec.Digest = "sha256:" + strings.Repeat("ab", 32)
	fx.planID = planID(t, fx.plan)
	out := t.TempDir()
	res := build(t, fx, out, cache, 0)
	if res.StepsRun != 3 { // pack-index, pack, checksum
		t.Errorf("ran %d steps, want 3", res.StepsRun)
	}
	files, _ := readPack(t, filepath.Join(out, packName+".tar"))
	ix, err := pack.ParseIndex(files[pack.IndexPath])
	if err != nil {
		t.Fatal(err)
	}
	if ix.PlanID != fx.planID || ix.SpecDigest != fx.plan.Spec.Digest {
		t.Errorf("pack index names plan %s spec %s", ix.PlanID, ix.SpecDigest)
	}
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(fx *fixture)
		want string
	}{
		{"unknown action", func(fx *fixture) {
			fx.plan.Steps[0].Action = "teleport"
			restep(fx.plan)
		}, `unknown action "teleport"`},
		{"outputs rule mismatch", func(fx *fixture) {
			for i, s := range fx.plan.Steps {
				if s.Action == plan.ActionCopy {
					fx.plan.Steps[i].Outputs = []string{packName + ".tar:signatures/renamed"}
				}
			}
			restep(fx.plan)
		}, "which the step does not produce"},
		{"release target", func(fx *fixture) { fx.plan.Targets[0].Kind = "release" }, `built by a release step exactly when it is a release`},
		{"missing bundle kind", func(fx *fixture) {
			for i, s := range fx.plan.Steps {
				if s.Action == plan.ActionPackIndex {
					fx.plan.Steps[i].Params = nil
				}
			}
			restep(fx.plan)
		}, `bundleKind.evidence-bundle-2025.01`},
		{"index filtered but not recorded", func(fx *fixture) {
			for i := range fx.plan.Inputs {
				if in := &fx.plan.Inputs[i]; in.Name == "agent" {
					in.Image.Filtered = nil
				}
			}
			fx.plan.Steps = packSteps(t, fx.plan, fixtureBundles)
		}, "records no filtered index"},
		{"filtered index digest wrong", func(fx *fixture) {
			for i := range fx.plan.Inputs {
				if in := &fx.plan.Inputs[i]; in.Name == "agent" {
					in.Image.Filtered.Size++
				}
			}
			fx.plan.Steps = packSteps(t, fx.plan, fixtureBundles)
		}, "the plan records"},
		{"bad level", func(fx *fixture) {
			for i, s := range fx.plan.Steps {
				if s.Action == plan.ActionPack {
					fx.plan.Steps[i].Params["level"] = "11"
				}
			}
			restep(fx.plan)
		}, `compression level "11"`},
		{"zstd", func(fx *fixture) {
			for i, s := range fx.plan.Steps {
				if s.Action == plan.ActionPack {
					fx.plan.Steps[i].Params["compression"] = "zstd"
				}
			}
			restep(fx.plan)
		}, `only gzip`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := makeFixture(t, t.TempDir(), fixtureOpts{})
			tt.edit(fx)
			fx.planID = planID(t, fx.plan)
			out := t.TempDir()
			_, err := buildErr(fx, out, t.TempDir(), 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if got := readArtifacts(t, out); len(got) != 0 {
				t.Errorf("left %v", sortedNames(got))
			}
		})
	}
}

// chartSource serves a chart built in memory.
type chartSource struct {
	*testSource
	c *chart.Chart
}

func (s chartSource) LoadChart(context.Context, plan.Input) (*chart.Chart, error) { return s.c, nil }

func TestHostile(t *testing.T) {
	t.Parallel()
	t.Run("digest escaping the layout", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		for i := range fx.plan.Inputs {
			if in := &fx.plan.Inputs[i]; in.Name == "app" {
				in.Image.Manifests[0].Layers[0].Digest = "sha256:../../x"
			}
		}
		assertRefused(t, fx, "sha256:../../x")
		for _, o := range fx.src.opened {
			if strings.Contains(o, "..") {
				t.Errorf("source asked for %q", o)
			}
		}
	})
	t.Run("digest escaping, plan not validated", func(t *testing.T) {
		// Even a plan never validated cannot name a path with it.
		_, err := hash("sha256:../../x")
		if err == nil {
			t.Fatal("hash accepted an escaping digest")
		}
		if pack.BlobPath("sha256:../../x") != "" {
			t.Fatal("BlobPath accepted an escaping digest")
		}
	})
	t.Run("blob bytes differ from digest", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		app, _ := fx.plan.Input("image/app")
		l := app.Image.Manifests[0].Layers[1]
		p := filepath.Join(fx.dir, "oci", "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:"))
		flip(t, p, 10)
		assertRefused(t, fx, "digest mismatch")
	})
	t.Run("manifest with 100000 layers in the plan", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		for i := range fx.plan.Inputs {
			if in := &fx.plan.Inputs[i]; in.Name == "app" {
				l := in.Image.Manifests[0].Layers[0]
				in.Image.Manifests[0].Layers = slices.Repeat([]plan.Blob{l}, 100_000)
			}
		}
		// The planner could not even declare such a step.
		app, _ := fx.plan.Input("image/app")
		if _, err := plan.ImageEntries(app); err == nil || !strings.Contains(err.Error(), "100000 layers") {
			t.Fatalf("ImageEntries: %v", err)
		}
		bad, img := app, *app.Image
		img.Manifests = []plan.Manifest{app.Image.Manifests[0]}
		img.Manifests[0].Layers = img.Manifests[0].Layers[:1]
		img.Filtered = &plan.Blob{Digest: app.Digest, Size: app.Size}
		bad.Image = &img
		if _, err := plan.ImageEntries(bad); err == nil || !strings.Contains(err.Error(), "not an index") {
			t.Fatalf("ImageEntries of a filtered non-index: %v", err)
		}
		// Outputs that name only blobs the input pins, so that the layer
		// count, not the plan's consistency check, is what refuses it.
		m := app.Image.Manifests[0]
		for i, s := range fx.plan.Steps {
			if s.Action == plan.ActionImage && s.Inputs[0] == app.Key() {
				fx.plan.Steps[i].Outputs = nil
				for _, d := range []string{m.Digest, m.Config.Digest, m.Layers[0].Digest} {
					fx.plan.Steps[i].Outputs = append(fx.plan.Steps[i].Outputs, packName+".tar:"+pack.BlobPath(d))
				}
			}
		}
		restep(fx.plan)
		assertRefused(t, fx, "100000 layers")
	})
	t.Run("manifest blob with 100000 layers", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		app, _ := fx.plan.Input("image/app")
		m := app.Image.Manifests[0]
		var mf map[string]any
		raw, _ := os.ReadFile(filepath.Join(fx.dir, "oci", "blobs", "sha256", strings.TrimPrefix(m.Digest, "sha256:")))
		json.Unmarshal(raw, &mf)
		// Minimal entries keep the manifest under the 4 MiB bound, so the
		// layer count is what refuses it.
		mf["layers"] = slices.Repeat([]any{map[string]any{}}, 100_000)
		bad, _ := json.Marshal(mf)
		// Serve the hostile manifest under a digest the plan pins.
		sum := sha256.Sum256(bad)
		d := "sha256:" + hex.EncodeToString(sum[:])
		os.WriteFile(filepath.Join(fx.dir, "oci", "blobs", "sha256", hex.EncodeToString(sum[:])), bad, 0o644)
		for i := range fx.plan.Inputs {
			if in := &fx.plan.Inputs[i]; in.Name == "app" {
				in.Digest, in.Size = d, int64(len(bad))
				in.Image.Manifests[0].Digest, in.Image.Manifests[0].Size = d, int64(len(bad))
			}
		}
		fx.plan.Steps = nil
		fx.plan.Steps = packSteps(t, fx.plan, fixtureBundles)
		assertRefused(t, fx, "100000 layers")
		for _, o := range fx.src.opened {
			if o == m.Layers[1].Digest {
				t.Error("layers were fetched for a refused manifest")
			}
		}
	})
	t.Run("chart named ..", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		for i, s := range fx.plan.Steps {
			if s.Action == plan.ActionChart {
				fx.plan.Steps[i].Params["name"] = ".."
				fx.plan.Steps[i].Outputs = []string{packName + ".tar:charts/..-0.1.0.tgz"}
			}
		}
		restep(fx.plan)
		assertRefused(t, fx, `chart name ".."`)
	})
	t.Run("output escaping the pack", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		for i, s := range fx.plan.Steps {
			if s.Action == plan.ActionCopy {
				fx.plan.Steps[i].Outputs = []string{packName + ".tar:../../escape"}
			}
		}
		restep(fx.plan)
		assertRefused(t, fx, "leaves the output directory")
	})
	t.Run("chart file escaping", func(t *testing.T) {
		fx := makeFixture(t, t.TempDir(), fixtureOpts{})
		c := &chart.Chart{
			Metadata: &chart.Metadata{APIVersion: "v2", Name: "web", Version: "0.1.0"},
			Raw: []*chart.File{
				{Name: "Chart.yaml", Data: []byte("apiVersion: v2\nname: web\nversion: 0.1.0\n")},
				{Name: "../../../evil", Data: []byte("x")},
			},
		}
		fx.src = &testSource{root: fx.dir}
		src := chartSource{fx.src, c}
		out := t.TempDir()
		store, _ := cas.Open(t.TempDir())
		_, err := Execute(context.Background(), fx.sealed(t), src, Options{OutDir: out, Store: store})
		if err == nil || !strings.Contains(err.Error(), "../../../evil") {
			t.Fatalf("err = %v", err)
		}
		if got := readArtifacts(t, out); len(got) != 0 {
			t.Errorf("left %v", sortedNames(got))
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(out), "evil")); err == nil {
			t.Error("wrote outside the output directory")
		}
	})
}

// assertRefused builds fx expecting an error containing want, and checks
// nothing was left in the output directory or beside it.
func assertRefused(t *testing.T, fx *fixture, want string) {
	t.Helper()
	fx.planID = planID(t, fx.plan)
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	_, err := buildErr(fx, out, filepath.Join(parent, "cache"), 0)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
	if got := readArtifacts(t, out); len(got) != 0 {
		t.Errorf("left %v in the output directory", sortedNames(got))
	}
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if e.Name() != "out" && e.Name() != "cache" {
			t.Errorf("wrote %s beside the output directory", e.Name())
		}
	}
}

// TestBuildSyncsCache: the blobs a build puts in the cache are made durable
// together before its artifacts are published, and only then stamped.
func TestBuildSyncsCache(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	cache := t.TempDir()
	build(t, fx, t.TempDir(), cache, 0)
	store, _ := cas.Open(cache)
	agent, _ := fx.plan.Input("image/agent")
	layer, _ := v1.NewHash(agent.Image.Manifests[0].Layers[0].Digest)
	if !store.Verified(layer) {
		t.Error("a layer the build stored is not stamped: the build did not sync the cache")
	}
}
