package server

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/verify"
)

// withInline lets the server evaluate inline specs with the bale binary,
// online (a loopback registry), within the given time.
func withInline(bin string, timeout time.Duration) func(*Config) {
	return func(c *Config) {
		c.InlineCommand = []string{bin, "serve", "eval-inline"}
		c.InlineTimeout = timeout
		c.InlineMemory = 256 << 20
		c.Resolve.Offline = false
	}
}

// inlineBody is a request body carrying src as an inline spec.
func inlineBody(t testing.TB, src string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"inline": src})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loopbackImage pushes a random image to go-containerregistry's registry
// on loopback and returns its reference.
func loopbackImage(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := u.Host + "/team/app:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestInlineSpec: an inline spec naming a registry image is evaluated in a
// child process, planned and built; the pack verifies; the same source
// posted to /v1/plans is the same plan. The registry is on loopback, so
// the operator allows it with --inline-allow-host (TestInlineEgress).
func TestInlineSpec(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	ref := loopbackImage(t)
	host, _, _ := strings.Cut(ref, "/")
	h := startServer(t, "", withInline(bin, time.Minute), func(c *Config) { c.InlineAllowHosts = []string{host} })
	src := `package p

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [{name: "app", ref: "` + ref + `"}]
}
`
	r := h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, src))
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST inline: %d %s", r.StatusCode, r.body)
	}
	st := h.wait(h.export(r).ExportID)
	if st.Status != statusSucceeded || st.Spec != "inline" {
		t.Fatalf("inline export: %s %q (spec %q)", st.Status, st.Reason, st.Spec)
	}
	pack := h.do(http.MethodGet, st.DownloadURI, "read", nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, st.File), pack.body, 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := verify.Pack(context.Background(), filepath.Join(dir, st.File)); err != nil || rep.RootHash != st.RootHash {
		t.Fatalf("bale verify of the inline export: %v", err)
	}
	r = h.do(http.MethodPost, "/v1/plans", "rw", inlineBody(t, src))
	var sum planSummary
	if r.StatusCode != http.StatusCreated || json.Unmarshal(r.body, &sum) != nil || sum.PlanID != st.PlanID || sum.Spec != "inline" {
		t.Fatalf("POST /v1/plans inline: %d %s, want plan %s", r.StatusCode, r.body, st.PlanID)
	}
	// Nothing of the child's workspace is left behind.
	if left, _ := os.ReadDir(filepath.Join(h.cfg.DataDir, "inline")); len(left) != 0 {
		t.Errorf("inline workspaces left: %v", left)
	}
}

