package server

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/server/auth"
)

var baleBin struct {
	once sync.Once
	path string
	err  error
}

// buildBale builds the bale binary once per test binary.
func buildBale(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the bale binary")
	}
	baleBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "bale-bin-")
		if err != nil {
			baleBin.err = err
			return
		}
		baleBin.path = filepath.Join(dir, "bale")
		out, err := exec.Command("go", "build", "-o", baleBin.path, "github.com/bale-build/bale/cmd/bale").CombinedOutput()
		if err != nil {
			baleBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if baleBin.err != nil {
		t.Fatal(baleBin.err)
	}
	return baleBin.path
}

// gatedRegistry is go-containerregistry's registry on loopback; while the
// gate is shut, requests for the layer blob wait, so a build can be caught
// in the middle.
type gatedRegistry struct {
	host    string
	layer   string
	waiting atomic.Int32
	// reached is closed when the first request waits at the gate.
	reached     chan struct{}
	reachedOnce sync.Once
	mu          sync.Mutex
	gate        chan struct{}
}

func startGatedRegistry(t *testing.T) *gatedRegistry {
	t.Helper()
	g := &gatedRegistry{gate: make(chan struct{}), reached: make(chan struct{})}
	next := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.layer != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+g.layer) {
			g.mu.Lock()
			gate := g.gate
			g.mu.Unlock()
			g.waiting.Add(1)
			g.reachedOnce.Do(func() { close(g.reached) })
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	g.host = u.Host
	return g
}

// shut makes requests for the layer blob wait again, until open.
func (g *gatedRegistry) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
		g.gate = make(chan struct{})
	default:
	}
}

func (g *gatedRegistry) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

// registryWorkspace pushes a random image to g and writes a spec naming
// it in a temporary workspace; it returns the spec directory.
func registryWorkspace(t *testing.T, g *gatedRegistry) string {
	t.Helper()
	return registryWorkspaceOf(t, g, 2<<20)
}

