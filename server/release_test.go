package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bale-build/bale/internal/fixtures"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/server/auth"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/testsupport/kittest"
	"github.com/bale-build/bale/testsupport/tooltest"
)

// aocSpecs is the repository's AOC release spec.
var aocSpecs = filepath.Join("..", "specs", "aoc")

// devKeyEnv permits the spec's development key, as COSIGN_ALLOW_DEV_KEY=1
// COSIGN_PASSWORD=… in bale serve's environment would; everything else
// (the go command's locations) is the process's.
func devKeyEnv(allowDev bool) func(string) string {
	return func(name string) string {
		switch name {
		case sign.EnvAllowDevKey:
			if allowDev {
				return "1"
			}
			return ""
		case sign.EnvPassword:
			return fixtures.DevKeyPassword
		case sign.EnvKey:
			return ""
		}
		return os.Getenv(name)
	}
}

// withRelease serves the airgap and AOC specs with the given environment.
func withRelease(getenv func(string) string, key string) func(*Config) {
	return func(c *Config) {
		c.Specs = []string{airgapSpecs, aocSpecs}
		c.Getenv = getenv
		c.SigningKey = key
	}
}

// release decodes a release status body.
func (h *harness) release(r response) releaseStatus {
	h.t.Helper()
	var st releaseStatus
	if err := json.Unmarshal(r.body, &st); err != nil {
		h.t.Fatalf("decode release export: %v: %s", err, r.body)
	}
	return st
}

