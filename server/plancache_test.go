package server

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bale-build/bale/testsupport/fakeclock"
)

// ageTree sets the times of every file and directory under root an hour
// back: files as a checkout left them, not written while a spec is
// planned.
func ageTree(t *testing.T, root string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// localSpec writes a workspace with a spec "loc" whose pack holds a
// signature file, and returns the spec's directory.
func localSpec(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "loc")
	writeTree(t, root, map[string]string{
		".git/HEAD": "",
		"loc/pack.cue": `package loc

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	signatures: [{name: "root.json", kind: "tuf", path: "../shared/root.json"}]
}
`,
		"shared/root.json": `{"signed":{}}`,
	})
	ageTree(t, root)
	return dir
}

// TestPlanCache: POSTs of a served spec plan it once while nothing it
// depends on changes; a change to its CUE file or to a local input is
// seen by the next POST; a planning is charged to the tenant's rate limit.
func TestPlanCache(t *testing.T) {
	t.Parallel()
	dir := localSpec(t)
	h := startServer(t, "", func(c *Config) { c.Specs, c.Rate, c.Burst = []string{dir}, 0.001, 100 })
	planned := func() float64 { return testutil.ToFloat64(h.s.metrics.plannings.WithLabelValues("planned")) }
	post := func() exportStatus {
		t.Helper()
		r := h.post("rw", `{"spec":"loc"}`)
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("POST: %d %s", r.StatusCode, r.body)
		}
		return h.export(r)
	}
	first := post()
	for i := 0; i < 9; i++ {
		if st := post(); st.PlanID != first.PlanID {
			t.Fatalf("POST %d: plan %s, want %s", i+2, st.PlanID, first.PlanID)
		}
	}
	if n := planned(); n != 1 {
		t.Fatalf("10 POSTs of an unchanged spec planned it %v times, want 1", n)
	}
	// 10 POSTs, one planning (10) and this GET of 100.
	if r := h.do(http.MethodGet, exportsPath+"/"+first.ExportID, "rw", nil); !strings.Contains(r.Header.Get("RateLimit"), `"tenant";r=79;`) {
		t.Fatalf("RateLimit after 10 POSTs and 1 planning, and this GET: %q, want r=79", r.Header.Get("RateLimit"))
	}

	// A change to the spec's file: the next POST plans it again.
	cue := filepath.Join(dir, "pack.cue")
	b, _ := os.ReadFile(cue)
	os.WriteFile(cue, []byte(strings.Replace(string(b), "2025-01-01", "2025-02-01", 1)), 0o644)
	second := post()
	if second.PlanID == first.PlanID || planned() != 2 {
		t.Fatalf("POST after the spec changed: plan %s (before %s), planned %v times", second.PlanID, first.PlanID, planned())
	}
	// A change to a local input, its file's times set back as a checkout
	// would: still seen (its size, inode change time).
	sig := filepath.Join(filepath.Dir(dir), "shared", "root.json")
	os.WriteFile(sig, []byte(`{"signed":{"v":2}}`), 0o644)
	ageTree(t, filepath.Dir(dir))
	third := post()
	if third.PlanID == second.PlanID || planned() != 3 {
		t.Fatalf("POST after a local input changed: plan %s (before %s), planned %v times", third.PlanID, second.PlanID, planned())
	}
	if post().PlanID != third.PlanID || planned() != 3 {
		t.Fatalf("a POST after that planned again (%v plannings)", planned())
	}
}

// TestPlanningCharged: a planning takes planCost requests from its
// tenant's rate limit; one the bucket cannot pay is 429 and plans nothing.
func TestPlanningCharged(t *testing.T) {
	t.Parallel()
	dir := localSpec(t)
	h := startServer(t, "", func(c *Config) { c.Specs, c.Rate, c.Burst = []string{dir}, 0.001, 15 })
	if r := h.post("rw", `{"spec":"loc"}`); r.StatusCode != http.StatusAccepted { // 1 + 10 of 15
		t.Fatalf("POST: %d %s", r.StatusCode, r.body)
	}
	cue := filepath.Join(dir, "pack.cue")
	b, _ := os.ReadFile(cue)
	os.WriteFile(cue, []byte(strings.Replace(string(b), "2025-01-01", "2025-03-01", 1)), 0o644)
	r := h.post("rw", `{"spec":"loc"}`) // 1 of the 4 left; 10 more it lacks
	if r.StatusCode != http.StatusTooManyRequests || problemType(t, r) != "rate-limited" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("POST whose planning the rate limit cannot pay: %d %s", r.StatusCode, r.body)
	}
	if n := testutil.ToFloat64(h.s.metrics.plannings.WithLabelValues("planned")); n != 1 {
		t.Fatalf("%v plannings, want 1 (the refused POST's not run)", n)
	}
}

// TestPlanCacheTTL: a plan with an image resolved by tag is reused for
// PlanCacheTTL, giving the same plan id (what was resolved) even when the
// tag moves meanwhile; after it the tag is resolved again.
func TestPlanCacheTTL(t *testing.T) {
	t.Parallel()
	g := startGatedRegistry(t)
	g.open()
	dir := registryWorkspace(t, g)
	ageTree(t, filepath.Dir(dir))
	clock := fakeclock.New(time.Now())
	h := startServer(t, "", func(c *Config) {
		c.Specs, c.Resolve.Offline, c.Now, c.PlanCacheTTL = []string{dir}, false, clock.Now, time.Minute
	})
	planned := func() float64 { return testutil.ToFloat64(h.s.metrics.plannings.WithLabelValues("planned")) }
	planOf := func() string {
		t.Helper()
		r := h.do(http.MethodPost, "/v1/plans", "rw", []byte(`{"spec":"regpack"}`))
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("POST /v1/plans: %d %s", r.StatusCode, r.body)
		}
		return h.export(r).PlanID
	}
	first := planOf()
	// The tag moves.
	img, _ := random.Image(1024, 1)
	ref, _ := name.ParseReference(g.host + "/team/app:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute - time.Second)
	if id := planOf(); id != first || planned() != 1 {
		t.Fatalf("within the TTL: plan %s (first %s), %v plannings; want the first, planned once", id, first, planned())
	}
	clock.Advance(time.Second)
	if id := planOf(); id == first || planned() != 2 {
		t.Fatalf("after the TTL: plan %s (first %s), %v plannings; want the moved tag's, planned again", id, first, planned())
	}
}
