package executor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	_ "time/tzdata" // TZ=Asia/Kolkata must take effect even without system zoneinfo

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
)

// The helper process plans and builds the repository's air-gap spec, from
// a workspace copy, in a child process, so the umask, TZ and GOMAXPROCS it
// runs under are real process state, not simulated. It runs the production
// path: spec.Load, planner.Plan with source.Resolver, and Execute
// with that resolver as Source (blob files copied or linked into the
// store). It is this test binary re-executed with -test.run naming
// TestHelperProcess and BALE_HELPER=1 in the environment.
const helperEnv = "BALE_HELPER"

// helperReport is what the helper prints on stdout.
type helperReport struct {
	PlanID     string
	StepsRun   int
	Zone       string
	Offset     int
	GOMAXPROCS int
	Umask      int
}

// TestHelperProcess is not a test: it is the body of the child process.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for other tests")
	}
	umask := -1
	if u := os.Getenv("BALE_HELPER_UMASK"); u != "" {
		m, err := strconv.ParseInt(u, 8, 32)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Umask(int(m))
		umask = int(m)
	}
	jobs, _ := strconv.Atoi(os.Getenv("BALE_HELPER_JOBS"))
	rp := mustPlanWorkspace(t, os.Getenv("BALE_HELPER_ROOT"), nil)
	store, err := cas.Open(os.Getenv("BALE_HELPER_CACHE"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "building")
	progress := func(e Event) { fmt.Fprintln(os.Stderr, "event", e.Kind, e.Action, e.Subject) }
	res, err := Execute(context.Background(), rp.sealed, rp.src, Options{OutDir: os.Getenv("BALE_HELPER_OUT"), Store: store, Jobs: jobs, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	zone, off := time.Now().Zone()
	json.NewEncoder(os.Stdout).Encode(helperReport{PlanID: rp.id, StepsRun: res.StepsRun, Zone: zone, Offset: off, GOMAXPROCS: runtime.GOMAXPROCS(0), Umask: umask})
}

// helperCmd prepares a child build of the workspace at root.
func helperCmd(t *testing.T, root, out, cache string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "BALE_HELPER_ROOT="+root, "BALE_HELPER_OUT="+out, "BALE_HELPER_CACHE="+cache)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func runHelper(t *testing.T, root, out, cache string, env ...string) helperReport {
	t.Helper()
	cmd := helperCmd(t, root, out, cache, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %v: %v\n%s\n%s", env, err, stdout, stderr.String())
	}
	// go test prints PASS after the report.
	line, _, _ := strings.Cut(string(stdout), "\n")
	var rep helperReport
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("helper output %q: %v", stdout, err)
	}
	return rep
}

// TestByteStability builds the real spec from workspace copies in child
// processes under different umasks, time zones, GOMAXPROCS, job counts and
// file mtimes, cold and warm, and compares every artifact with an
// in-process build of the repository's own workspace.
func TestByteStability(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("subprocess builds")
	}
	// The reference: this process, the repository's workspace.
	rp := mustPlanWorkspace(t, repoRoot(t), nil)
	ref := t.TempDir()
	rp.build(t, ref, t.TempDir())

	workspace := func(shift time.Duration) string {
		dir := t.TempDir()
		copyWorkspace(t, dir)
		if shift != 0 {
			shiftMtimes(t, dir, shift)
		}
		return dir
	}
	plain, old, recent := workspace(0), workspace(-40000*time.Hour), workspace(5*time.Hour)
	cacheA, cacheB := t.TempDir(), t.TempDir()
	runs := []struct {
		name  string
		root  string
		cache string
		env   []string
		warm  bool
	}{
		{"umask022 UTC GOMAXPROCS=1 cold", plain, cacheA, []string{"BALE_HELPER_UMASK=022", "TZ=UTC", "GOMAXPROCS=1", "BALE_HELPER_JOBS=1"}, false},
		{"umask077 Kolkata GOMAXPROCS=2 shifted mtimes cold", old, cacheB, []string{"BALE_HELPER_UMASK=077", "TZ=Asia/Kolkata", "GOMAXPROCS=2", "BALE_HELPER_JOBS=8"}, false},
		{"umask077 Kolkata GOMAXPROCS=2 warm", recent, cacheB, []string{"BALE_HELPER_UMASK=077", "TZ=Asia/Kolkata", "GOMAXPROCS=2", "BALE_HELPER_JOBS=2"}, true},
		{"umask022 UTC GOMAXPROCS=1 warm from the other cache", plain, cacheB, []string{"BALE_HELPER_UMASK=022", "TZ=UTC", "GOMAXPROCS=1", "BALE_HELPER_JOBS=1"}, true},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			rep := runHelper(t, r.root, out, r.cache, r.env...)
			if rep.PlanID != rp.id {
				t.Errorf("plan id %s, reference %s: the plan depends on where or how it is made", rep.PlanID, rp.id)
			}
			if r.warm != (rep.StepsRun == 0) {
				t.Errorf("warm=%v but ran %d steps", r.warm, rep.StepsRun)
			}
			for _, e := range r.env {
				switch e {
				case "TZ=Asia/Kolkata":
					if rep.Offset != 5*3600+1800 {
						t.Errorf("child zone %s %d: TZ did not take effect", rep.Zone, rep.Offset)
					}
				case "GOMAXPROCS=2":
					if rep.GOMAXPROCS != 2 {
						t.Errorf("child GOMAXPROCS %d", rep.GOMAXPROCS)
					}
				}
			}
			assertSameArtifacts(t, ref, out)
		})
	}
}

