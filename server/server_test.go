package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/mux"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
	"github.com/bale-build/bale/testsupport/tooltest"
	"github.com/bale-build/bale/verify"
)

// localBuild builds the airgap spec the way bale build does, with the
// planner and executor and a cache of its own, and returns the pack.
func localBuild(t *testing.T) []byte {
	t.Helper()
	ctx := context.Background()
	dir, err := filepath.Abs(airgapSpecs)
	if err != nil {
		t.Fatal(err)
	}
	root := planner.FindRoot(dir)
	insts, diags, err := spec.Load(ctx, []string{dir}, spec.Options{Root: root})
	if err != nil || diags.HasErrors() {
		t.Fatalf("load spec: %v %v", err, diags)
	}
	p, r, err := planner.PlanInstance(ctx, insts[0], source.Options{}, planner.Options{Root: root, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	store, err := cas.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := executor.Execute(ctx, p, r, executor.Options{OutDir: out, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	pack, err := os.ReadFile(filepath.Join(out, res.Artifacts[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	return pack
}

// backends runs f against SQLite and, when a Postgres server can be
// started, against Postgres: the same code path.
func backends(t *testing.T, f func(t *testing.T, db string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "") })
	t.Run("postgres", func(t *testing.T) { f(t, postgresDB(t)) })
}

// TestExportFlow is the client's whole session: POST, poll, download the
// pack and its checksum file, sha256sum -c, bale verify; the bytes are
// those a local build of the same spec makes.
func TestExportFlow(t *testing.T) {
	t.Parallel()
	want := localBuild(t)
	backends(t, func(t *testing.T, db string) {
		h := startServer(t, db)
		r := h.post("rw", `{"spec":"airgap"}`)
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("POST: %d %s", r.StatusCode, r.body)
		}
		st := h.export(r)
		if st.Profile != "bootstrap" || r.Header.Get("Location") != exportsPath+"/"+st.ExportID {
			t.Fatalf("POST: profile %q, Location %q", st.Profile, r.Header.Get("Location"))
		}
		st = h.wait(st.ExportID)
		if st.Status != statusSucceeded {
			t.Fatalf("export %s: %s", st.Status, st.Reason)
		}
		pack := h.do(http.MethodGet, st.DownloadURI, "read", nil)
		sum := h.do(http.MethodGet, st.ChecksumURI, "read", nil)
		if pack.StatusCode != 200 || sum.StatusCode != 200 {
			t.Fatalf("download: %d, %d", pack.StatusCode, sum.StatusCode)
		}
		if !bytes.Equal(pack.body, want) {
			t.Fatalf("downloaded pack (%d bytes) differs from a local build of the same spec (%d bytes)", len(pack.body), len(want))
		}
		got := sha256.Sum256(pack.body)
		if hex.EncodeToString(got[:]) != st.ArtifactSha256 || int64(len(pack.body)) != st.Size {
			t.Fatalf("status says %s (%d bytes), body is %x (%d bytes)", st.ArtifactSha256, st.Size, got, len(pack.body))
		}
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, st.File), pack.body, 0o644)
		os.WriteFile(filepath.Join(dir, st.File+".sha256"), sum.body, 0o644)
		if rep, err := verify.Pack(context.Background(), filepath.Join(dir, st.File)); err != nil {
			t.Fatalf("bale verify: %v", err)
		} else if rep.RootHash != st.RootHash {
			t.Fatalf("verify: rootHash %s, status says %s", rep.RootHash, st.RootHash)
		}
		if tool, ok := tooltest.Find(t, "sha256sum"); ok {
			cmd := exec.Command(tool, "-c", st.File+".sha256")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c: %v\n%s", err, out)
			}
		}
		// The storage layout of the contract's handoff.
		for _, f := range []string{st.File, st.File + ".sha256"} {
			if _, err := os.Stat(filepath.Join(h.cfg.DataDir, "exports", "acme", st.ExportID, f)); err != nil {
				t.Errorf("storage layout: %v", err)
			}
		}
		// A second export of the plan is laid out at once, built once.
		r2 := h.post("rw", `{"planId":"`+st.PlanID+`"}`)
		st2 := h.export(r2)
		if st2.Status != statusSucceeded || st2.ArtifactSha256 != st.ArtifactSha256 || st2.ExportID == st.ExportID {
			t.Fatalf("second export of a built plan: %+v", st2)
		}
		if n := h.metric(`bale_builds_total{outcome="succeeded"}`); n != 1 {
			t.Errorf("builds = %v, want 1", n)
		}
		if n := h.metric(`export_bootstrap_completed_total{outcome="succeeded"}`); n != 2 {
			t.Errorf("export_bootstrap_completed_total = %v, want 2", n)
		}
		// The log names the export, its profile and digests, never a token.
		logs := h.logs.String()
		for _, want := range []string{`"exportId":"` + st.ExportID, `"profile":"bootstrap"`, `"rootHash":"` + st.RootHash, `"artifactSha256":"` + st.ArtifactSha256, `"tenant":"acme"`, `"requestId"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s", want)
			}
		}
		for _, tok := range h.tokens {
			if strings.Contains(logs, tok) {
				t.Fatal("a token is in the logs")
			}
		}
	})
}

// TestAuth: each way a request can lack authority, and another tenant's
// export being 404, never its bytes.
func TestAuth(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	id := st.ExportID
	cases := []struct {
		name, method, path, role, body string
		code                           int
		problem, wwwAuth               string
	}{
		{"no token", "POST", exportsPath, "", `{"spec":"airgap"}`, 401, "unauthorized", `Bearer realm="bale"`},
		{"unknown token", "GET", exportsPath + "/" + id, "bale_not-a-token", "", 401, "unauthorized", `error="invalid_token"`},
		{"read token POSTs", "POST", exportsPath, "read", `{"spec":"airgap"}`, 403, "forbidden", `scope="export:write"`},
		{"write token reads", "GET", exportsPath + "/" + id, "write", "", 403, "forbidden", `scope="export:read"`},
		{"write token downloads", "GET", exportsPath + "/" + id + "/download", "write", "", 403, "forbidden", ""},
		{"other tenant's status", "GET", exportsPath + "/" + id, "other", "", 404, "not-found", ""},
		{"other tenant's download", "GET", exportsPath + "/" + id + "/download", "other", "", 404, "not-found", ""},
		{"other tenant's checksum", "GET", exportsPath + "/" + id + "/download.sha256", "other", "", 404, "not-found", ""},
		{"other tenant's plan", "GET", "/v1/plans/" + st.PlanID, "other", "", 404, "not-found", ""},
		{"other tenant's plan by POST", "POST", exportsPath, "other", `{"planId":"` + st.PlanID + `"}`, 404, "not-found", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := h.do(c.method, c.path, c.role, body)
			if r.StatusCode != c.code {
				t.Fatalf("%d, want %d: %s", r.StatusCode, c.code, r.body)
			}
			if p := problemType(t, r); p != c.problem {
				t.Errorf("problem %q, want %q", p, c.problem)
			}
			if c.wwwAuth != "" && !strings.Contains(r.Header.Get("WWW-Authenticate"), c.wwwAuth) {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", r.Header.Get("WWW-Authenticate"), c.wwwAuth)
			}
			if bytes.Contains(r.body, []byte(st.ArtifactSha256)) {
				t.Error("the response carries the export's digest")
			}
		})
	}
	// HEAD of another tenant's download: 404 and no length of the pack.
	req, _ := http.NewRequest(http.MethodHead, h.base+st.DownloadURI, nil)
	req.Header.Set("Authorization", "Bearer "+h.tokens["other"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("ETag") != "" {
		t.Fatalf("HEAD by another tenant: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
}

// TestDownloadHeaders: the cache and integrity headers, ranges (one and
// several), conditional requests and HEAD.
func TestDownloadHeaders(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	full := h.do(http.MethodGet, st.DownloadURI, "rw", nil)
	etag := `"` + st.ArtifactSha256 + `"`
	raw, _ := hex.DecodeString(st.ArtifactSha256)
	hd := full.Header
	for k, v := range map[string]string{
		"ETag":                etag,
		"Last-Modified":       "Wed, 01 Jan 2025 00:00:00 GMT",
		"Cache-Control":       "private, max-age=31536000, immutable",
		"Content-Disposition": "attachment; filename=" + st.File,
		"Content-Type":        "application/gzip",
		"Accept-Ranges":       "bytes",
		"Repr-Digest":         "sha-256=:" + b64(raw) + ":",
		"Content-Length":      fmt.Sprint(st.Size),
	} {
		if hd.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, hd.Get(k), v)
		}
	}
	for _, k := range []string{"RateLimit", "RateLimit-Policy", "X-Request-ID"} {
		if hd.Get(k) == "" {
			t.Errorf("no %s header", k)
		}
	}
	cases := []struct {
		name  string
		hdr   []string
		code  int
		check func(t *testing.T, r response)
	}{
		{"range", []string{"Range", "bytes=10-19"}, 206, func(t *testing.T, r response) {
			if !bytes.Equal(r.body, full.body[10:20]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", st.Size) {
				t.Errorf("range: %q %q", r.Header.Get("Content-Range"), r.body)
			}
		}},
		{"suffix range", []string{"Range", "bytes=-5"}, 206, func(t *testing.T, r response) {
			if !bytes.Equal(r.body, full.body[len(full.body)-5:]) {
				t.Error("suffix range: wrong bytes")
			}
		}},
		{"multiple ranges", []string{"Range", "bytes=0-3,100-103"}, 206, func(t *testing.T, r response) {
			mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "multipart/byteranges" {
				t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
			}
			mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
			var parts [][]byte
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(p)
				parts = append(parts, b)
			}
			if len(parts) != 2 || !bytes.Equal(parts[0], full.body[0:4]) || !bytes.Equal(parts[1], full.body[100:104]) {
				t.Errorf("parts %q", parts)
			}
		}},
		{"unsatisfiable range", []string{"Range", fmt.Sprintf("bytes=%d-", st.Size+10)}, 416, nil},
		{"If-None-Match", []string{"If-None-Match", etag}, 304, func(t *testing.T, r response) {
			if len(r.body) != 0 || r.Header.Get("ETag") != etag {
				t.Errorf("304: body %d bytes, ETag %q", len(r.body), r.Header.Get("ETag"))
			}
		}},
		{"If-None-Match other", []string{"If-None-Match", `"00"`}, 200, nil},
		{"If-Modified-Since", []string{"If-Modified-Since", "Wed, 01 Jan 2025 00:00:00 GMT"}, 304, nil},
		{"If-Modified-Since earlier", []string{"If-Modified-Since", "Tue, 31 Dec 2024 00:00:00 GMT"}, 200, nil},
		{"If-Range matching", []string{"Range", "bytes=0-9", "If-Range", etag}, 206, nil},
		{"If-Range stale", []string{"Range", "bytes=0-9", "If-Range", `"00"`}, 200, func(t *testing.T, r response) {
			if !bytes.Equal(r.body, full.body) {
				t.Error("stale If-Range: not the whole pack")
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(http.MethodGet, st.DownloadURI, "rw", nil, c.hdr...)
			if r.StatusCode != c.code {
				t.Fatalf("%d, want %d", r.StatusCode, c.code)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		r := h.do(http.MethodHead, st.DownloadURI, "rw", nil)
		if r.StatusCode != 200 || len(r.body) != 0 || r.Header.Get("Content-Length") != fmt.Sprint(st.Size) || r.Header.Get("ETag") != etag {
			t.Fatalf("HEAD: %d, %d body bytes, length %q, ETag %q", r.StatusCode, len(r.body), r.Header.Get("Content-Length"), r.Header.Get("ETag"))
		}
	})
	t.Run("checksum file", func(t *testing.T) {
		r := h.do(http.MethodGet, st.ChecksumURI, "rw", nil)
		sum := sha256.Sum256(r.body)
		if string(r.body) != st.ArtifactSha256+"  "+st.File+"\n" || r.Header.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Fatalf("checksum file %q, ETag %q", r.body, r.Header.Get("ETag"))
		}
	})
}

// TestHardening: malformed and oversized requests get their problem
// before any lookup; no response names a server path.
func TestHardening(t *testing.T) {
	t.Parallel()
	h := startServer(t, "", func(c *Config) { c.MaxBody = 1024 })
	big := `{"spec":"` + strings.Repeat("a", 2000) + `"}`
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
		problem                  string
	}{
		{"body over the cap", "POST", exportsPath, big, nil, 413, "body-too-large"},
		{"unknown field", "POST", exportsPath, `{"spec":"airgap","path":"/etc"}`, nil, 400, "invalid-request"},
		{"two values", "POST", exportsPath, `{"spec":"airgap"}{}`, nil, 400, "invalid-request"},
		{"neither spec nor plan", "POST", exportsPath, `{}`, nil, 400, "invalid-request"},
		{"both spec and plan", "POST", exportsPath, `{"spec":"airgap","planId":"sha256:` + strings.Repeat("0", 64) + `"}`, nil, 400, "invalid-request"},
		{"bad plan id", "POST", exportsPath, `{"planId":"../../etc/passwd"}`, nil, 400, "invalid-plan-id"},
		{"unknown plan", "POST", exportsPath, `{"planId":"sha256:` + strings.Repeat("0", 64) + `"}`, nil, 404, "not-found"},
		{"unknown spec", "POST", exportsPath, `{"spec":"nope"}`, nil, 404, "unknown-spec"},
		{"spec as a path", "POST", exportsPath, `{"spec":"../airgap"}`, nil, 404, "unknown-spec"},
		{"not JSON", "POST", exportsPath, `spec=airgap`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"},
		{"bad idempotency key", "POST", exportsPath, `{"spec":"airgap"}`, []string{"Idempotency-Key", "a b"}, 400, "invalid-idempotency-key"},
		{"bad export id", "GET", exportsPath + "/not-an-export", "", nil, 400, "invalid-export-id"},
		{"upper-case export id", "GET", exportsPath + "/" + strings.Repeat("A", 32), "", nil, 400, "invalid-export-id"},
		{"unknown export", "GET", exportsPath + "/" + strings.Repeat("a", 32), "", nil, 404, "not-found"},
		{"bad plan id in path", "GET", "/v1/plans/latest", "", nil, 400, "invalid-plan-id"},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "not-found"},
		{"wrong method", "DELETE", exportsPath, "", nil, 405, "method-not-allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := h.do(c.method, c.path, "rw", body, c.hdr...)
			if r.StatusCode != c.code {
				t.Fatalf("%d, want %d: %s", r.StatusCode, c.code, r.body)
			}
			if p := problemType(t, r); p != c.problem {
				t.Errorf("problem %q, want %q", p, c.problem)
			}
			if bytes.Contains(r.body, []byte(h.cfg.DataDir)) || bytes.Contains(r.body, []byte("goroutine")) {
				t.Errorf("response names a server path or a stack: %s", r.body)
			}
		})
	}
}

// TestSlowloris: a client trickling its request headers is cut off at
// ReadHeaderTimeout, while the same trickle under a ReadHeaderTimeout of
// an hour is not: the difference, not the wall clock, is the oracle.
func TestSlowloris(t *testing.T) {
	trickle := func(t *testing.T, timeout time.Duration, writes int) error {
		t.Helper()
		h := startServer(t, "", func(c *Config) { c.ReadHeaderTimeout = timeout })
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		var werr error
		for i := 0; i < writes && werr == nil; i++ {
			time.Sleep(50 * time.Millisecond) // the attack's pace, not a synchronisation
			_, werr = conn.Write([]byte("X"))
			conn.SetReadDeadline(time.Now().Add(time.Millisecond))
			var b [1]byte
			if _, err := conn.Read(b[:]); err != nil && !isTimeout(err) {
				werr = err
			}
		}
		return werr
	}
	if err := trickle(t, 300*time.Millisecond, 100); err == nil {
		t.Fatal("a client trickling headers for 5s was not cut off with a 300ms ReadHeaderTimeout")
	}
	if err := trickle(t, time.Hour, 20); err != nil {
		t.Fatalf("a client trickling headers for 1s was cut off with a 1h ReadHeaderTimeout: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestIdempotencyKey: 20 concurrent POSTs with one key make one export;
// the key with another body is 422.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, db string) {
		h := startServer(t, db)
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids = map[string]int{}
		)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := h.post("rw", `{"spec":"airgap"}`, "Idempotency-Key", "deploy-42")
				if r.StatusCode != http.StatusAccepted {
					t.Errorf("POST: %d %s", r.StatusCode, r.body)
					return
				}
				mu.Lock()
				ids[h.export(r).ExportID]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(ids) != 1 {
			t.Fatalf("20 POSTs with one Idempotency-Key made %d exports: %v", len(ids), ids)
		}
		var id string
		for id = range ids {
		}
		h.wait(id)
		r := h.post("rw", `{"spec":"airgap"}`, "Idempotency-Key", "deploy-42")
		if h.export(r).ExportID != id || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay after completion: %s", r.body)
		}
		st := h.export(h.do(http.MethodGet, exportsPath+"/"+id, "rw", nil))
		r = h.post("rw", `{"planId":"`+st.PlanID+`"}`, "Idempotency-Key", "deploy-42")
		if r.StatusCode != 422 || problemType(t, r) != "idempotency-key-reused" {
			t.Fatalf("same key, other body: %d %s", r.StatusCode, r.body)
		}
		// Keys are per tenant.
		r = h.post("other", `{"spec":"airgap"}`, "Idempotency-Key", "deploy-42")
		if r.StatusCode != 202 || h.export(r).ExportID == id {
			t.Fatalf("another tenant's key: %d %s", r.StatusCode, r.body)
		}
	})
}

// TestOnePlanOneBuild: 50 concurrent POSTs of one spec are 50 exports of
// one plan, built once.
func TestOnePlanOneBuild(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, db string) {
		h := startServer(t, db)
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids []string
		)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := h.post("rw", `{"spec":"airgap"}`)
				if r.StatusCode != http.StatusAccepted {
					t.Errorf("POST: %d %s", r.StatusCode, r.body)
					return
				}
				mu.Lock()
				ids = append(ids, h.export(r).ExportID)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(ids)
		if len(slices.Compact(slices.Clone(ids))) != 50 {
			t.Fatalf("%d distinct exports, want 50", len(slices.Compact(ids)))
		}
		var sums = map[string]bool{}
		for _, id := range ids {
			st := h.wait(id)
			if st.Status != statusSucceeded {
				t.Fatalf("export %s: %s %s", id, st.Status, st.Reason)
			}
			sums[st.ArtifactSha256] = true
		}
		if len(sums) != 1 {
			t.Fatalf("50 exports of one plan have %d digests", len(sums))
		}
		if n := h.metric(`bale_builds_total{outcome="succeeded"}`); n != 1 {
			t.Fatalf("the plan was built %v times, want 1", n)
		}
		if n := h.metric(`export_bootstrap_completed_total{outcome="succeeded"}`); n != 50 {
			t.Fatalf("export_bootstrap_completed_total %v, want 50", n)
		}
	})
}

// TestRateLimit: past the tenant's burst, 429 with Retry-After; the
// other tenant is not affected.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	h := startServer(t, "", func(c *Config) { c.Rate, c.Burst = 0.5, 3 })
	path := exportsPath + "/" + strings.Repeat("a", 32)
	for i := 0; i < 3; i++ {
		r := h.do(http.MethodGet, path, "rw", nil)
		if r.StatusCode != 404 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
		if want := fmt.Sprintf(`"tenant";r=%d;`, 2-i); !strings.HasPrefix(r.Header.Get("RateLimit"), want) {
			t.Errorf("RateLimit %q, want %s…", r.Header.Get("RateLimit"), want)
		}
		if r.Header.Get("RateLimit-Policy") != `"tenant";q=3;w=6` {
			t.Errorf("RateLimit-Policy %q", r.Header.Get("RateLimit-Policy"))
		}
	}
	r := h.do(http.MethodGet, path, "rw", nil)
	if r.StatusCode != 429 || problemType(t, r) != "rate-limited" || r.Header.Get("Retry-After") != "2" {
		t.Fatalf("past the burst: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := h.do(http.MethodGet, path, "other", nil); r.StatusCode != 404 {
		t.Fatalf("other tenant: %d", r.StatusCode)
	}
}

// TestPlans: POST /v1/plans stores the plan bale plan would write; GET
// returns its bytes; diff of a plan with itself is empty.
func TestPlans(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	r := h.do(http.MethodPost, "/v1/plans", "rw", []byte(`{"spec":"airgap"}`))
	if r.StatusCode != 201 {
		t.Fatalf("POST /v1/plans: %d %s", r.StatusCode, r.body)
	}
	loc := r.Header.Get("Location")
	g := h.do(http.MethodGet, loc, "read", nil)
	if g.StatusCode != 200 || plan.ID(g.body) != strings.TrimPrefix(loc, "/v1/plans/") {
		t.Fatalf("GET %s: %d, id of body %s", loc, g.StatusCode, plan.ID(g.body))
	}
	id := strings.TrimPrefix(loc, "/v1/plans/")
	d := h.do(http.MethodPost, "/v1/plans/diff", "read", []byte(`{"old":"`+id+`","new":"`+id+`"}`))
	if d.StatusCode != 200 || !bytes.Contains(d.body, []byte(id)) {
		t.Fatalf("diff: %d %s", d.StatusCode, d.body)
	}
	if r := h.do(http.MethodPost, "/v1/plans/diff", "other", []byte(`{"old":"`+id+`","new":"`+id+`"}`)); r.StatusCode != 404 {
		t.Fatalf("diff of another tenant's plans: %d", r.StatusCode)
	}
}

// TestOpenAPIRoutes walks the router and the document both ways.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	routes := map[string]bool{}
	err := h.s.router.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := rt.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := rt.GetMethods()
		if err != nil {
			return err
		}
		for _, m := range methods {
			routes[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := OpenAPIJSON()
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			documented[m+" "+path] = true
		}
	}
	for r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for d := range documented {
		if !routes[d] {
			t.Errorf("openapi.yaml names %s, which the router lacks", d)
		}
	}
	// Served as JSON at /openapi.json.
	if r := h.do(http.MethodGet, "/openapi.json", "", nil); r.StatusCode != 200 || !bytes.Contains(r.body, []byte(`"openapi":"3.1.0"`)) {
		t.Fatalf("/openapi.json: %d", r.StatusCode)
	}
}

// TestProbes: liveness, readiness and metrics need no token.
func TestProbes(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := h.do(http.MethodGet, p, "", nil); r.StatusCode != 200 {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
	if h.metric("bale_build_queue_depth") != 0 {
		t.Error("queue not empty")
	}
	r := h.do(http.MethodGet, "/healthz", "", nil, "X-Request-ID", "abc-123")
	if r.Header.Get("X-Request-ID") != "abc-123" {
		t.Errorf("X-Request-ID not honoured: %q", r.Header.Get("X-Request-ID"))
	}
	r = h.do(http.MethodGet, "/healthz", "", nil, "X-Request-ID", "bad id {}")
	if id := r.Header.Get("X-Request-ID"); !requestIDRE.MatchString(id) {
		t.Errorf("malformed X-Request-ID passed on: %q", id)
	}
}
