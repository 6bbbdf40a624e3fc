package server

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bale-build/bale/testsupport/tooltest"
)

// smallFS mounts a tmpfs of size bytes for the test (mount needs root):
// skipped where it cannot be made, failed under BALE_REQUIRE_TOOLS=1.
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput(); err != nil {
		tooltest.Unavailable(t, "cannot mount a %d-byte tmpfs for a full disk (needs root): %v %s", size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fill writes path until the file system has no space left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); errors.Is(err, syscall.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// The last pages.
	for _, n := range []int{64 << 10, 4 << 10, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

// TestDiskFull: the data directory is on a 32 MiB file system. A pack of
// a 48 MiB layer fails for want of space, and the failure is recorded,
// with the partial download that filled the disk dropped. With the disk
// full (SQLite's write-ahead log included), /readyz and a POST that must
// write are 503 storage-full with Retry-After while reads are served; a
// build failing then is recorded once space returns; then /readyz is 200
// again.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := smallFS(t, 32<<20)
	g := startGatedRegistry(t)
	specDir := registryWorkspaceOf(t, g, 48<<20)
	secondSpec(t, specDir)
	data := filepath.Join(mnt, "data")
	h := startServer(t, "", func(c *Config) {
		c.DataDir, c.Specs, c.Resolve.Offline = data, []string{filepath.Dir(specDir) + "/..."}, false
	})
	noSpace := func(what string, st exportStatus) {
		t.Helper()
		if st.Status != statusFailed || !strings.Contains(st.Reason, "no space left on device") || strings.Contains(st.Reason, mnt) {
			t.Fatalf("%s: %s %q, want failed for want of space (naming no server path)", what, st.Status, st.Reason)
		}
	}
	partials := func() []string {
		m, _ := filepath.Glob(filepath.Join(data, "cache", "partial", "*"))
		return m
	}

	// The pack does not fit.
	g.open()
	noSpace("a pack larger than the disk", h.wait(h.export(h.post("rw", `{"spec":"regpack"}`)).ExportID))
	if p := partials(); len(p) > 0 {
		t.Fatalf("the partial download that filled the disk is kept: %v", p)
	}
	if r := h.do(http.MethodGet, "/readyz", "", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("/readyz with the disk free again: %d %s", r.StatusCode, r.body)
	}

	// A build held at its fetch while the disk fills up.
	g.shut()
	waiting := g.waiting.Load()
	e := h.export(h.post("rw", `{"spec":"regpack"}`))
	deadline := time.Now().Add(time.Minute)
	for g.waiting.Load() == waiting {
		if time.Now().After(deadline) {
			t.Fatal("the build never fetched the layer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	filler := filepath.Join(data, "filler")
	fill(t, filler)
	// SQLite writes into its write-ahead log's free pages until there
	// are none.
	for i := 0; ; i++ {
		if _, err := h.s.store.db.Exec(`INSERT INTO bale_meta (key, value) VALUES (?, ?)`, fmt.Sprintf("filler-%d", i), strings.Repeat("x", 64<<10)); err != nil {
			if !storageFull(err) {
				t.Fatalf("filling SQLite: %v", err)
			}
			break
		}
	}
	for name, r := range map[string]response{
		"/readyz":         h.do(http.MethodGet, "/readyz", "", nil),
		"POST a new plan": h.post("rw", `{"spec":"regpack2"}`),
	} {
		if r.StatusCode != http.StatusServiceUnavailable || problemType(t, r) != "storage-full" || r.Header.Get("Retry-After") == "" {
			t.Errorf("%s with the disk full: %d Retry-After %q %s, want 503 storage-full with Retry-After", name, r.StatusCode, r.Header.Get("Retry-After"), r.body)
		}
	}
	if r := h.do(http.MethodGet, exportsPath+"/"+e.ExportID, "rw", nil); r.StatusCode != http.StatusOK {
		t.Errorf("status with the disk full: %d %s", r.StatusCode, r.body)
	}
	g.open()
	deadline = time.Now().Add(time.Minute)
	for !strings.Contains(h.logs.String(), `"msg":"the store cannot take a write; retrying"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the build's failure was not retried\n%s", h.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	noSpace("a build that failed with the disk full", h.wait(e.ExportID))
	if r := h.do(http.MethodGet, "/readyz", "", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("/readyz once space returned: %d %s", r.StatusCode, r.body)
	}
	if r := h.post("rw", `{"spec":"regpack2"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST once space returned: %d %s", r.StatusCode, r.body)
	}
}