// waitRelease polls release export id until it is finished.
func (h *harness) waitRelease(id string) releaseStatus {
	h.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		r := h.do(http.MethodGet, releasePath+"/"+id, "rw", nil)
		if r.StatusCode != http.StatusOK {
			h.t.Fatalf("status of %s: %d %s", id, r.StatusCode, r.body)
		}
		if st := h.release(r); st.Status == statusSucceeded || st.Status == statusFailed {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("release export %s did not finish in 3m", id)
	return releaseStatus{}
}

// bale runs the bale binary in dir with env added to the process's.
func runBale(t *testing.T, bin, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bale %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestReleaseExport is a release client's whole session on a real server:
// POST the AOC spec, poll, download every file, sha256sum -c SHA256SUMS and
// the archive's .sha256, bale verify; every file is byte for byte what
// bale build specs/aoc writes with the same key; a second export of the
// plan builds nothing; another tenant sees 404.
func TestReleaseExport(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	h := startServer(t, "", withRelease(devKeyEnv(true), ""))
	r := h.do(http.MethodPost, releasePath, "rw", []byte(`{"spec":"aoc"}`))
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.StatusCode, r.body)
	}
	st := h.release(r)
	if st.Profile != "release" || r.Header.Get("Location") != releasePath+"/"+st.ExportID {
		t.Fatalf("POST: profile %q, Location %q", st.Profile, r.Header.Get("Location"))
	}
	st = h.waitRelease(st.ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("release export %s: %s", st.Status, st.Reason)
	}

	// bale build specs/aoc, the same key (the spec's development key).
	want := t.TempDir()
	env := []string{"COSIGN_KEY=", "COSIGN_ALLOW_DEV_KEY=1", "COSIGN_PASSWORD=" + fixtures.DevKeyPassword}
	cache := t.TempDir()
	runBale(t, bin, "..", env, "build", "specs/aoc", "-o", want, "--cache", cache, "-q")
	wantNames, err := os.ReadDir(want)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	var names []string
	kinds := map[string]string{}
	for _, f := range st.Files {
		names = append(names, f.Name)
		d := h.do(http.MethodGet, f.DownloadURI, "read", nil)
		if d.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", f.DownloadURI, d.StatusCode, d.body)
		}
		sum := sha256.Sum256(d.body)
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(d.body)) != f.Size {
			t.Errorf("%s: status says %s (%d bytes), body is %x (%d bytes)", f.Name, f.SHA256, f.Size, sum, len(d.body))
		}
		if d.Header.Get("ETag") != `"`+f.SHA256+`"` || d.Header.Get("Repr-Digest") != "sha-256=:"+b64(sum[:])+":" {
			t.Errorf("%s: ETag %q, Repr-Digest %q", f.Name, d.Header.Get("ETag"), d.Header.Get("Repr-Digest"))
		}
		local, err := os.ReadFile(filepath.Join(want, f.Name))
		if err != nil {
			t.Errorf("%s is not among bale build's files: %v", f.Name, err)
		} else if string(local) != string(d.body) {
			t.Errorf("%s differs from bale build's", f.Name)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), d.body, 0o644); err != nil {
			t.Fatal(err)
		}
		if f.Name == st.Archive && (f.SHA256 != st.ArtifactSha256 || f.Kind != kit.KindKitArchive || st.DownloadURI != f.DownloadURI) {
			t.Errorf("archive %+v, status says artifactSha256 %s, downloadUri %s", f, st.ArtifactSha256, st.DownloadURI)
		}
		kinds[f.Name] = f.Kind
	}
	if len(names) != len(wantNames) {
		t.Errorf("export has %d files %v, bale build wrote %d", len(names), names, len(wantNames))
	}
	// Every file's kind is the one bale build --format json gives it
	// (kit.KindOf): one function for the CLI and the API (issue 17
	// point 1; the API said manifest, archive and file).
	var built struct {
		Artifacts []struct{ Path, Kind string }
	}
	cmd := exec.Command(bin, "build", "specs/aoc", "-o", want, "--cache", cache, "-q", "--format", "json")
	cmd.Dir, cmd.Env = "..", append(os.Environ(), env...)
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("bale build --format json: %v", err)
	}
	if err := json.Unmarshal(stdout, &built); err != nil {
		t.Fatal(err)
	}
	for _, a := range built.Artifacts {
		if kinds[a.Path] != a.Kind || a.Kind == "" {
			t.Errorf("%s: the API says kind %q, bale build %q", a.Path, kinds[a.Path], a.Kind)
		}
	}
	if tool, ok := tooltest.Find(t, "sha256sum"); ok {
		for _, sums := range []string{kit.SumsName, st.Archive + ".sha256"} {
			cmd := exec.Command(tool, "-c", sums)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c %s: %v\n%s", sums, err, out)
			}
		}
	}
	runBale(t, bin, "", nil, "verify", dir)
	runBale(t, bin, "", nil, "verify", filepath.Join(dir, st.Archive))

	// The storage layout of the contract's handoff.
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(h.cfg.DataDir, "exports", "acme", st.ExportID, n)); err != nil {
			t.Errorf("storage layout: %v", err)
		}
	}
	// A second export of the plan is laid out at once, built once.
	r2 := h.do(http.MethodPost, releasePath, "rw", []byte(`{"planId":"`+st.PlanID+`"}`))
	st2 := h.release(r2)
	if r2.StatusCode != http.StatusAccepted || st2.Status != statusSucceeded || st2.ArtifactSha256 != st.ArtifactSha256 || st2.ExportID == st.ExportID {
		t.Fatalf("second export of a built plan: %d %+v", r2.StatusCode, st2)
	}
	if n := h.metric(`bale_builds_total{outcome="succeeded"}`); n != 1 {
		t.Errorf("builds = %v, want 1", n)
	}
	if n := h.metric(`export_release_completed_total{outcome="succeeded"}`); n != 2 {
		t.Errorf("export_release_completed_total = %v, want 2", n)
	}
	if logs := h.logs.String(); !strings.Contains(logs, `"profile":"release"`) || !strings.Contains(logs, `"artifactSha256":"`+st.ArtifactSha256) {
		t.Errorf("logs lack the release export's profile and digest")
	}

	// Another tenant's export is 404, its files too; a release export is
	// not a bootstrap export.
	for _, path := range []string{releasePath + "/" + st.ExportID, st.Files[0].DownloadURI, st.DownloadURI} {
		if r := h.do(http.MethodGet, path, "other", nil); r.StatusCode != http.StatusNotFound || problemType(t, r) != "not-found" {
			t.Errorf("other tenant GET %s: %d %s", path, r.StatusCode, r.body)
		}
	}
	for _, path := range []string{exportsPath + "/" + st.ExportID, exportsPath + "/" + st.ExportID + "/download"} {
		if r := h.do(http.MethodGet, path, "rw", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s of a release export: %d %s", path, r.StatusCode, r.body)
		}
	}
	t.Run("names", func(t *testing.T) { releaseNames(t, h, st) })
	t.Run("headers", func(t *testing.T) { releaseHeaders(t, h, st) })
}

