package executor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/bale-build/bale/executor/cas"
)

// The helper process builds the fixture plan in a child process, so the
// umask, TZ and GOMAXPROCS it runs under are real process state, not
// simulated. It is this test binary re-executed with -test.run naming
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
	shift, _ := strconv.Atoi(os.Getenv("BALE_HELPER_SHIFT_HOURS"))
	big, _ := strconv.Atoi(os.Getenv("BALE_HELPER_BIG_MB"))
	jobs, _ := strconv.Atoi(os.Getenv("BALE_HELPER_JOBS"))
	slow, _ := time.ParseDuration(os.Getenv("BALE_HELPER_SLOW"))
	fixDir, err := os.MkdirTemp(os.Getenv("BALE_HELPER_WORK"), "fixture-")
	if err != nil {
		t.Fatal(err)
	}
	fx := makeFixture(t, fixDir, fixtureOpts{mtimeShift: time.Duration(shift) * time.Hour, bigLayerMB: big})
	fx.src.slow = slow
	store, err := cas.Open(os.Getenv("BALE_HELPER_CACHE"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "building")
	progress := func(e Event) { fmt.Fprintln(os.Stderr, "event", e.Kind, e.Action) }
	res, err := Execute(context.Background(), fx.plan, fx.planID, fx.src, Options{OutDir: os.Getenv("BALE_HELPER_OUT"), Store: store, Jobs: jobs, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	zone, off := time.Now().Zone()
	json.NewEncoder(os.Stdout).Encode(helperReport{PlanID: fx.planID, StepsRun: res.StepsRun, Zone: zone, Offset: off, GOMAXPROCS: runtime.GOMAXPROCS(0), Umask: umask})
}

// helperCmd prepares a child build.
func helperCmd(t *testing.T, work, out, cache string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "BALE_HELPER_WORK="+work, "BALE_HELPER_OUT="+out, "BALE_HELPER_CACHE="+cache)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func runHelper(t *testing.T, work, out, cache string, env ...string) helperReport {
	t.Helper()
	cmd := helperCmd(t, work, out, cache, env...)
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

func TestByteStability(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess builds")
	}
	work := t.TempDir()
	// The reference: this process, in-process build.
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	ref := t.TempDir()
	build(t, fx, ref, t.TempDir(), 0)

	cacheA, cacheB := t.TempDir(), t.TempDir()
	runs := []struct {
		name  string
		cache string
		env   []string
		warm  bool
	}{
		{"umask022 UTC GOMAXPROCS=1 cold", cacheA, []string{"BALE_HELPER_UMASK=022", "TZ=UTC", "GOMAXPROCS=1", "BALE_HELPER_JOBS=1"}, false},
		{"umask077 Kolkata GOMAXPROCS=2 shifted mtimes cold", cacheB, []string{"BALE_HELPER_UMASK=077", "TZ=Asia/Kolkata", "GOMAXPROCS=2", "BALE_HELPER_JOBS=8", "BALE_HELPER_SHIFT_HOURS=-40000"}, false},
		{"umask077 Kolkata GOMAXPROCS=2 warm", cacheB, []string{"BALE_HELPER_UMASK=077", "TZ=Asia/Kolkata", "GOMAXPROCS=2", "BALE_HELPER_JOBS=2", "BALE_HELPER_SHIFT_HOURS=5"}, true},
		{"umask022 UTC GOMAXPROCS=1 warm from the other cache", cacheB, []string{"BALE_HELPER_UMASK=022", "TZ=UTC", "GOMAXPROCS=1", "BALE_HELPER_JOBS=1"}, true},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			rep := runHelper(t, work, out, r.cache, r.env...)
			if rep.PlanID != fx.planID {
				t.Errorf("plan id %s, reference %s: the fixture is not deterministic", rep.PlanID, fx.planID)
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

// TestKilledBuild kills a build with SIGKILL while it fetches image blobs
// and while it writes the pack: no artifact may be left under its final
// name, and the next build, reusing whatever the killed one left in the
// store, must give the same bytes.
func TestKilledBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess builds")
	}
	const bigMB = 48
	fx := makeFixture(t, t.TempDir(), fixtureOpts{bigLayerMB: bigMB})
	ref := t.TempDir()
	build(t, fx, ref, t.TempDir(), 0)
	want := readArtifacts(t, ref)
	for _, at := range []struct {
		event string
		delay time.Duration
	}{
		{"event start image", 2 * time.Millisecond},
		{"event start pack", 20 * time.Millisecond},
	} {
		t.Run(at.event, func(t *testing.T) {
			work, out, cache := t.TempDir(), t.TempDir(), t.TempDir()
			cmd := helperCmd(t, work, out, cache, "BALE_HELPER_JOBS=1", fmt.Sprintf("BALE_HELPER_BIG_MB=%d", bigMB))
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stderr)
			for sc.Scan() && sc.Text() != at.event {
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
			build(t, fx, out, cache, 0)
			got := readArtifacts(t, out)
			for name, b := range want {
				if string(got[name]) != string(b) {
					t.Errorf("%s differs after the killed build", name)
				}
			}
		})
	}
}
