package server

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOrphanExportIsBuilt: an export recorded with no build job of its plan
// waiting or running — a POST whose unique job insert was skipped because
// the plan's failed build was still finishing, or a server that died
// between recording the export and queueing its build — is not left
// queued for ever: the reconciler queues its build, on SQLite and on
// Postgres. Both a plan built already and a plan never built are covered.
func TestOrphanExportIsBuilt(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, db string) {
		h := startServer(t, db, func(c *Config) { c.ReconcileEvery = 200 * time.Millisecond })
		ctx := context.Background()
		built := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
		if built.Status != statusSucceeded {
			t.Fatalf("first export %s: %s", built.Status, built.Reason)
		}
		orphan := func(planID string) string {
			t.Helper()
			e := exportRecord{ID: newExportID(), Profile: profileBootstrap, Tenant: "acme", PlanID: planID, Spec: "airgap",
				Status: statusQueued, Created: time.Now().UTC().Add(-time.Minute)}
			if _, _, err := h.s.store.insertExport(ctx, e); err != nil {
				t.Fatal(err)
			}
			return e.ID
		}

		// A plan built already: the reconciler's job lays the export out.
		st := h.wait(orphan(built.PlanID))
		if st.Status != statusSucceeded || st.ArtifactSha256 != built.ArtifactSha256 {
			t.Fatalf("orphan export of a built plan: %s %q, want succeeded with %s", st.Status, st.Reason, built.ArtifactSha256)
		}

		// A plan never built: its build record and files are removed, so the
		// reconciler's job must build it again.
		if _, err := h.s.store.db.ExecContext(ctx, h.s.store.q(`DELETE FROM bale_builds WHERE plan_id = ?`), built.PlanID); err != nil {
			t.Fatal(err)
		}
		st = h.wait(orphan(built.PlanID))
		if st.Status != statusSucceeded || st.ArtifactSha256 != built.ArtifactSha256 {
			t.Fatalf("orphan export of an unbuilt plan: %s %q, want succeeded with %s", st.Status, st.Reason, built.ArtifactSha256)
		}
		if !strings.Contains(h.logs.String(), "export waited with no build job") {
			t.Error("the reconciler's queueing is not logged")
		}
	})
}