// releaseNames: every name that is not one of the export's files is a 404
// problem, whatever it tries to reach.
func releaseNames(t *testing.T, h *harness, st releaseStatus) {
	base := releasePath + "/" + st.ExportID + "/files/"
	for _, name := range []string{"..", "%2e%2e", "%2E%2E", ".", "../../../../etc/passwd", "..%2f..%2fbale.db", "a/b", "a%2Fb",
		"unknown.json", "offline-kit.json.tmp", ".lock", "%00", "SHA256SUMS%00", "bale.db", "-", "x%5c..%5cy"} {
		r := h.do(http.MethodGet, base+name, "rw", nil)
		if r.StatusCode != http.StatusNotFound || problemType(t, r) != "not-found" {
			t.Errorf("GET files/%s: %d %s, want a 404 problem", name, r.StatusCode, r.body)
		}
		if strings.Contains(string(r.body), h.cfg.DataDir) {
			t.Errorf("GET files/%s: the answer names the data directory: %s", name, r.body)
		}
	}
}

// releaseHeaders: a kit file is served like the pack: HEAD, a range, 304.
func releaseHeaders(t *testing.T, h *harness, st releaseStatus) {
	f := st.Files[slices.IndexFunc(st.Files, func(f releaseFile) bool { return f.Name == kit.ManifestName })]
	r := h.do(http.MethodHead, f.DownloadURI, "read", nil)
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/json" || len(r.body) != 0 ||
		r.Header.Get("Last-Modified") != "Wed, 01 Jan 2025 00:00:00 GMT" || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") ||
		r.Header.Get("Accept-Ranges") != "bytes" || !strings.Contains(r.Header.Get("Content-Disposition"), kit.ManifestName) {
		t.Errorf("HEAD %s: %d %v", f.Name, r.StatusCode, r.Header)
	}
	r = h.do(http.MethodGet, f.DownloadURI, "read", nil, "Range", "bytes=0-9")
	if r.StatusCode != http.StatusPartialContent || len(r.body) != 10 {
		t.Errorf("range: %d, %d bytes", r.StatusCode, len(r.body))
	}
	r = h.do(http.MethodGet, f.DownloadURI, "read", nil, "If-None-Match", `"`+f.SHA256+`"`)
	if r.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", r.StatusCode)
	}
}

// TestReleaseRefusals: a release POST to a server with no key is a clear
// problem, not a failed job; a release spec on the bootstrap route and a
// pack spec on the release route are refused by name.
func TestReleaseRefusals(t *testing.T) {
	t.Parallel()
	h := startServer(t, "", withRelease(devKeyEnv(false), ""))
	r := h.do(http.MethodPost, releasePath, "rw", []byte(`{"spec":"aoc"}`))
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "no-signing-key" || !strings.Contains(string(r.body), "--signing-key") {
		t.Errorf("release POST without a key: %d %s", r.StatusCode, r.body)
	}
	if n := h.metric("bale_build_queue_depth"); n != 0 {
		t.Errorf("a refused release queued a job: depth %v", n)
	}

	h = startServer(t, "", withRelease(devKeyEnv(true), ""), func(c *Config) { c.InlineReleases = true })
	// An inline release cannot use a development key: only the server's.
	r = h.do(http.MethodPost, releasePath, "rw", []byte(`{"inline":"package p"}`))
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "no-signing-key" {
		t.Errorf("inline release POST without --signing-key: %d %s", r.StatusCode, r.body)
	}
	if r := h.post("rw", `{"spec":"aoc"}`); r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "not-a-bootstrap-pack" {
		t.Errorf("release spec on the bootstrap route: %d %s", r.StatusCode, r.body)
	}
	r = h.do(http.MethodPost, releasePath, "rw", []byte(`{"spec":"airgap"}`))
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "not-a-release" {
		t.Errorf("pack spec on the release route: %d %s", r.StatusCode, r.body)
	}
	// The same Idempotency-Key and body on the other route is another
	// request.
	h.post("rw", `{"spec":"airgap"}`, "Idempotency-Key", "k1")
	r = h.do(http.MethodPost, releasePath, "rw", []byte(`{"spec":"airgap"}`), "Idempotency-Key", "k1")
	if r.StatusCode != http.StatusUnprocessableEntity || problemType(t, r) != "idempotency-key-reused" {
		t.Errorf("a bootstrap Idempotency-Key replayed on the release route: %d %s", r.StatusCode, r.body)
	}
}

