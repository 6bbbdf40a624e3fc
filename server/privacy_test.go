package server

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// shapeOf is a POST's answer with what differs between any two exports
// of two plans (ids, times, plan, spec) taken out: what a tenant can
// compare.
func shapeOf(t *testing.T, r response) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"exportId", "createdAt", "planId", "spec"} {
		delete(m, k)
	}
	b, _ := json.Marshal(m)
	return r.Status + " " + string(b) + " builds:" + buildsItem(r.Header.Get("RateLimit"))
}

// buildsItem is the "builds" item of a RateLimit header.
func buildsItem(h string) string {
	for _, it := range strings.Split(h, ",") {
		if it = strings.TrimSpace(it); strings.HasPrefix(it, `"builds"`) {
			return it
		}
	}
	return ""
}

// TestTenantPrivacy: a tenant's first export of a plan another tenant
// built is answered as a new build's is — queued, one build slot taken
// in the headers, 429 at its build limit — and then succeeds from the
// build made already, without building again; its own later exports of
// the plan succeed at once.
func TestTenantPrivacy(t *testing.T) {
	t.Parallel()
	g := startGatedRegistry(t)
	dir := registryWorkspace(t, g)
	// A second plan whose build waits at the same gate.
	b, err := os.ReadFile(filepath.Join(dir, "pack.cue"))
	if err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(filepath.Dir(dir), "regpack2")
	os.Mkdir(dir2, 0o755)
	if err := os.WriteFile(filepath.Join(dir2, "pack.cue"), []byte(strings.Replace(string(b), "2025-01-01", "2025-02-01", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startServer(t, "", func(c *Config) {
		c.Specs, c.Resolve.Offline, c.TenantBuilds = []string{airgapSpecs, writeSpecs(t, 1), dir, dir2}, false, 2
	})
	defer g.open()
	built := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	if st := h.wait(h.export(h.post("rw", `{"spec":"s1"}`)).ExportID); built.Status != statusSucceeded || st.Status != statusSucceeded {
		t.Fatalf("acme's exports: %s %s, %s %s", built.Status, built.Reason, st.Status, st.Reason)
	}
	// other: one build slot of two taken by a build waiting at the gate.
	if r := h.post("other", `{"spec":"regpack"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("other's POST of regpack: %d %s", r.StatusCode, r.body)
	}
	<-g.reached
	private := h.post("other", `{"spec":"airgap"}`) // built by acme
	fresh := h.post("other", `{"spec":"regpack2"}`) // built by nobody: waits at the gate
	if got, want := shapeOf(t, private), shapeOf(t, fresh); got != want {
		t.Fatalf("other's first POST of a plan acme built:\n  %s\nits POST of a plan nobody built, with as many slots left:\n  %s", got, want)
	}
	// Both slots taken: a plan acme built is refused as a new build is.
	r := h.post("other", `{"spec":"s1"}`)
	if r.StatusCode != http.StatusTooManyRequests || problemType(t, r) != "build-limit" {
		t.Fatalf("other's first POST of acme's plan at its build limit: %d %s, want 429 build-limit, as for a new build", r.StatusCode, r.body)
	}
	st := h.waitAs("other", h.export(private).ExportID)
	if st.Status != statusSucceeded || st.ArtifactSha256 != built.ArtifactSha256 {
		t.Fatalf("other's export of airgap: %s %s %s", st.Status, st.Reason, st.ArtifactSha256)
	}
	if n := testutil.ToFloat64(h.s.metrics.builds.WithLabelValues(statusSucceeded)); n != 2 {
		t.Fatalf("%v builds, want acme's 2: another tenant's export must not build again", n)
	}
	// Its own from now on: at once.
	if again := h.export(h.post("other", `{"spec":"airgap"}`)); again.Status != statusSucceeded {
		t.Fatalf("other's second POST of the plan: %s, want succeeded at once", again.Status)
	}
}