// registryWorkspaceOf is registryWorkspace with an image of one layer of
// size random bytes.
func registryWorkspaceOf(t *testing.T, g *gatedRegistry, size int64) string {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(g.host + "/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	g.layer = d.String()
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, ".git"), 0o755)
	dir := filepath.Join(root, "regpack")
	os.MkdirAll(dir, 0o755)
	src := `package p

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [{name: "app", ref: "` + g.host + `/team/app:1"}]
}
`
	if err := os.WriteFile(filepath.Join(dir, "pack.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// proc is a bale serve process.
type proc struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, once done
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait() error {
	<-p.done
	return p.err
}

func startProc(t *testing.T, bin, specDir, data, tokens string, extra ...string) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &proc{base: "http://" + addr, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--specs", specDir, "--data", data, "--tokens", tokens, "--addr", addr}, extra...)...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(p.base + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("bale serve exited: %v\n%s", p.err, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("bale serve not ready in 30s\n%s", p.stderr)
	return nil
}

func (p *proc) call(t *testing.T, method, path, tok, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, p.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *proc) waitExport(t *testing.T, tok, id string) exportStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		code, b := p.call(t, http.MethodGet, exportsPath+"/"+id, tok, "")
		var st exportStatus
		if code != 200 || json.Unmarshal(b, &st) != nil {
			t.Fatalf("status: %d %s", code, b)
		}
		if st.Status == statusSucceeded || st.Status == statusFailed {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("export %s not finished in 2m\n%s", id, p.stderr)
	return exportStatus{}
}

// crashSetup is a registry caught mid-build's workspace, a data
// directory, a token and the export staged in a first server process.
func crashSetup(t *testing.T) (bin, specDir, data, tokFile, tok string, g *gatedRegistry) {
	bin = buildBale(t)
	g = startGatedRegistry(t)
	specDir = registryWorkspace(t, g)
	data = t.TempDir()
	tokFile = filepath.Join(t.TempDir(), "tokens.json")
	tok, e, err := auth.NewToken("acme", []string{auth.ScopeRead, auth.ScopeWrite}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Add(tokFile, e); err != nil {
		t.Fatal(err)
	}
	return bin, specDir, data, tokFile, tok, g
}

// localPack builds specDir with bale build and returns its artifactSha256.
func localPack(t *testing.T, bin, specDir string) string {
	t.Helper()
	out, err := exec.Command(bin, "build", specDir, "-o", t.TempDir(), "--cache", t.TempDir(), "--format", "json", "-q").Output()
	if err != nil {
		t.Fatalf("bale build: %v", err)
	}
	var r struct {
		ArtifactSha256 string `json:"artifactSha256"`
	}
	json.Unmarshal(out, &r)
	return r.ArtifactSha256
}

func stageExport(t *testing.T, p *proc, tok string, g *gatedRegistry) string {
	t.Helper()
	code, b := p.call(t, http.MethodPost, exportsPath, tok, `{"spec":"regpack"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %s\n%s", code, b, p.stderr)
	}
	var st exportStatus
	json.Unmarshal(b, &st)
	select {
	case <-g.reached:
	case <-time.After(time.Minute):
		t.Fatalf("the build never fetched the layer\n%s", p.stderr)
	}
	return st.ExportID
}

// TestKillNineMidBuild: the server process is killed with SIGKILL while
// its build is fetching; after a restart the export completes, once, with
// the digest bale build gives for the same spec.
func TestKillNineMidBuild(t *testing.T) {
	t.Parallel()
	bin, specDir, data, tokFile, tok, g := crashSetup(t)
	p1 := startProc(t, bin, specDir, data, tokFile)
	id := stageExport(t, p1, tok, g)
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.wait()
	g.open()
	p2 := startProc(t, bin, specDir, data, tokFile)
	st := p2.waitExport(t, tok, id)
	if st.Status != statusSucceeded {
		t.Fatalf("after kill -9 and restart: %s %s\n%s", st.Status, st.Reason, p2.stderr)
	}
	if want := localPack(t, bin, specDir); st.ArtifactSha256 != want {
		t.Fatalf("artifactSha256 %s, bale build gives %s", st.ArtifactSha256, want)
	}
	if n := strings.Count(p1.stderr.String()+p2.stderr.String(), `"msg":"export succeeded"`); n != 1 {
		t.Fatalf("export finished %d times, want once", n)
	}
	code, b := p2.call(t, http.MethodGet, st.DownloadURI, tok, "")
	if code != 200 || fmt.Sprintf("%x", sha256sum(b)) != st.ArtifactSha256 {
		t.Fatalf("download after restart: %d", code)
	}
}

// TestSIGTERMDrain: on SIGTERM a running build that cannot finish within
// --drain-timeout is cancelled and re-queued; the process exits 0, and the
// next start finishes the export.
func TestSIGTERMDrain(t *testing.T) {
	bin, specDir, data, tokFile, tok, g := crashSetup(t)
	p1 := startProc(t, bin, specDir, data, tokFile, "--drain-timeout", "500ms")
	id := stageExport(t, p1, tok, g)
	start := time.Now()
	p1.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p1.done:
		if p1.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", p1.err, p1.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("bale serve still running 20s after SIGTERM\n%s", p1.stderr)
	}
	t.Logf("drained in %s", time.Since(start))
	g.open()
	p2 := startProc(t, bin, specDir, data, tokFile)
	if st := p2.waitExport(t, tok, id); st.Status != statusSucceeded {
		t.Fatalf("after SIGTERM and restart: %s %s", st.Status, st.Reason)
	}
}

// TestSIGTERMFinishes: a build that finishes within --drain-timeout is
// not cancelled: the export is done when the process exits.
func TestSIGTERMFinishes(t *testing.T) {
	t.Parallel()
	bin, specDir, data, tokFile, tok, g := crashSetup(t)
	p1 := startProc(t, bin, specDir, data, tokFile, "--drain-timeout", "30s")
	id := stageExport(t, p1, tok, g)
	p1.cmd.Process.Signal(syscall.SIGTERM)
	// The build may go on only once the shutdown has begun.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(p1.stderr.String(), `"msg":"shutting down"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown a minute after SIGTERM\n%s", p1.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.open()
	if err := p1.wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(p1.stderr.String(), `"msg":"export succeeded","exportId":"`+id) {
		t.Fatalf("the export did not finish before exit\n%s", p1.stderr)
	}
}

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

// secondSpec writes regpack2 beside registryWorkspace's spec: the same
// image, another sourceDateEpoch, so another plan and another build.
func secondSpec(t *testing.T, specDir string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(specDir, "pack.cue"))
	if err != nil {
		t.Fatal(err)
	}
	spec2 := filepath.Join(filepath.Dir(specDir), "regpack2")
	os.Mkdir(spec2, 0o755)
	if err := os.WriteFile(filepath.Join(spec2, "pack.cue"), []byte(strings.Replace(string(src), "2025-01-01", "2025-02-01", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return spec2
}

// TestKillNineTakeover: two bale serve processes share a Postgres
// database and a data directory; the one running the builds is killed
// with SIGKILL mid-fetch. The survivor takes the builds over once their
// leases run out (--build-lease, short here) and finishes every export,
// each once, with the bytes bale build gives.
func TestKillNineTakeover(t *testing.T) {
	db := postgresDB(t)
	bin, specDir, data, tokFile, tok, g := crashSetup(t)
	spec2 := secondSpec(t, specDir)
	specs := filepath.Dir(specDir) + "/..."
	flags := []string{"--database", db, "--build-lease", "2s"}
	p1 := startProc(t, bin, specs, data, tokFile, flags...)
	var ids []string
	for _, spec := range []string{"regpack", "regpack2", "regpack", "regpack2"} {
		code, b := p1.call(t, http.MethodPost, exportsPath, tok, `{"spec":"`+spec+`"}`)
		var st exportStatus
		if code != http.StatusAccepted || json.Unmarshal(b, &st) != nil {
			t.Fatalf("POST %s: %d %s\n%s", spec, code, b, p1.stderr)
		}
		ids = append(ids, st.ExportID)
	}
	deadline := time.Now().Add(time.Minute)
	for g.waiting.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the two builds never fetched the layer\n%s", p1.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The survivor starts while the first server holds both builds.
	p2 := startProc(t, bin, specs, data, tokFile, flags...)
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.wait()
	g.open()
	want := map[string]string{"regpack": localPack(t, bin, specDir), "regpack2": localPack(t, bin, spec2)}
	for _, id := range ids {
		st := p2.waitExport(t, tok, id)
		if st.Status != statusSucceeded {
			t.Fatalf("export %s after kill -9 of its server: %s %s\n%s", id, st.Status, st.Reason, p2.stderr)
		}
		if st.ArtifactSha256 != want[st.Spec] {
			t.Errorf("export %s of %s: artifactSha256 %s, bale build gives %s", id, st.Spec, st.ArtifactSha256, want[st.Spec])
		}
	}
	if strings.Contains(p1.stderr.String(), `"msg":"build succeeded"`) {
		t.Fatalf("a build finished before the kill: nothing was taken over\n%s", p1.stderr)
	}
	if n := strings.Count(p2.stderr.String(), `"msg":"build taken over`); n != 2 {
		t.Errorf("the survivor took over %d builds, want 2\n%s", n, p2.stderr)
	}
	if n := strings.Count(p1.stderr.String()+p2.stderr.String(), `"msg":"export succeeded"`); n != len(ids) {
		t.Fatalf("%d exports finished %d times in all, want each once", len(ids), n)
	}
}