// TestSigningKey: --signing-key is opened when the server starts, so a
// wrong password or a missing key stops it; a key given wins over the
// development key, as COSIGN_KEY does in bale build: the AOC spec's
// placeholder dataset hash is then refused, naming it. The key reference
// is bale build's (sign.Locate): env://VAR may hold the key's path (issue
// 17 point 2), and the repository's development key is refused without
// COSIGN_ALLOW_DEV_KEY=1 (issue 23 point 19).
func TestSigningKey(t *testing.T) {
	t.Parallel()
	devKeyFile, err := filepath.Abs(filepath.Join("..", "testdata", "keys", "cosign.dev.key"))
	if err != nil {
		t.Fatal(err)
	}
	// A production key, opened with the password devKeyEnv gives.
	otherPEM, otherPassword := kittest.OtherKeyPEM(t)
	keyFile := filepath.Join(t.TempDir(), "release.key")
	if err := os.WriteFile(keyFile, kittest.Reencrypt(t, otherPEM, otherPassword, fixtures.DevKeyPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	withVar := func(getenv func(string) string, name, value string) func(string) string {
		return func(k string) string {
			if k == name {
				return value
			}
			return getenv(k)
		}
	}
	wrongPassword := func(name string) string {
		if name == sign.EnvPassword {
			return "not-the-password"
		}
		return ""
	}
	toks, _ := testTokens(t)
	for _, tc := range []struct {
		name, key string
		getenv    func(string) string
		want      string
	}{
		{"wrong password", keyFile, wrongPassword, "COSIGN_PASSWORD"},
		{"missing file", filepath.Join(t.TempDir(), "nope.key"), devKeyEnv(false), "no such file"},
		{"unset variable", "env://BALE_TEST_NO_SUCH_KEY", devKeyEnv(false), "unset or empty"},
		{"kms", "awskms://alias/release", devKeyEnv(false), "only env://VAR and file paths"},
		{"not a key", filepath.Join("..", "go.mod"), devKeyEnv(false), "no PEM block"},
		{"development key", devKeyFile, devKeyEnv(false), "development key"},
		{"development key in a variable", "env://BALE_TEST_KEY", withVar(devKeyEnv(false), "BALE_TEST_KEY", devKeyFile), "development key"},
		{"a FIFO", mkfifo(t), devKeyEnv(false), "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(t.Context(), Config{DataDir: t.TempDir(), Tokens: toks, SigningKey: tc.key, Getenv: tc.getenv})
			if err == nil {
				s.Close()
				t.Fatalf("New with --signing-key %s: no error", tc.key)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want it to say %q", err, tc.want)
			}
		})
	}

	// env://VAR holding the key's path opens the key, as in bale build.
	for _, tc := range []struct {
		name, key string
		getenv    func(string) string
	}{
		{"path in a variable", "env://BALE_TEST_KEY", withVar(devKeyEnv(false), "BALE_TEST_KEY", keyFile)},
		{"PEM in a variable", "env://BALE_TEST_KEY", withVar(devKeyEnv(false), "BALE_TEST_KEY", string(kittest.Reencrypt(t, otherPEM, otherPassword, fixtures.DevKeyPassword)))},
		{"development key with COSIGN_ALLOW_DEV_KEY=1", devKeyFile, devKeyEnv(true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(t.Context(), Config{DataDir: t.TempDir(), Tokens: toks, SigningKey: tc.key, Getenv: tc.getenv})
			if err != nil {
				t.Fatalf("New with --signing-key %s: %v", tc.key, err)
			}
			s.Close()
		})
	}

	h := startServer(t, "", withRelease(devKeyEnv(true), keyFile))
	r := h.do(http.MethodPost, releasePath, "rw", []byte(`{"spec":"aoc"}`))
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.StatusCode, r.body)
	}
	st := h.waitRelease(h.release(r).ExportID)
	if st.Status != statusFailed || !strings.Contains(st.Reason, "dev-rehearsal-placeholder") || strings.Contains(st.Reason, h.cfg.DataDir) {
		t.Errorf("release with --signing-key and a placeholder dataset hash: %s %q", st.Status, st.Reason)
	}
}

