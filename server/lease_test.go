package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// killJob makes plan planID's queued build job look like one a dead
// server was running: state running, and a lease that ran out.
func killJob(t *testing.T, s *Server, planID string) int64 {
	t.Helper()
	ctx := context.Background()
	st := s.store
	var id int64
	if err := st.db.QueryRowContext(ctx, st.q(`SELECT id FROM river_job WHERE kind = ? AND args ->> 'planId' = ? AND state = 'available'`),
		buildArgs{}.Kind(), planID).Scan(&id); err != nil {
		t.Fatalf("the build job of %s: %v", planID, err)
	}
	if _, err := st.db.ExecContext(ctx, st.q(`UPDATE river_job SET state = 'running', attempt = 1, attempted_at = `+st.nowTS()+` WHERE id = ?`), id); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.ExecContext(ctx, st.q(`INSERT INTO bale_leases (job_id, owner, expires_at) VALUES (?, 'dead-server', 0)`), id); err != nil {
		t.Fatal(err)
	}
	return id
}

// jobState is the River state of job id.
func jobState(t *testing.T, s *Server, id int64) string {
	t.Helper()
	var state string
	if err := s.store.db.QueryRowContext(context.Background(), s.store.q(`SELECT state FROM river_job WHERE id = ?`), id).Scan(&state); err != nil {
		t.Fatal(err)
	}
	return state
}

// TestDeadBuildNotCounted: a build whose server died (its job running, its
// lease run out) is not counted against its tenant's --tenant-builds, and
// a POST of its plan does not join it: the dead job is discarded and the
// POST's own build replaces it, which then finishes every export of the
// plan, the dead build's among them.
func TestDeadBuildNotCounted(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, db string) {
		toks, byRole := testTokens(t)
		cfg := Config{
			DataDir: t.TempDir(), Database: db, Specs: []string{writeSpecs(t, 2)}, Tokens: toks,
			Logger: slog.New(slog.NewJSONHandler(&syncBuffer{}, nil)), Rate: 1000, Burst: 1000, TenantBuilds: 1,
		}
		cfg.Resolve.Offline = true
		is := startIdle(t, cfg, byRole)
		first := is.export(is.post("rw", `{"spec":"s1"}`))
		dead := killJob(t, is.s, first.PlanID)

		r := is.post("rw", `{"spec":"s2"}`)
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("acme's build is dead, a POST of another plan: %d %s, want 202", r.StatusCode, r.body)
		}
		second := is.export(r)

		r = is.post("other", `{"spec":"s1"}`)
		if r.StatusCode != http.StatusAccepted || !strings.Contains(r.Header.Get("RateLimit"), `"builds";r=0`) {
			t.Fatalf("POST of the dead build's plan: %d RateLimit %q, want 202 counted as a new build (r=0): %s", r.StatusCode, r.Header.Get("RateLimit"), r.body)
		}
		third := is.export(r)
		if got := jobState(t, is.s, dead); got != "discarded" {
			t.Fatalf("the dead build's job is %s after a POST of its plan, want discarded", got)
		}
		if ok, err := is.s.store.building(context.Background(), buildArgs{}.Kind(), first.PlanID); err != nil || !ok {
			t.Fatalf("no live build of %s after the POST (%v)", first.PlanID, err)
		}

		is.runJobs()
		for _, e := range []exportStatus{first, second, third} {
			role := "rw"
			if e.ExportID == third.ExportID {
				role = "other"
			}
			if st := is.waitAs(role, e.ExportID); st.Status != statusSucceeded {
				t.Errorf("export %s of %s: %s %s", e.ExportID, e.PlanID, st.Status, st.Reason)
			}
		}
	})
}

// TestJobRetention: finished build jobs are deleted from the job store
// by River's cleaner once older than Config.JobRetention (the exports
// stay: they are bale's records).
func TestJobRetention(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	h := startServer(t, "", func(c *Config) { c.DataDir = data })
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export %s: %s", st.Status, st.Reason)
	}
	finished := func(s *Server) int {
		var n int
		if err := s.store.db.QueryRow(`SELECT count(*) FROM river_job WHERE finalized_at IS NOT NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for finished(h.s) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the build's job never finished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.stop()
	// The cleaner runs as the server starts, then every 30 s.
	h = startServer(t, "", func(c *Config) { c.DataDir, c.JobRetention = data, time.Millisecond })
	deadline = time.Now().Add(2 * time.Minute)
	for finished(h.s) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("finished build jobs still in the job store 2m after a start with a retention of 1ms")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := h.wait(st.ExportID); got.Status != statusSucceeded {
		t.Fatalf("the export after its job was deleted: %s", got.Status)
	}
}
