package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// bigSpec writes a workspace with one bootstrap-pack spec, "big", whose
// pack holds a signature file of mib MiB of random bytes (so the pack is
// as large and does not compress), and returns the spec's directory.
func bigSpec(t *testing.T, mib int) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, mib<<20)
	rand.Read(blob)
	if err := os.WriteFile(filepath.Join(dir, "big.sig"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	src := `package big

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	signatures: [{name: "big.json", kind: "dsse", path: "big.sig"}]
}
`
	if err := os.WriteFile(filepath.Join(dir, "pack.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// diskUsage is the space the files and directories under dir take on
// disk, each inode counted once (hard links share their blocks).
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	seen := map[[2]uint64]bool{}
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if !seen[key] {
			seen[key] = true
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDataPrivate: the data directory and what the server writes in it
// (the database, plans, builds, exports) are its user's alone, and a data
// directory an older version left world-readable is made private at start.
func TestDataPrivate(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"plans", "exports"} {
		os.Mkdir(filepath.Join(data, d), 0o755)
	}
	os.WriteFile(filepath.Join(data, "bale.db"), nil, 0o644)
	h := startServer(t, "", func(c *Config) { c.DataDir = data })
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export: %s %s", st.Status, st.Reason)
	}
	check := func(p string, want os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", strings.TrimPrefix(p, data), got, want)
		}
	}
	check(data, 0o700)
	for _, d := range []string{"cache", "plans", "builds", "exports", "inline"} {
		check(filepath.Join(data, d), 0o700)
	}
	for _, f := range []string{"bale.db", "bale.db-wal", "bale.db-shm"} {
		check(filepath.Join(data, f), 0o600)
	}
	n := 0
	for _, d := range []string{"plans", "builds", "exports"} {
		filepath.WalkDir(filepath.Join(data, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if e.IsDir() {
				check(p, 0o700)
			} else {
				check(p, 0o600)
				n++
			}
			return nil
		})
	}
	if n < 5 { // a plan, the build's pack and .sha256, the export's
		t.Fatalf("found %d files under plans, builds and exports", n)
	}
}

// TestLinkLimit: past the file system's hard-link limit (EMLINK, made
// here by the link seam) exports of a built plan take no more disk: each
// refers to the build's file, never a copy of it, and downloads serve the
// same bytes.
func TestLinkLimit(t *testing.T) {
	t.Parallel()
	const mib = 8
	dir := bigSpec(t, mib)
	h := startServer(t, "", func(c *Config) { c.Specs = []string{dir} })
	first := h.wait(h.export(h.post("rw", `{"spec":"big"}`)).ExportID)
	if first.Status != statusSucceeded || first.Size < mib<<20 {
		t.Fatalf("first export: %s %s, %d bytes", first.Status, first.Reason, first.Size)
	}
	// The first export is a hard link to the build.
	fi, err := os.Stat(filepath.Join(h.cfg.DataDir, "exports", "acme", first.ExportID, first.File))
	if err != nil {
		t.Fatal(err)
	}
	if nl := fi.Sys().(*syscall.Stat_t).Nlink; nl != 2 {
		t.Fatalf("the first export's pack has %d links, want 2 (the build's and its own)", nl)
	}
	h.s.link = func(oldname, newname string) error {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EMLINK}
	}
	before := diskUsage(t, h.cfg.DataDir)
	const posts = 5
	var last exportStatus
	for i := 0; i < posts; i++ {
		last = h.export(h.post("rw", `{"planId":"`+first.PlanID+`"}`))
		if last.Status != statusSucceeded {
			t.Fatalf("POST %d of a built plan: %s %s", i, last.Status, last.Reason)
		}
	}
	grew := diskUsage(t, h.cfg.DataDir) - before
	// A directory and two symbolic links per export, a few KiB; a copy
	// would be the pack's 8 MiB each.
	if grew > posts*64<<10 {
		t.Fatalf("%d exports past the link limit took %d more bytes on disk (the pack is %d bytes)", posts, grew, first.Size)
	}
	t.Logf("%d exports past the link limit: %d bytes more on disk", posts, grew)
	r := h.do(http.MethodGet, last.DownloadURI, "rw", nil)
	sum := sha256.Sum256(r.body)
	if r.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != first.ArtifactSha256 {
		t.Fatalf("download past the link limit: %d, sha256 %x, want %s", r.StatusCode, sum, first.ArtifactSha256)
	}
	r = h.do(http.MethodGet, last.ChecksumURI, "rw", nil)
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(string(r.body), first.ArtifactSha256+"  ") {
		t.Fatalf("checksum past the link limit: %d %q", r.StatusCode, r.body)
	}
}
