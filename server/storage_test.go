package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bale-build/bale/testsupport/fakeclock"
)

// writeTree writes files (path relative to root → content) under root,
// making the directories they need.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// bigSpec writes a workspace with one bootstrap-pack spec, "big", whose
// pack holds a signature file of mib MiB of random bytes (so the pack is
// as large and does not compress), and returns the spec's directory.
func bigSpec(t *testing.T, mib int) string {
	t.Helper()
	root := t.TempDir()
	blob := make([]byte, mib<<20)
	rand.Read(blob)
	writeTree(t, root, map[string]string{
		".git/HEAD":   "",
		"big/big.sig": string(blob),
		"big/pack.cue": `package big

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	signatures: [{name: "big.json", kind: "dsse", path: "big.sig"}]
}
`,
	})
	return filepath.Join(root, "big")
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

// exportDirs lists the export directories of tenant under the data
// directory.
func exportDirs(t *testing.T, h *harness, tenant string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(h.cfg.DataDir, "exports", tenant))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestRetention: finished exports past a tenant's newest RetainCount go,
// record and files; past RetainAge every finished export goes, then the
// build and the plan no export refers to; a POST after that builds again.
func TestRetention(t *testing.T) {
	t.Parallel()
	backends(t, testRetention)
}

func testRetention(t *testing.T, db string) {
	clock := fakeclock.New(time.Now())
	h := startServer(t, db, func(c *Config) {
		c.Now, c.RetainAge, c.RetainCount, c.RetainEvery = clock.Now, 24*time.Hour, 3, time.Hour
	})
	first := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	if first.Status != statusSucceeded {
		t.Fatalf("export: %s %s", first.Status, first.Reason)
	}
	ids := []string{first.ExportID}
	for i := 0; i < 4; i++ {
		ids = append(ids, h.export(h.post("rw", `{"planId":"`+first.PlanID+`"}`)).ExportID)
	}
	other := h.waitAs("other", h.export(h.post("other", `{"spec":"airgap"}`)).ExportID)
	ctx := context.Background()

	// By count: acme's two oldest go, its three newest and other's stay.
	if err := h.s.sweepRetention(ctx, false); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		r := h.do(http.MethodGet, exportsPath+"/"+id, "rw", nil)
		if want := map[bool]int{true: 404, false: 200}[i < 2]; r.StatusCode != want {
			t.Errorf("export %d of 5 after retention by count: %d, want %d", i+1, r.StatusCode, want)
		}
	}
	if got := exportDirs(t, h, "acme"); len(got) != 3 {
		t.Errorf("acme's export directories after retention by count: %v, want 3", got)
	}
	if r := h.do(http.MethodGet, exportsPath+"/"+other.ExportID, "other", nil); r.StatusCode != 200 {
		t.Errorf("another tenant's export after acme's retention: %d", r.StatusCode)
	}

	// By age: everything finished goes, then the build and the plan.
	clock.Advance(24*time.Hour + time.Minute)
	if err := h.s.sweepRetention(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"exports/acme", "exports/other", "builds", "plans"} {
		ents, _ := os.ReadDir(filepath.Join(h.cfg.DataDir, d))
		if len(ents) != 0 {
			t.Errorf("%s after retention by age: %d entries left", d, len(ents))
		}
	}
	if r := h.do(http.MethodGet, "/v1/plans/"+first.PlanID, "rw", nil); r.StatusCode != 404 {
		t.Errorf("the plan after retention by age: %d, want 404", r.StatusCode)
	}
	if _, err := h.s.store.build(ctx, first.PlanID); !errors.Is(err, errNotFound) {
		t.Errorf("the build's record after retention by age: %v", err)
	}
	// A POST builds the plan again.
	again := h.export(h.post("rw", `{"spec":"airgap"}`))
	if again.Status != statusQueued {
		t.Fatalf("POST after retention: %s, want queued (built again)", again.Status)
	}
	if st := h.wait(again.ExportID); st.Status != statusSucceeded || st.ArtifactSha256 != first.ArtifactSha256 {
		t.Fatalf("export after retention: %s %s %s", st.Status, st.Reason, st.ArtifactSha256)
	}
}

