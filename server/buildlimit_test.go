package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeSpecs makes n small bootstrap-pack specs (s1…sN, a bundle
// reference each and their own sourceDateEpoch, so n plans) in a
// temporary workspace and returns its "DIR/...".
func writeSpecs(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := 1; i <= n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("s%d", i))
		os.MkdirAll(d, 0o755)
		src := fmt.Sprintf(`package s%d

bootstrapPack: {
	name:            "bootstrap-pack-v1"
	sourceDateEpoch: "2025-01-%02dT00:00:00Z"
	bundles: [{
		name:   "evidence-bundle-2025.01"
		kind:   "evidence"
		digest: "sha256:62d0fe0cb57a63f61c6501d81cc567e81a5d2614dcea9041a02d82e7ea48e04b"
		url:    "https://exports.stella-ops.example/v1/exports/evidence/evidence-bundle-2025.01.tar.gz"
	}]
}
`, i, i)
		if err := os.WriteFile(filepath.Join(d, "pack.cue"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir + "/..."
}

// idleServer is a Server answering HTTP with its build jobs not running,
// so builds stay queued until runJobs.
type idleServer struct {
	*harness
	ctx    context.Context
	cancel context.CancelFunc
	hs     *http.Server
	jobs   bool
}

func startIdle(t *testing.T, cfg Config, tokens map[string]string) *idleServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	is := &idleServer{ctx: ctx, cancel: cancel, hs: &http.Server{Handler: s.Handler()}}
	go is.hs.Serve(ln)
	base := "http://" + ln.Addr().String()
	is.harness = &harness{t: t, base: base, s: s, cfg: s.cfg, tokens: tokens, client: &http.Client{Timeout: time.Minute},
		router: openapiRouter(t, base)}
	t.Cleanup(is.stop)
	return is
}

func (is *idleServer) runJobs() {
	if err := is.s.queue.Start(is.ctx); err != nil {
		is.t.Fatal(err)
	}
	is.jobs = true
}

// stop stops the server as a restart would; once.
func (is *idleServer) stop() {
	if is.hs == nil {
		return
	}
	is.hs.Close()
	if is.jobs {
		is.s.stopJobs()
	}
	is.s.Close()
	is.cancel()
	is.hs = nil
}

// TestTenantBuilds: a tenant at its limit of concurrent builds gets 429
// with Retry-After, another tenant still builds, joining a build does not
// count, the count survives a restart (it is the job store's), and once the
// tenant's build finishes it may POST again.
func TestTenantBuilds(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, db string) {
		toks, byRole := testTokens(t)
		cfg := Config{
			DataDir: t.TempDir(), Database: db, Specs: []string{writeSpecs(t, 3)}, Tokens: toks,
			Logger: slog.New(slog.NewJSONHandler(&syncBuffer{}, nil)), Rate: 1000, Burst: 1000, TenantBuilds: 1,
		}
		cfg.Resolve.Offline = true
		is := startIdle(t, cfg, byRole)
		post := func(h *harness, role, spec string, code int) response {
			t.Helper()
			r := h.post(role, `{"spec":"`+spec+`"}`)
			if r.StatusCode != code {
				t.Fatalf("%s POSTs %s: %d, want %d: %s", role, spec, r.StatusCode, code, r.body)
			}
			if !strings.Contains(r.Header.Get("RateLimit-Policy"), `"builds";q=1`) {
				t.Errorf("RateLimit-Policy %q lacks the builds item", r.Header.Get("RateLimit-Policy"))
			}
			return r
		}
		first := is.export(post(is.harness, "rw", "s1", 202))
		if first.Status != statusQueued {
			t.Fatalf("first export %s, want queued (no job runs yet)", first.Status)
		}
		r := post(is.harness, "rw", "s2", 429)
		if problemType(t, r) != "build-limit" || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Header.Get("RateLimit"), `"builds";r=0`) {
			t.Fatalf("past the build limit: %s, Retry-After %q, RateLimit %q", r.body, r.Header.Get("Retry-After"), r.Header.Get("RateLimit"))
		}
		post(is.harness, "rw", "s1", 202)    // joins its own build
		post(is.harness, "other", "s1", 202) // joins acme's build: not counted
		if r := post(is.harness, "other", "s2", 202); !strings.Contains(r.Header.Get("RateLimit"), `"builds";r=0`) {
			t.Errorf("other's first build: RateLimit %q", r.Header.Get("RateLimit"))
		}
		post(is.harness, "other", "s3", 429)

		// A restart keeps the count: it lives in the job store.
		is.stop()
		is = startIdle(t, cfg, byRole)
		post(is.harness, "rw", "s3", 429)

		// Once acme's build is done, acme may start another.
		is.runJobs()
		if st := is.wait(first.ExportID); st.Status != statusSucceeded {
			t.Fatalf("export %s: %s", st.Status, st.Reason)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			n, err := is.s.store.tenantBuilds(context.Background(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acme still has %d builds a minute after its export succeeded", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		third := is.export(post(is.harness, "rw", "s3", 202))
		if st := is.wait(third.ExportID); st.Status != statusSucceeded {
			t.Fatalf("export %s: %s", st.Status, st.Reason)
		}
	})
}

// TestBuiltPlanNotCounted: a POST for a plan built already is laid out at
// once whatever the tenant's count.
func TestBuiltPlanNotCounted(t *testing.T) {
	t.Parallel()
	h := startServer(t, "", func(c *Config) { c.Specs, c.TenantBuilds = []string{writeSpecs(t, 2)}, 1 })
	st := h.wait(h.export(h.post("rw", `{"spec":"s1"}`)).ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export %s: %s", st.Status, st.Reason)
	}
	// Hold the tenant at its limit with a build of its scheduled an hour
	// from now.
	opts := buildOpts("acme", 0)
	opts.ScheduledAt = time.Now().Add(time.Hour)
	if _, err := h.s.queue.Insert(context.Background(), buildArgs{PlanID: "sha256:" + strings.Repeat("0", 64)}, opts); err != nil {
		t.Fatal(err)
	}
	if r := h.post("rw", `{"spec":"s2"}`); r.StatusCode != 429 {
		t.Fatalf("at the limit, a new plan: %d %s", r.StatusCode, r.body)
	}
	r := h.post("rw", `{"spec":"s1"}`)
	if r.StatusCode != 202 || h.export(r).Status != statusSucceeded {
		t.Fatalf("at the limit, a built plan: %d %s", r.StatusCode, r.body)
	}
}

// TestTenantBuildsTwoServers: two servers sharing a Postgres database
// admit one build for a tenant at a limit of one, however its POSTs race
// across them.
func TestTenantBuildsTwoServers(t *testing.T) {
	t.Parallel()
	db := postgresDB(t)
	toks, byRole := testTokens(t)
	specs := writeSpecs(t, 4)
	var servers []*idleServer
	data := t.TempDir() // servers sharing a database share it
	for i := 0; i < 2; i++ {
		cfg := Config{
			DataDir: data, Database: db, Specs: []string{specs}, Tokens: toks,
			Logger: slog.New(slog.NewJSONHandler(&syncBuffer{}, nil)), Rate: 1000, Burst: 1000, TenantBuilds: 1,
		}
		cfg.Resolve.Offline = true
		servers = append(servers, startIdle(t, cfg, byRole))
	}
	// Plan every spec first, so the POSTs race on admission only.
	for i := 1; i <= 4; i++ {
		if r := servers[0].do(http.MethodPost, "/v1/plans", "rw", []byte(fmt.Sprintf(`{"spec":"s%d"}`, i))); r.StatusCode != 201 {
			t.Fatalf("plan s%d: %d %s", i, r.StatusCode, r.body)
		}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		started = map[string]bool{}
	)
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := fmt.Sprintf("s%d", i%4+1)
			r := servers[i%2].post("rw", `{"spec":"`+spec+`"}`)
			switch r.StatusCode {
			case http.StatusAccepted:
				mu.Lock()
				started[spec] = true
				mu.Unlock()
			case http.StatusTooManyRequests:
			default:
				t.Errorf("POST %s: %d %s", spec, r.StatusCode, r.body)
			}
		}()
	}
	wg.Wait()
	if len(started) != 1 {
		t.Fatalf("POSTs racing across two servers started builds of %d plans (%v), want 1", len(started), started)
	}
	if n, err := servers[0].s.store.tenantBuilds(context.Background(), "acme"); err != nil || n != 1 {
		t.Fatalf("acme has %d builds (%v), want 1", n, err)
	}
}
