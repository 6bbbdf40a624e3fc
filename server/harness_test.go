package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/bale-build/bale/server/auth"
)

// airgapSpecs is the repository's offline spec directory.
var airgapSpecs = filepath.Join("..", "specs", "airgap")

// harness is a real Server on loopback with a real HTTP client whose every
// response is validated against openapi.yaml.
type harness struct {
	t      testing.TB
	base   string
	s      *Server
	cfg    Config
	stop   func()
	tokens map[string]string // by role: rw, read, write, other
	router routers.Router
	client *http.Client
	logs   *syncBuffer
}

// testTokens makes the harness's tokens: tenant acme read+write, read
// only and write only, and tenant other read+write.
func testTokens(t testing.TB) (*auth.Tokens, map[string]string) {
	t.Helper()
	roles := map[string]struct {
		tenant string
		scopes []string
	}{
		"rw":    {"acme", []string{auth.ScopeRead, auth.ScopeWrite}},
		"read":  {"acme", []string{auth.ScopeRead}},
		"write": {"acme", []string{auth.ScopeWrite}},
		"other": {"other", []string{auth.ScopeRead, auth.ScopeWrite}},
	}
	out := map[string]string{}
	var entries []auth.Entry
	for role, r := range roles {
		tok, e, err := auth.NewToken(r.tenant, r.scopes, role)
		if err != nil {
			t.Fatal(err)
		}
		out[role] = tok
		entries = append(entries, e)
	}
	toks, err := auth.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	return toks, out
}

// startServer starts a server on SQLite in a temporary data directory, or
// on the Postgres database at dbURL.
func startServer(t testing.TB, dbURL string, opts ...func(*Config)) *harness {
	t.Helper()
	toks, byRole := testTokens(t)
	logs := &syncBuffer{}
	cfg := Config{
		DataDir:  t.TempDir(),
		Database: dbURL,
		Specs:    []string{airgapSpecs},
		Tokens:   toks,
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
		Rate:     1000,
		Burst:    1000,
	}
	cfg.Resolve.Offline = true
	for _, o := range opts {
		o(&cfg)
	}
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
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	h := &harness{t: t, base: "http://" + ln.Addr().String(), s: s, cfg: s.cfg, tokens: byRole, client: &http.Client{Timeout: time.Minute}, logs: logs}
	var once bool
	h.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(h.stop)
	h.router = openapiRouter(t, h.base)
	return h
}

// syncBuffer is a buffer written by goroutines (a logger, a child process's
// stderr) while the test reads it: both under one lock.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openapiRouter loads openapi.yaml with its server set to base.
func openapiRouter(t testing.TB, base string) routers.Router {
	t.Helper()
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// response is a finished request.
type response struct {
	*http.Response
	body []byte
}

// do sends a request as role ("" for none) and validates the response
// against the OpenAPI document.
func (h *harness) do(method, path, role string, body []byte, hdr ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		tok, ok := h.tokens[role]
		if !ok {
			tok = role // a literal token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	h.validate(req, resp, b)
	return response{resp, b}
}

// validate checks resp against the OpenAPI document: the route and
// status must be documented, and JSON bodies must match their schema.
func (h *harness) validate(req *http.Request, resp *http.Response, body []byte) {
	h.t.Helper()
	u, _ := url.Parse(req.URL.String())
	vreq := req.Clone(context.Background())
	vreq.URL = u
	route, params, err := h.router.FindRoute(vreq)
	if err != nil {
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			return // an undocumented path is the point of such a request
		}
		h.t.Fatalf("%s %s: not in openapi.yaml: %v", req.Method, req.URL.Path, err)
	}
	ct := resp.Header.Get("Content-Type")
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: resp.StatusCode,
		Header: resp.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			ExcludeResponseBody:   !strings.Contains(ct, "json") || req.Method == http.MethodHead || resp.StatusCode == http.StatusNotModified,
		},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		h.t.Fatalf("%s %s → %d: response does not match openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
}

// export decodes an export status body.
func (h *harness) export(r response) exportStatus {
	h.t.Helper()
	var st exportStatus
	if err := json.Unmarshal(r.body, &st); err != nil {
		h.t.Fatalf("decode export: %v: %s", err, r.body)
	}
	return st
}

// post stages an export of the airgap spec as role and returns it.
func (h *harness) post(role string, body string, hdr ...string) response {
	h.t.Helper()
	return h.do(http.MethodPost, exportsPath, role, []byte(body), hdr...)
}

// wait polls export id of tenant acme until it is finished.
func (h *harness) wait(id string) exportStatus {
	h.t.Helper()
	return h.waitAs("rw", id)
}

// waitAs polls export id as role until it is finished.
func (h *harness) waitAs(role, id string) exportStatus {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r := h.do(http.MethodGet, exportsPath+"/"+id, role, nil)
		if r.StatusCode != http.StatusOK {
			h.t.Fatalf("status of %s: %d %s", id, r.StatusCode, r.body)
		}
		st := h.export(r)
		if st.Status == statusSucceeded || st.Status == statusFailed {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("export %s did not finish in 2m", id)
	return exportStatus{}
}

// problemType returns a problem response's type slug.
func problemType(t testing.TB, r response) string {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.StatusCode, ct, r.body)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	if p.Status != r.StatusCode {
		t.Errorf("problem status %d in a %d response", p.Status, r.StatusCode)
	}
	return strings.TrimPrefix(p.Type, problemBase)
}

// metric returns the value of the sample named by line prefix in /metrics.
func (h *harness) metric(prefix string) float64 {
	h.t.Helper()
	r := h.do(http.MethodGet, "/metrics", "", nil)
	for _, l := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(l, prefix+" "), &v)
			return v
		}
	}
	return 0
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