// TestInlineRefusals: every way an inline spec could reach the server's
// files, and every spec that would hold the evaluator, is a 422 problem
// naming what is at fault; the server stays healthy.
func TestInlineRefusals(t *testing.T) {
	bin := buildBale(t)
	const timeout = 5 * time.Second
	h := startServer(t, "", withInline(bin, timeout))
	pack := func(body string) string {
		return "package p\n\nbootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" + body + "\n}\n"
	}
	release := func(body string) string {
		return "package p\n\nrelease: {\n\tname: \"r\"\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n\tsigning: key: \"env://COSIGN_KEY\"\n" + body + "\n}\n"
	}
	for _, tc := range []struct {
		name, src string
		want      []string // in the problem's detail
	}{
		{"signature /etc/passwd", pack(`signatures: [{name: "s", kind: "dsse", path: "/etc/passwd"}]`), []string{"signatures[0]"}},
		{"chart ../x", pack(`charts: [{name: "c", path: "../x"}]`), []string{"charts[0]"}},
		{"image layout", pack(`images: [{name: "a", layout: {path: "images/layout"}}]`), []string{"images[0].layout"}},
		{"image tarball /etc/passwd", pack(`images: [{name: "a", tarball: {path: "/etc/passwd"}}]`), []string{"images[0].tarball"}},
		{"bundle path", pack(`bundles: [{name: "b", kind: "evidence", digest: "sha256:` + strings.Repeat("a", 64) + `", url: "https://example.com/b", path: "b.tar"}]`), []string{"bundles[0]"}},
		{"go build", release(`runner: {name: "r", version: "1", files: [{url: "https://example.com/x", digest: "sha256:` + strings.Repeat("a", 64) + `", dest: "x"}], go: [{module: ".", package: "./cmd/x", dest: "bin/x"}]}`), []string{"release.runner.go[0]"}},
		{"runner file /etc/passwd", release(`runner: {name: "r", version: "1", files: [{path: "/etc/passwd", dest: "passwd"}]}`), []string{"release.runner.files[0].path"}},
		{"signing key file", strings.Replace(release(`runner: {name: "r", version: "1", files: [{url: "https://example.com/x", digest: "sha256:`+strings.Repeat("a", 64)+`", dest: "x"}]}`), "env://COSIGN_KEY", "/etc/ssh/ssh_host_ed25519_key", 1), []string{"release.signing.key"}},
		{"import of a server package", "package p\n\nimport \"github.com/bale-build/bale/server\"\n\nx: server.X\n", []string{"inline.cue:3:8", "import"}},
		{"embed /etc/passwd", "@extern(embed)\n\npackage p\n\nx: _ @embed(file=\"/etc/passwd\", type=text)\n", []string{"embed"}},
		{"embed ../x", "@extern(embed)\n\npackage p\n\nx: _ @embed(file=\"../x\", type=text)\n", []string{"embed"}},
		{"loop", "package p\n\nimport \"list\"\n\nx: [for i in list.Range(0, 1e9, 1) {i}]\n", []string{"eval"}},
		{"explosion", "package p\n\na: [for i in [1,2,3,4,5,6,7,8] for j in [1,2,3,4,5,6,7,8] for k in [1,2,3,4,5,6,7,8] for l in [1,2,3,4,5,6,7,8] for m in [1,2,3,4,5,6,7,8] for n in [1,2,3,4,5,6,7,8] for o in [1,2,3,4,5,6,7,8] for q in [1,2,3,4,5,6,7,8] {\"\\(i)\\(j)\\(k)\\(l)\\(m)\\(n)\\(o)\\(q)\"}]\n", []string{"eval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, tc.src))
			took := time.Since(start)
			if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
				t.Fatalf("%d %s, want a 422 spec-invalid problem", r.StatusCode, r.body)
			}
			var p problem
			json.Unmarshal(r.body, &p)
			t.Logf("%s → %s", took.Round(time.Millisecond), p.Detail)
			for _, w := range tc.want {
				if !strings.Contains(p.Detail, w) {
					t.Errorf("detail %q does not name %q", p.Detail, w)
				}
			}
			if strings.Contains(p.Detail, h.cfg.DataDir) || strings.Contains(p.Detail, "root:x:0:0") {
				t.Errorf("detail shows a server path or file: %q", p.Detail)
			}
			if r := h.do(http.MethodGet, "/healthz", "", nil); r.StatusCode != http.StatusOK {
				t.Fatalf("server unhealthy after it: %d", r.StatusCode)
			}
		})
	}
	// The body cap holds for inline specs.
	big := inlineBody(t, "package p\n// "+strings.Repeat("x", int(h.cfg.MaxBody))+"\n")
	if r := h.do(http.MethodPost, exportsPath, "rw", big); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("inline spec over the body cap: %d", r.StatusCode)
	}
	if n := h.metric("bale_build_queue_depth"); n != 0 {
		t.Errorf("refused inline specs queued %v jobs", n)
	}
}

// TestInlineDisabled: a server with no inline command refuses inline
// specs by name.
func TestInlineDisabled(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	r := h.do(http.MethodPost, exportsPath, "rw", inlineBody(t, "package p\n"))
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "inline-disabled" {
		t.Errorf("inline spec on a server without inline evaluation: %d %s", r.StatusCode, r.body)
	}
	if r := h.do(http.MethodPost, exportsPath, "rw", []byte(`{"spec":"airgap","inline":"package p"}`)); r.StatusCode != http.StatusBadRequest {
		t.Errorf("spec and inline together: %d %s", r.StatusCode, r.body)
	}
}

// gate holds the first inline child a server starts before it runs, for
// as long as a test likes: the child holds its evaluation slot (and its
// tenant's share) meanwhile. Children after the first run at once.
type gate struct {
	// started receives once the first child has begun.
	started chan struct{}
	open    chan struct{}
}

