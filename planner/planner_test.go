package planner_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/diff"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

var update = flag.Bool("update", false, "rewrite the golden plans in testdata/")

// repoRoot is the repository root, found from this file.
func repoRoot(t testing.TB) string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(self))
}

// planSpec plans the spec at path (relative to the repo root) and returns
// the canonical bytes.
func planSpec(t testing.TB, path string, opts planner.Options) []byte {
	t.Helper()
	root := repoRoot(t)
	insts, diags, err := spec.Load(context.Background(), []string{filepath.Join(root, path)}, spec.Options{})
	if err != nil || diags.HasErrors() || len(insts) != 1 {
		t.Fatalf("load %s: %v %v", path, err, diags)
	}
	if opts.Resolver == nil {
		r, err := source.New(source.Options{Root: root, Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		opts.Resolver = r
	}
	p, err := planner.Plan(context.Background(), insts[0], opts)
	if err != nil {
		t.Fatalf("plan %s: %v", path, err)
	}
	return p.Bytes()
}

// TestMain lets the test binary act as a planning child process, so
// TestPlanStable can plan under another working directory, TZ and
// GOMAXPROCS.
func TestMain(m *testing.M) {
	if spec := os.Getenv("BALE_PLAN_CHILD"); spec != "" {
		flag.Parse()
		os.Stdout.Write(planSpec(&testing.B{}, spec, planner.Options{}))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestPlanStable: the real specs plan offline from the fixtures, and the
// same spec gives the same bytes from another directory, TZ and
// GOMAXPROCS; the plan id is the file's sha256.
func TestPlanStable(t *testing.T) {
	for _, s := range []string{"specs/airgap", "specs/aoc"} {
		t.Run(s, func(t *testing.T) {
			var outs [][]byte
			for _, env := range [][]string{
				{"TZ=UTC", "GOMAXPROCS=1"},
				{"TZ=Asia/Kolkata", "GOMAXPROCS=2"},
			} {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Dir = t.TempDir()
				cmd.Env = append(append(os.Environ(), "BALE_PLAN_CHILD="+s), env...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("child %v: %v\n%s", env, err, stderr.Bytes())
				}
				outs = append(outs, out)
			}
			if !bytes.Equal(outs[0], outs[1]) {
				t.Fatalf("plans differ between runs:\n%s\n---\n%s", outs[0], outs[1])
			}
			sum := plan.ID(outs[0])
			p, err := plan.Decode(bytes.NewReader(outs[0]))
			if err != nil {
				t.Fatalf("the plan does not decode: %v", err)
			}
			if !strings.HasPrefix(sum, "sha256:") || len(p.Inputs) == 0 {
				t.Errorf("plan id %s, %d inputs", sum, len(p.Inputs))
			}
			if bytes.Contains(outs[0], []byte(repoRoot(t))) {
				t.Error("the plan holds an absolute path of this machine")
			}
		})
	}
}

// TestGoldenPlans pins the plans of the real specs: any change to the plan
// format or to a fixture shows in review.
func TestGoldenPlans(t *testing.T) {
	// The Go toolchain is pinned so the golden plans do not change with
	// the go command that runs the tests.
	goVersion := func(context.Context) (string, error) { return "go1.26.8", nil }
	for _, s := range []string{"airgap", "aoc"} {
		got := planSpec(t, "specs/"+s, planner.Options{GoVersion: goVersion})
		golden := filepath.Join("testdata", s+".plan.json")
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test ./planner -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("plan of specs/%s differs from %s (go test ./planner -update to accept):\n%s", s, golden, got)
		}
	}
}

func TestSourceDateEpochOverride(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	b := planSpec(t, "specs/airgap", planner.Options{SourceDateEpoch: &ts})
	if !bytes.Contains(b, []byte(`"sourceDateEpoch": "2023-11-14T22:13:20Z"`)) {
		t.Errorf("override not applied:\n%.400s", b)
	}
}

// registrySpec writes a spec naming an image in a test registry by tag.
func registrySpec(t *testing.T, host string) *spec.Instance {
	t.Helper()
	dir := t.TempDir()
	src := `package p

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [{name: "web", ref: "` + host + `/team/web:1.0"}]
}
`
	if err := os.WriteFile(filepath.Join(dir, "pack.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	insts, diags, err := spec.Load(context.Background(), []string{dir}, spec.Options{})
	if err != nil || diags.HasErrors() {
		t.Fatal(err, diags)
	}
	return insts[0]
}

func pushRandom(t *testing.T, ref string) {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// TestTagMovedAndLock: a tag moved between two plans shows as a re-pin in
// diff; with the first plan as the lock, the move is ignored; an input
// missing from the lock is an error.
func TestTagMovedAndLock(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/team/web:1.0"
	inst := registrySpec(t, host)
	r, err := source.New(source.Options{Root: inst.Dir})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(lock *plan.Plan) (*plan.Plan, []byte, error) {
		p, err := planner.Plan(context.Background(), inst, planner.Options{Resolver: r, Lock: lock})
		if err != nil {
			return nil, nil, err
		}
		return p.Plan(), p.Bytes(), nil
	}
	pushRandom(t, ref)
	first, fb, err := mk(nil)
	if err != nil {
		t.Fatal(err)
	}
	pushRandom(t, ref) // the tag moves
	second, sb, err := mk(nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := diff.Plans("a", "b", plan.ID(fb), plan.ID(sb), first, second)
	if rep.Empty() || len(rep.Repinned) != 1 || rep.Repinned[0].Key != "image/web" ||
		rep.Repinned[0].Old != first.Inputs[0].Digest || rep.Repinned[0].New != second.Inputs[0].Digest {
		t.Fatalf("diff after a tag move: %+v", rep)
	}
	_, lb, err := mk(first)
	if err != nil {
		t.Fatalf("plan with lock: %v", err)
	}
	if !bytes.Equal(lb, fb) {
		t.Errorf("a locked plan of an unchanged spec must equal the lock:\n%s\n---\n%s", lb, fb)
	}
	// Offline, with the lock: the registry is not asked at all (it is
	// gone), and the plan is the lock's.
	srv.Close()
	ro, err := source.New(source.Options{Root: inst.Dir, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	op, err := planner.Plan(context.Background(), inst, planner.Options{Resolver: ro, Lock: first, Offline: true})
	if err != nil {
		t.Fatalf("offline plan with lock: %v", err)
	}
	if ob := op.Bytes(); !bytes.Equal(ob, fb) {
		t.Errorf("an offline plan from the lock must equal the lock")
	}
	// A lock that pins another source than the spec names is refused.
	moved := *first
	moved.Inputs = append([]plan.Input(nil), first.Inputs...)
	moved.Inputs[0].Source.Ref = "elsewhere.example/web:1.0"
	if _, err := planner.Plan(context.Background(), inst, planner.Options{Resolver: ro, Lock: &moved, Offline: true}); err == nil ||
		!strings.Contains(err.Error(), "the spec names a different source than the lock plan (registry elsewhere.example/web:1.0)") {
		t.Errorf("offline plan with a lock of another source: %v", err)
	}
	// Without the lock, offline planning of a registry image is refused.
	if _, err := planner.Plan(context.Background(), inst, planner.Options{Resolver: ro, Offline: true}); err == nil || !errors.Is(err, source.ErrOffline) {
		t.Errorf("offline plan without lock: %v", err)
	}
	empty := *first
	empty.Inputs = nil
	if _, _, err := mk(&empty); err == nil || !strings.Contains(err.Error(), "input image/web is not in the lock plan") {
		t.Errorf("missing lock input: %v", err)
	}
}

// TestAllErrorsReported: one run names every input that fails.
func TestAllErrorsReported(t *testing.T) {
	dir := t.TempDir()
	src := `package p

bootstrapPack: {
	sourceDateEpoch: 0
	charts: [{name: "a", path: "nope-a", version: "1"}, {name: "b", path: "nope-b", version: "1"}]
	signatures: [{name: "s", kind: "tuf", path: "nope-s"}]
}
`
	os.WriteFile(filepath.Join(dir, "p.cue"), []byte(src), 0o644)
	insts, _, err := spec.Load(context.Background(), []string{dir}, spec.Options{})
	if err != nil || len(insts) != 1 {
		t.Fatal(err)
	}
	r, _ := source.New(source.Options{Root: dir, Offline: true})
	_, err = planner.Plan(context.Background(), insts[0], planner.Options{Resolver: r})
	for _, want := range []string{"nope-a", "nope-b", "nope-s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	root := repoRoot(t)
	insts, _, _ := spec.Load(context.Background(), []string{filepath.Join(root, "specs/airgap")}, spec.Options{})
	r, _ := source.New(source.Options{Root: root, Offline: true})
	if _, err := planner.Plan(ctx, insts[0], planner.Options{Resolver: r}); err == nil {
		t.Fatal("a cancelled plan succeeded")
	}
}

func TestFindRoot(t *testing.T) {
	root := repoRoot(t)
	if got := planner.FindRoot(filepath.Join(root, "specs", "airgap")); got != root {
		t.Errorf("FindRoot = %s, want %s", got, root)
	}
	lone := t.TempDir()
	if got := planner.FindRoot(lone); got != lone && !strings.HasPrefix(lone, got) {
		t.Errorf("FindRoot(%s) = %s", lone, got)
	}
}

// BenchmarkPlanRealSpecs is loading and planning both real specs offline.
func BenchmarkPlanRealSpecs(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		planSpec(b, "specs/airgap", planner.Options{})
		planSpec(b, "specs/aoc", planner.Options{})
	}
}

// unwindSlowly is the real resolver, but a failed image resolution takes a
// little longer to come back, as a worker deep in a registry client does:
// it makes a worker that outlives Plan show up every time, not by chance.
type unwindSlowly struct{ *source.Resolver }

func (u unwindSlowly) Image(ctx context.Context, specDir string, img spec.Image) (plan.Input, error) {
	in, err := u.Resolver.Image(ctx, specDir, img)
	if err != nil {
		time.Sleep(50 * time.Millisecond)
	}
	return in, err
}

// TestCancelMidRun: a cancel while the third of eight images hangs in a
// loopback registry ends Plan with the cancel, after every worker has
// returned: no Progress call comes after Plan returned, and no goroutine
// it started is left.
func TestCancelMidRun(t *testing.T) {
	const images = 8
	blocked := make(chan struct{})
	var blocking atomic.Bool
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if blocking.Load() && req.Method == http.MethodGet && strings.HasPrefix(req.URL.Path, "/v2/team/img-2/manifests/") {
			close(blocked)
			<-req.Context().Done() // until bale gives up on the request
			return
		}
		reg.ServeHTTP(w, req)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var refs []string
	for i := range images {
		ref := fmt.Sprintf("%s/team/img-%d:1", host, i)
		pushRandom(t, ref)
		refs = append(refs, fmt.Sprintf("{name: \"img-%d\", ref: %q}", i, ref))
	}
	blocking.Store(true)
	dir := t.TempDir()
	src := "package p\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [" + strings.Join(refs, ", ") + "]\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "p.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	insts, diags, err := spec.Load(context.Background(), []string{dir}, spec.Options{})
	if err != nil || diags.HasErrors() || len(insts) != 1 {
		t.Fatal(err, diags)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	r, err := source.New(source.Options{Root: dir, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}

	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-blocked
		cancel()
	}()
	var returned, late atomic.Bool
	var calls atomic.Int32
	_, err = planner.Plan(ctx, insts[0], planner.Options{
		Resolver: unwindSlowly{r},
		Jobs:     2,
		Progress: func(string, int, int) {
			calls.Add(1)
			if returned.Load() {
				late.Store(true)
			}
		},
	})
	returned.Store(true)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls.Load() == 0 {
		t.Error("no input was resolved before the cancel: the cancel did not come mid-run")
	}
	time.Sleep(200 * time.Millisecond) // time for a stray worker to report
	if late.Load() {
		t.Error("Progress was called after Plan returned")
	}
	tr.CloseIdleConnections()
	srv.CloseClientConnections()
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); n > before && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	if n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Plan, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