// bigImageWorkspace is a copy of the repository's workspace whose air-gap
// spec gains one more image, "a-big" (first in plan order), from an OCI
// layout holding a layer of mb MiB of random bytes: enough for a build to
// be killed while it copies blobs into the store or writes the pack.
func bigImageWorkspace(t *testing.T, mb int) string {
	t.Helper()
	dir := t.TempDir()
	copyWorkspace(t, dir)
	data := make([]byte, mb<<20)
	io.ReadFull(randomReader(7), data)
	img := testImage(t, true, "linux/amd64", &testLayer{compressed: data, uncompressed: data, mt: types.OCILayer})
	lp, err := layout.Write(filepath.Join(dir, "testdata", "oci", "big"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "stellaops/big:1.0.0"
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		t.Fatal(err)
	}
	cue := filepath.Join(dir, realSpecDir, "pack.cue")
	src, err := os.ReadFile(cue)
	if err != nil {
		t.Fatal(err)
	}
	entry := "images: [{\n\t\tname: \"a-big\"\n\t\tlayout: {\n\t\t\tpath: _fixtures + \"/oci/big\"\n\t\t\trefName: \"" + ref + "\"\n\t\t}\n\t\ttags: [\"" + ref + "\"]\n\t}, {"
	edited := strings.Replace(string(src), "images: [{", entry, 1)
	if edited == string(src) {
		t.Fatal("the air-gap spec no longer has the images list this test extends")
	}
	if err := os.WriteFile(cue, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKilledBuild kills a build of the real spec (plus a large image) with
// SIGKILL while it puts image blobs into the store and while it writes the
// pack: no artifact may be left under its final name, and the next build,
// reusing whatever the killed one left in the store, must give the bytes of
// a build with a fresh store.
func TestKilledBuild(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("subprocess builds")
	}
	const bigMB = 48
	root := bigImageWorkspace(t, bigMB)
	rp := mustPlanWorkspace(t, root, nil)
	ref := t.TempDir()
	rp.build(t, ref, t.TempDir())
	want := readArtifacts(t, ref)
	var bigStep string
	for _, s := range rp.plan.Steps {
		if s.Action == plan.ActionImage && s.Inputs[0] == "image/a-big" {
			bigStep = s.Outputs[0]
		}
	}
	if bigStep == "" {
		t.Fatal("no image step for the big image")
	}
	for _, at := range []struct {
		name, event string
		delay       time.Duration
	}{
		{"while storing the big image", "event start image " + bigStep, 2 * time.Millisecond},
		{"while writing the pack", "event start pack " + packName + ".tar", 20 * time.Millisecond},
	} {
		t.Run(at.name, func(t *testing.T) {
			out, cache := t.TempDir(), t.TempDir()
			cmd := helperCmd(t, root, out, cache, "BALE_HELPER_JOBS=1")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stderr)
			for sc.Scan() && !strings.HasPrefix(sc.Text(), at.event) {
			}
			time.Sleep(at.delay)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			go func() {
				for sc.Scan() {
				}
			}()
			err = cmd.Wait()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("helper was not killed mid-build (wait: %v)", err)
			}
			for name := range readArtifacts(t, out) {
				if !strings.HasPrefix(name, ".") {
					t.Errorf("killed build left %s under its final name", name)
				}
			}
			// What the killed build was writing stays until it is old
			// enough; aged, the next build sweeps it (issue 7 point 7).
			left := cacheTemps(t, cache)
			t.Logf("killed build left %d temporary files in the cache", len(left))
			for _, p := range append(left, tempsIn(t, out)...) {
				old := time.Now().Add(-time.Hour)
				os.Chtimes(p, old, old)
			}
			rp.build(t, out, cache)
			got := readArtifacts(t, out)
			for name, b := range want {
				if string(got[name]) != string(b) {
					t.Errorf("%s differs after the killed build", name)
				}
			}
			if left := append(cacheTemps(t, cache), tempsIn(t, out)...); len(left) != 0 {
				t.Errorf("temporary files left after the next build: %q", left)
			}
		})
	}
}

// cacheTemps lists the temporary files in a cache's directories.
func cacheTemps(t testing.TB, cache string) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"blobs/sha256", "ac", "stamps"} {
		out = append(out, tempsIn(t, filepath.Join(cache, d))...)
	}
	return out
}

// tempsIn lists the hidden files in dir.
func tempsIn(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			out = append(out, filepath.Join(dir, de.Name()))
		}
	}
	return out
}