// gatedInline returns an inline command running bin behind a gate: a
// script that, for the first child only, signals through one FIFO and
// waits on another before it execs bin.
func gatedInline(t *testing.T, bin string) ([]string, *gate) {
	t.Helper()
	dir := t.TempDir()
	started, gatePath := filepath.Join(dir, "started"), filepath.Join(dir, "gate")
	for _, p := range []string{started, gatePath} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(dir, "inline.sh")
	src := "#!/bin/sh\nif mkdir '" + filepath.Join(dir, "claimed") + "' 2>/dev/null; then\n" +
		"\techo started > '" + started + "'\n\tread _ < '" + gatePath + "'\nfi\nexec '" + bin + "' \"$@\"\n"
	if err := os.WriteFile(script, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	g := &gate{started: make(chan struct{}), open: make(chan struct{})}
	// Each open blocks until the child opens the other end.
	go func() {
		if b, err := os.ReadFile(started); err == nil && len(b) > 0 {
			close(g.started)
		}
	}()
	go func() {
		<-g.open
		if f, err := os.OpenFile(gatePath, os.O_WRONLY, 0); err == nil {
			f.WriteString("go\n")
			f.Close()
		}
	}()
	return []string{script, "serve", "eval-inline"}, g
}

// slotServer is a server whose inline slots a test drives: its first
// child is held at a gate, and every wait for a slot ends when the test
// says.
type slotServer struct {
	*harness
	gate  *gate
	waits chan chan time.Time // each wait that begins; send or close to end it
}

func newSlotServer(t *testing.T, slots int) *slotServer {
	t.Helper()
	bin := buildBale(t)
	command, g := gatedInline(t, bin)
	s := &slotServer{gate: g, waits: make(chan chan time.Time, 8)}
	s.harness = startServer(t, "", withInline(bin, time.Minute), func(c *Config) {
		c.InlineSlots = slots
		c.InlineCommand = command
		c.inlineWait = func() <-chan time.Time {
			ch := make(chan time.Time, 1)
			s.waits <- ch
			return ch
		}
	})
	return s
}

// post posts src as role's inline spec; its answer comes on the channel.
func (s *slotServer) post(role, src string) <-chan response {
	out := make(chan response, 1)
	go func() { out <- s.do(http.MethodPost, exportsPath, role, inlineBody(s.t, src)) }()
	return out
}

// waiting returns the wait the request answering on r begins, and fails
// the test if r answers without waiting.
func (s *slotServer) waiting(t *testing.T, r <-chan response, what string) chan time.Time {
	t.Helper()
	select {
	case w := <-s.waits:
		return w
	case r := <-r:
		t.Fatalf("%s did not wait for a slot: %d %s", what, r.StatusCode, r.body)
		return nil
	}
}

// evaluated checks that the request answering on r is evaluated at once,
// without waiting for a slot: a 422 spec-invalid for what it is.
func (s *slotServer) evaluated(t *testing.T, r <-chan response, what string) {
	t.Helper()
	select {
	case r := <-r:
		if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "spec-invalid" {
			t.Fatalf("%s: %d %s, want 422 spec-invalid (evaluated)", what, r.StatusCode, r.body)
		}
	case <-s.waits:
		t.Fatalf("%s waited for a slot", what)
	}
}

// busy checks that r is a 503 inline-busy with Retry-After.
func busy(t *testing.T, r response, what string) {
	t.Helper()
	if r.StatusCode != http.StatusServiceUnavailable || problemType(t, r) != "inline-busy" {
		t.Fatalf("%s: %d %s, want 503 inline-busy", what, r.StatusCode, r.body)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("%s: 503 inline-busy without Retry-After", what)
	}
}

// TestInlineSlots: inline evaluations run at most InlineSlots at once; a
// spec that finds every slot taken waits for one, and when the wait ends
// first it is a 503 with Retry-After, not one more child; the slot is
// free again once the running evaluation stops. The first child is held
// at a gate while the second spec (another tenant's, so it passes its
// own share and waits on the server's slots) waits; the test ends the
// wait.
func TestInlineSlots(t *testing.T) {
	t.Parallel()
	s := newSlotServer(t, 1)
	first := s.post("rw", "package p\n\nfirst: 1\n")
	<-s.gate.started

	second := s.post("other", "package p\n\nsecond: 1\n")
	close(s.waiting(t, second, "a spec while the only slot is busy"))
	busy(t, <-second, "a spec while the only slot is busy")

	close(s.gate.open)
	s.evaluated(t, first, "the first spec")
	// The slot is free again: the next spec is evaluated at once (and
	// refused for what it is, not for a busy slot).
	s.evaluated(t, s.post("other", "package p\n\nthird: 1\n"), "a spec after the slot was freed")
}
