package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestReconcileKeepsTenantLimit: an export left with no build job (a POST
// split between recording its export and queueing its build, as a client
// hanging up at that moment once could) does not get its tenant a build
// past --tenant-builds from the reconciler: it waits until the tenant's
// running builds end, then is built.
func TestReconcileKeepsTenantLimit(t *testing.T) {
	t.Parallel()
	toks, byRole := testTokens(t)
	cfg := Config{
		DataDir: t.TempDir(), Specs: []string{writeSpecs(t, 2)}, Tokens: toks,
		Logger: slog.New(slog.NewJSONHandler(&syncBuffer{}, nil)), Rate: 1000, Burst: 1000, TenantBuilds: 1,
	}
	cfg.Resolve.Offline = true
	is := startIdle(t, cfg, byRole)
	ctx := context.Background()
	first := is.export(is.post("rw", `{"spec":"s1"}`))
	r := is.do(http.MethodPost, "/v1/plans", "rw", []byte(`{"spec":"s2"}`))
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("plan s2: %d %s", r.StatusCode, r.body)
	}
	var sum planSummary
	if err := json.Unmarshal(r.body, &sum); err != nil {
		t.Fatal(err)
	}
	orphan := exportRecord{ID: newExportID(), Profile: profileBootstrap, Tenant: "acme", PlanID: sum.PlanID, Spec: "s2",
		Status: statusQueued, Created: time.Now().UTC().Add(-time.Minute)}
	if _, _, err := is.s.store.insertExport(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	if err := is.s.reconcile(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := is.s.store.tenantBuilds(ctx, "acme"); err != nil || n != 1 {
		t.Fatalf("acme has %d builds queued or running after the reconciler ran (%v), want 1: its limit", n, err)
	}

	// Once acme's build is done, the reconciler queues the orphan's.
	is.runJobs()
	if st := is.wait(first.ExportID); st.Status != statusSucceeded {
		t.Fatalf("export %s: %s", st.Status, st.Reason)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := is.s.reconcile(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		if st := is.export(is.do(http.MethodGet, exportsPath+"/"+orphan.ID, "rw", nil)); st.Status == statusSucceeded {
			break
		} else if st.Status == statusFailed || time.Now().After(deadline) {
			t.Fatalf("orphan export %s %q", st.Status, st.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