// goGate puts a go command in front of the real one on PATH whose
// "go build" waits, before anything runs, until the test opens the gate:
// a release build can be caught while it builds its Go binary. It writes
// its process id to waiting once it waits.
type goGate struct {
	dir string
}

func newGoGate(t *testing.T) *goGate {
	t.Helper()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	g := &goGate{dir: t.TempDir()}
	if err := syscall.Mkfifo(filepath.Join(g.dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrap := filepath.Join(t.TempDir(), "gatedgo")
	os.Mkdir(wrap, 0o755)
	script := fmt.Sprintf(`#!/bin/sh
if [ "$1" = build ] && [ ! -e %[1]s/open ]; then
	echo $$ > %[1]s/waiting.tmp && mv %[1]s/waiting.tmp %[1]s/waiting
	read _ < %[1]s/fifo
fi
exec %[2]s "$@"
`, g.dir, real)
	if err := os.WriteFile(filepath.Join(wrap, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", wrap+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Cleanup(g.open)
	return g
}

// waiter is the process id of the go build waiting at the gate, once one
// does.
func (g *goGate) waiter(t *testing.T, stderr *syncBuffer) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, err := os.ReadFile(filepath.Join(g.dir, "waiting"))
		if err == nil {
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err != nil {
				t.Fatalf("gate: %q: %v", b, err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the release build never reached its go build\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// open lets every go build through, those waiting among them.
func (g *goGate) open() {
	os.WriteFile(filepath.Join(g.dir, "open"), nil, 0o644)
	// Opening the FIFO without blocking and closing it ends a waiter's read.
	if f, err := os.OpenFile(filepath.Join(g.dir, "fifo"), os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}

// tempLeft lists what builds left in dir: Go builds' directories and
// release files' (bale-go-*, bale-release-*) and the go command's own
// (go-build*).
func tempLeft(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	for _, pat := range []string{"bale-go-*", "bale-release-*", "go-build*"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, m...)
	}
	return left
}

// TestKillNineRelease: the server process is killed with SIGKILL while a
// release kit build runs its go build (held there, so the build cannot
// finish first); after a restart the export completes, once, its kit
// archive is the bytes bale build specs/aoc writes, and nothing the killed
// build left stays: not in TMPDIR (builds keep their temporary
// directories in the data directory) and not in the data directory.
func TestKillNineRelease(t *testing.T) {
	bin := buildBale(t)
	// The child processes inherit the development key's permission, the
	// gated go command and a TMPDIR of the test's.
	t.Setenv(sign.EnvKey, "")
	t.Setenv(sign.EnvAllowDevKey, "1")
	t.Setenv(sign.EnvPassword, fixtures.DevKeyPassword)
	tmpdir := t.TempDir()
	t.Setenv("TMPDIR", tmpdir)
	gate := newGoGate(t)
	data := t.TempDir()
	tokFile := filepath.Join(t.TempDir(), "tokens.json")
	tok, e, err := auth.NewToken("acme", []string{auth.ScopeRead, auth.ScopeWrite}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Add(tokFile, e); err != nil {
		t.Fatal(err)
	}
	p1 := startProc(t, bin, aocSpecs, data, tokFile)
	code, b := p1.call(t, http.MethodPost, releasePath, tok, `{"spec":"aoc"}`)
	var st releaseStatus
	if code != http.StatusAccepted || json.Unmarshal(b, &st) != nil {
		t.Fatalf("POST: %d %s\n%s", code, b, p1.stderr)
	}
	waiter := gate.waiter(t, p1.stderr)
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.wait()
	// The go build the killed server started dies with it, as it would
	// have mid-compile.
	syscall.Kill(waiter, syscall.SIGKILL)
	if strings.Contains(p1.stderr.String(), `"msg":"build succeeded"`) {
		t.Fatalf("the build finished before the kill\n%s", p1.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(data, "tmp", "*", "bale-go-*")); len(left) == 0 {
		t.Fatalf("the killed build left no Go build directory in the data directory (in TMPDIR: %v)", tempLeft(t, tmpdir))
	}
	gate.open()
	p2 := startProc(t, bin, aocSpecs, data, tokFile)
	deadline := time.Now().Add(3 * time.Minute)
	for st.Status != statusSucceeded && st.Status != statusFailed {
		if time.Now().After(deadline) {
			t.Fatalf("release export not finished in 3m\n%s", p2.stderr)
		}
		time.Sleep(100 * time.Millisecond)
		code, b := p2.call(t, http.MethodGet, releasePath+"/"+st.ExportID, tok, "")
		if code != http.StatusOK || json.Unmarshal(b, &st) != nil {
			t.Fatalf("status: %d %s", code, b)
		}
	}
	if st.Status != statusSucceeded {
		t.Fatalf("after kill -9 and restart: %s %s\n%s", st.Status, st.Reason, p2.stderr)
	}
	if n := strings.Count(p1.stderr.String()+p2.stderr.String(), `"msg":"export succeeded"`); n != 1 {
		t.Fatalf("export finished %d times, want once", n)
	}
	if left := tempLeft(t, tmpdir); len(left) > 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(data, "tmp", "*", "*")); len(left) > 0 {
		t.Errorf("left in the data directory after the rebuild: %v", left)
	}
	want := t.TempDir()
	runBale(t, bin, "..", nil, "build", "specs/aoc", "-o", want, "--cache", t.TempDir(), "-q")
	local, err := os.ReadFile(filepath.Join(want, st.Archive))
	if err != nil {
		t.Fatal(err)
	}
	code, b = p2.call(t, http.MethodGet, st.DownloadURI, tok, "")
	if code != http.StatusOK || string(b) != string(local) || fmt.Sprintf("%x", sha256.Sum256(b)) != st.ArtifactSha256 {
		t.Fatalf("kit archive after restart: %d, %d bytes, want bale build's %d bytes (%s)", code, len(b), len(local), st.ArtifactSha256)
	}
}

// TestInlineReleaseGate: a server signs releases of inline specs only when
// the operator allows it (--inline-releases): otherwise any holder of
// export:write would get the release key's signature on remote content of
// its choosing. Refused both as an inline spec and as the plan id of one
// (a plan made by POST /v1/plans); a served spec's release is unaffected.
func TestInlineReleaseGate(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline-releases=%v", allow), func(t *testing.T) {
			h := startServer(t, "", withRelease(devKeyEnv(true), ""), func(c *Config) { c.InlineReleases = allow })
			ctx := context.Background()
			// An inline release spec's plan, as POST /v1/plans records it.
			rec := planRecord{ID: "sha256:" + strings.Repeat("ab", 32), Root: h.s.inlineRoot(), Kind: plan.TargetRelease,
				BuildTime: time.Unix(1735689600, 0).UTC(), PublicOnly: true}
			if err := h.s.store.putPlan(ctx, "acme", inlineSpec, rec); err != nil {
				t.Fatal(err)
			}
			byID := h.do(http.MethodPost, releasePath, "rw", []byte(`{"planId":"`+rec.ID+`"}`))
			inline := h.do(http.MethodPost, releasePath, "rw", []byte(`{"inline":"package p"}`))
			for what, r := range map[string]response{"plan id of an inline spec": byID, "inline spec": inline} {
				gated := r.StatusCode == http.StatusUnprocessableEntity && problemType(t, r) == "inline-release-disabled"
				if gated == allow {
					t.Errorf("release of an %s with InlineReleases=%v: %d %s", what, allow, r.StatusCode, r.body)
				}
				if gated && !strings.Contains(string(r.body), "--inline-releases") {
					t.Errorf("the refusal does not name --inline-releases: %s", r.body)
				}
			}
			// The served release spec is exported either way.
			if r := h.do(http.MethodPost, releasePath, "rw", []byte(`{"spec":"aoc"}`)); r.StatusCode != http.StatusAccepted {
				t.Errorf("served release spec: %d %s", r.StatusCode, r.body)
			}
		})
	}
}

// mkfifo makes a FIFO, which opening for reading would block on.
func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

// TestOpenAPIKitKinds: the kinds openapi.yaml allows a release file are
// kit.Kinds, the ones the README and bale build --format json name.
func TestOpenAPIKitKinds(t *testing.T) {
	t.Parallel()
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Components.Schemas["ReleaseFile"].Properties["kind"].Enum
	if want := kit.Kinds(); !slices.Equal(got, want) {
		t.Fatalf("openapi.yaml ReleaseFile.kind enum %v, kit.Kinds %v", got, want)
	}
}