// TestOrphanExportDirs: a directory left by a crash between an export
// record's removal and its files' (and a layout's temporary directory)
// goes at the next start's sweep; an export with a record stays.
func TestOrphanExportDirs(t *testing.T) {
	t.Parallel()
	h := startServer(t, "")
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	orphan := filepath.Join(h.cfg.DataDir, "exports", "acme", strings.Repeat("ab", 16))
	tmp := filepath.Join(h.cfg.DataDir, "exports", "acme", "."+st.ExportID+".tmp-123")
	for _, d := range []string{orphan, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.s.sweepRetention(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got := exportDirs(t, h, "acme"); len(got) != 1 || got[0] != st.ExportID {
		t.Fatalf("export directories after the start's sweep: %v, want only %s", got, st.ExportID)
	}
}

// TestTenantQuota: once a tenant's exports hold its quota, a POST of a
// plan it does not hold is 507; one of a plan it holds adds nothing and is
// accepted; another tenant is not concerned; deleting exports frees the
// quota.
func TestTenantQuota(t *testing.T) {
	t.Parallel()
	backends(t, testTenantQuota)
}

func testTenantQuota(t *testing.T, db string) {
	h := startServer(t, db, func(c *Config) {
		c.Specs = []string{airgapSpecs, writeSpecs(t, 1)}
		c.TenantQuota = 1024 // less than one pack
	})
	st := h.wait(h.export(h.post("rw", `{"spec":"airgap"}`)).ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export: %s %s", st.Status, st.Reason)
	}
	r := h.post("rw", `{"spec":"s1"}`)
	if r.StatusCode != http.StatusInsufficientStorage || problemType(t, r) != "storage-quota" {
		t.Fatalf("POST past the quota: %d %s, want 507 storage-quota", r.StatusCode, r.body)
	}
	if !strings.Contains(string(r.body), fmt.Sprintf("hold %d bytes", st.Size)) {
		t.Errorf("the refusal does not say what the tenant holds: %s", r.body)
	}
	// The plan it holds: accepted, at no cost.
	again := h.post("rw", `{"spec":"airgap"}`)
	if again.StatusCode != http.StatusAccepted {
		t.Fatalf("POST of a plan the tenant holds: %d %s", again.StatusCode, again.body)
	}
	if r := h.post("other", `{"spec":"s1"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("another tenant's POST: %d %s", r.StatusCode, r.body)
	}
	// A queued export cannot be deleted; finished ones can.
	for _, id := range []string{st.ExportID, h.wait(h.export(again).ExportID).ExportID} {
		if r := h.do(http.MethodDelete, exportsPath+"/"+id, "read", nil); r.StatusCode != http.StatusForbidden {
			t.Fatalf("DELETE with a read-only token: %d", r.StatusCode)
		}
		if r := h.do(http.MethodDelete, exportsPath+"/"+id, "other", nil); r.StatusCode != http.StatusNotFound {
			t.Fatalf("DELETE of another tenant's export: %d", r.StatusCode)
		}
		if r := h.do(http.MethodDelete, exportsPath+"/"+id, "rw", nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.StatusCode, r.body)
		}
		if r := h.do(http.MethodGet, exportsPath+"/"+id+"/download", "rw", nil); r.StatusCode != http.StatusNotFound {
			t.Fatalf("download of a deleted export: %d", r.StatusCode)
		}
	}
	if got := exportDirs(t, h, "acme"); len(got) != 0 {
		t.Fatalf("export directories after DELETE: %v", got)
	}
	if r := h.post("rw", `{"spec":"s1"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST after deleting the exports: %d %s", r.StatusCode, r.body)
	}
}
