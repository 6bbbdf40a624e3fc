package server

import (
	"database/sql"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// countingRegistry serves a registry on loopback holding one image,
// team/app:1, and counts the requests it gets after the push.
func countingRegistry(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	hits.Store(0)
	return host, &hits
}

// TestInlineEgress: an inline spec cannot make the server connect to an
// address only the server reaches (server-side request forgery): a
// loopback registry, by IP or by a name resolving to loopback, is refused
// at planning with a 422 naming the input, before any request reaches
// it. A plan made from an inline spec keeps that restriction for its
// build: planned while the operator allowed the registry, then posted by
// id to a server that no longer does, its build is refused and nothing
// is fetched — the case of a name that resolved to a public address at
// planning and to an internal one at build time. A served spec still
// reaches the same registry.
func TestInlineEgress(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	host, hits := countingRegistry(t)
	_, port, _ := strings.Cut(host, ":")
	served := filepath.Join(t.TempDir(), "internal")
	if err := os.MkdirAll(served, 0o755); err != nil {
		t.Fatal(err)
	}
	image := func(ref string) string {
		return "bootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n\timages: [{name: \"app\", ref: \"" + ref + "\"}]\n}\n"
	}
	// Another sourceDateEpoch than the inline spec's: a plan of its own
	// (TestPlanOrigin covers one plan made both ways).
	servedSrc := strings.Replace(image(host+"/team/app:1"), "2025-01-01", "2025-02-01", 1)
	if err := os.WriteFile(filepath.Join(served, "pack.cue"), []byte("package internal\n\n"+servedSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	config := func(allow ...string) func(*Config) {
		return func(c *Config) { c.DataDir, c.Specs, c.InlineAllowHosts = data, []string{served}, allow }
	}

	// Planned while the operator allowed the registry.
	h := startServer(t, "", withInline(bin, time.Minute), config(host))
	src := "package p\n\n" + image(host+"/team/app:1")
	r := h.do(http.MethodPost, "/v1/plans", "rw", inlineBody(t, src))
	var sum planSummary
	if r.StatusCode != http.StatusCreated || json.Unmarshal(r.body, &sum) != nil {
		t.Fatalf("POST /v1/plans with the registry allowed: %d %s", r.StatusCode, r.body)
	}
	h.stop()

	h = startServer(t, "", withInline(bin, time.Minute), config())
	hits.Store(0)
	for _, tc := range []struct{ name, ref string }{
		{"loopback IP", host + "/team/app:1"},
		{"localhost", "localhost:" + port + "/team/app:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, "package p\n\n"+image(tc.ref)))
			if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
				t.Fatalf("%d %s, want a 422 spec-invalid problem", r.StatusCode, r.body)
			}
			var p problem
			json.Unmarshal(r.body, &p)
			t.Log(p.Detail)
			for _, w := range []string{"images[0] app: " + tc.ref, "not a public address", "--inline-allow-host"} {
				if !strings.Contains(p.Detail, w) {
					t.Errorf("detail %q lacks %q", p.Detail, w)
				}
			}
			// What localhost resolved to is the server's to know.
			if strings.HasPrefix(tc.ref, "localhost") && strings.Contains(p.Detail, "127.0.0.1") {
				t.Errorf("detail %q names the address the name resolved to", p.Detail)
			}
		})
	}

	t.Run("inline plan built later", func(t *testing.T) {
		r := h.post("rw", `{"planId":"`+sum.PlanID+`"}`)
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("POST planId: %d %s", r.StatusCode, r.body)
		}
		st := h.wait(h.export(r).ExportID)
		t.Log(st.Reason)
		if st.Status != statusFailed || !strings.Contains(st.Reason, "not a public address") || !strings.Contains(st.Reason, "app") {
			t.Fatalf("export of inline plan %s: %s %q, want its build refused naming the image", sum.PlanID, st.Status, st.Reason)
		}
		if d := h.do(http.MethodGet, exportsPath+"/"+st.ExportID+"/download", "rw", nil); d.StatusCode == http.StatusOK {
			t.Fatalf("download of the refused export: %d", d.StatusCode)
		}
	})
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the loopback registry from inline specs", n)
	}

	t.Run("served spec", func(t *testing.T) {
		r := h.post("rw", `{"spec":"internal"}`)
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("POST served spec: %d %s", r.StatusCode, r.body)
		}
		st := h.wait(h.export(r).ExportID)
		if st.Status != statusSucceeded {
			t.Fatalf("served spec export: %s %q", st.Status, st.Reason)
		}
		if hits.Load() == 0 {
			t.Fatal("the served spec's export did not reach the registry")
		}
	})
}

// TestPlanOrigin: a plan's inline origin is recorded with it and survives
// a later inline planning; the same plan made from a served spec lifts
// it (its inputs are exactly the operator's spec's, which any client may
// export by name), and a later inline planning does not restore it.
func TestPlanOrigin(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	ctx := t.Context()
	id := "sha256:" + strings.Repeat("ab", 32)
	inline := planRecord{ID: id, Root: h.s.inlineRoot(), Kind: "bootstrapPack", BuildTime: time.Unix(0, 0), PublicOnly: true}
	served := planRecord{ID: id, Root: t.TempDir(), Kind: "bootstrapPack", BuildTime: time.Unix(0, 0)}
	for i, step := range []struct {
		tenant     string
		rec        planRecord
		publicOnly bool
		root       string
	}{
		{"acme", inline, true, inline.Root},
		{"other", inline, true, inline.Root},
		{"acme", served, false, served.Root},
		{"other", inline, false, served.Root},
	} {
		if err := h.s.store.putPlan(ctx, step.tenant, "x", step.rec); err != nil {
			t.Fatal(err)
		}
		got, err := h.s.store.plan(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.PublicOnly != step.publicOnly || got.Root != step.root {
			t.Fatalf("after step %d: publicOnly %v root %s, want %v %s", i, got.PublicOnly, got.Root, step.publicOnly, step.root)
		}
		if tp, _, err := h.s.store.tenantPlan(ctx, step.tenant, id); err != nil || tp.PublicOnly != step.publicOnly {
			t.Fatalf("after step %d: tenant plan %+v %v", i, tp, err)
		}
	}
}

// TestPlanOriginMigration: a data directory from before plans carried
// their origin gets the column, and its inline plans (those recorded with
// the inline root) are marked public-only.
func TestPlanOriginMigration(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	h := startServer(t, "", func(c *Config) { c.DataDir = data })
	inlineRoot := h.s.inlineRoot()
	h.stop()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "bale.db"))
	if err != nil {
		t.Fatal(err)
	}
	inlineID, servedID := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	// Made now: retention at the next start keeps them.
	now := strconv.FormatInt(time.Now().Unix(), 10)
	for _, q := range []string{
		`ALTER TABLE bale_plans DROP COLUMN public_only`,
		`INSERT INTO bale_plans (plan_id, root, kind, build_time, created_at) VALUES ('` + inlineID + `', '` + inlineRoot + `', 'bootstrapPack', 0, ` + now + `)`,
		`INSERT INTO bale_plans (plan_id, root, kind, build_time, created_at) VALUES ('` + servedID + `', '/srv/specs', 'bootstrapPack', 0, ` + now + `)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	h = startServer(t, "", func(c *Config) { c.DataDir = data })
	for id, want := range map[string]bool{inlineID: true, servedID: false} {
		rec, err := h.s.store.plan(t.Context(), id)
		if err != nil || rec.PublicOnly != want {
			t.Errorf("plan %s after migration: %+v %v, want publicOnly %v", id, rec, err, want)
		}
	}
}
