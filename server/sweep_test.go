package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plantTemporaries leaves in the data directory what a build of plan
// planID killed mid-way leaves: a temporary pack in its build directory
// (its writer's lock gone with the writer) and a Go build's directory in
// its temporary directory. It returns their paths.
func plantTemporaries(t *testing.T, s *Server, planID string) []string {
	t.Helper()
	pack := filepath.Join(s.buildDir(planID), ".bootstrap-pack-v1.tar.tmp-123456")
	gosrc := filepath.Join(s.buildTemp(planID), "bale-go-123456", "src", "main.go")
	for _, p := range []string{pack, gosrc} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return []string{pack, filepath.Dir(filepath.Dir(gosrc))}
}

func mustBeGone(t *testing.T, when string, paths []string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s: %s is still there", when, p)
		}
	}
}

// TestSweepTemporaries: what a killed build left (a temporary pack, a Go
// build's directory) is removed when a build of its plan completes, and
// at start for plans with no build queued or running; a queued build's
// are kept until it runs (a live writer's, locked, are never removed).
func TestSweepTemporaries(t *testing.T) {
	t.Parallel()
	toks, byRole := testTokens(t)
	cfg := Config{DataDir: t.TempDir(), Specs: []string{writeSpecs(t, 2)}, Tokens: toks,
		Logger: slog.New(slog.NewJSONHandler(&syncBuffer{}, nil)), Rate: 1000, Burst: 1000}
	cfg.Resolve.Offline = true

	// When the plan's build completes.
	is := startIdle(t, cfg, byRole)
	first := is.export(is.post("rw", `{"spec":"s1"}`))
	planted := plantTemporaries(t, is.s, first.PlanID)
	orphan := plantTemporaries(t, is.s, "sha256:"+strings.Repeat("ab", 32))
	is.runJobs()
	if st := is.wait(first.ExportID); st.Status != statusSucceeded {
		t.Fatalf("export %s: %s", st.Status, st.Reason)
	}
	mustBeGone(t, "after the plan's build completed", planted)
	is.stop()

	// At start, for a plan with no build.
	is = startIdle(t, cfg, byRole)
	mustBeGone(t, "after a start, with no build of the plan", orphan)
	second := is.export(is.post("rw", `{"spec":"s2"}`))
	queued := plantTemporaries(t, is.s, second.PlanID)
	is.stop()

	// Not at start for a plan whose build is queued: it sweeps them when
	// it completes.
	is = startIdle(t, cfg, byRole)
	for _, p := range queued {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("a start removed the temporaries of a plan whose build is queued: %v", err)
		}
	}
	is.runJobs()
	if st := is.wait(second.ExportID); st.Status != statusSucceeded {
		t.Fatalf("export %s: %s", st.Status, st.Reason)
	}
	mustBeGone(t, "after the queued build completed", queued)
}
