package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/executor/cas"
)

// TestCacheCommands builds the real pack, then runs du, verify (clean,
// then with a byte flipped in the largest blob) and prune through the CLI.
func TestCacheCommands(t *testing.T) {
	dir := t.TempDir()
	out, cache := filepath.Join(dir, "out"), filepath.Join(dir, "cache")
	if _, errs, code := bale(t, "../..", "build", "specs/airgap", "-o", out, "--cache", cache, "--offline", "-q"); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, errs)
	}
	// A killed build's leftover, old enough to sweep.
	stale := filepath.Join(cache, "blobs", "sha256", ".upload.tmp-dead")
	os.WriteFile(stale, make([]byte, 4096), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)

	stdout, errs, code := bale(t, "", "cache", "du", "--cache", cache, "--format", "json")
	var u cas.Usage
	if code != 0 || json.Unmarshal([]byte(stdout), &u) != nil {
		t.Fatalf("du: exit %d\n%s%s", code, stdout, errs)
	}
	if u.Blobs == 0 || u.Actions != 12 || u.Temps != 1 || u.TempBytes != 4096 || u.Bytes < u.BlobBytes {
		t.Errorf("du: %+v", u)
	}
	if stdout, _, code := bale(t, "", "cache", "du", "--cache", cache); code != 0 || !strings.Contains(stdout, "blobs ") || !strings.Contains(stdout, "temporary ") {
		t.Errorf("du text: exit %d\n%s", code, stdout)
	}

	if stdout, errs, code := bale(t, "", "cache", "verify", "--cache", cache); code != 0 || !strings.HasPrefix(stdout, "ok: ") {
		t.Fatalf("verify of a sound cache: exit %d\n%s%s", code, stdout, errs)
	}
	blobs := filepath.Join(cache, "blobs", "sha256")
	des, _ := os.ReadDir(blobs)
	var big string
	var bigSize int64
	for _, de := range des {
		if fi, _ := de.Info(); !strings.HasPrefix(de.Name(), ".") && fi.Size() > bigSize {
			big, bigSize = de.Name(), fi.Size()
		}
	}
	f, _ := os.OpenFile(filepath.Join(blobs, big), os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, bigSize/2)
	f.Close()
	stdout, errs, code = bale(t, "", "cache", "verify", "--cache", cache, "--format", "json")
	var rep cas.VerifyReport
	if code != 2 || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("verify of a corrupt cache: exit %d\n%s%s", code, stdout, errs)
	}
	if len(rep.Evicted) == 0 || rep.Evicted[0].Name != "sha256:"+big || rep.Evicted[0].Kind != "blob" {
		t.Errorf("evicted %+v", rep.Evicted)
	}
	if _, err := os.Stat(filepath.Join(blobs, big)); err == nil {
		t.Error("the corrupt blob is still there")
	}
	if _, _, code := bale(t, "", "cache", "verify", "--cache", cache); code != 0 {
		t.Errorf("second verify: exit %d", code)
	}

	stdout, errs, code = bale(t, "", "cache", "prune", "--cache", cache, "--max-size", "1", "--format", "json")
	var pr cas.PruneResult
	if code != 0 || json.Unmarshal([]byte(stdout), &pr) != nil {
		t.Fatalf("prune: exit %d\n%s%s", code, stdout, errs)
	}
	if pr.Evicted == 0 || pr.Kept != 0 || pr.Temps != 1 {
		t.Errorf("prune: %+v", pr)
	}
	stdout, _, _ = bale(t, "", "cache", "du", "--cache", cache, "--format", "json")
	json.Unmarshal([]byte(stdout), &u)
	if u.Blobs != 0 || u.Actions != 0 || u.Temps != 0 {
		t.Errorf("du after prune: %+v", u)
	}
	// The emptied cache still builds the same pack.
	before, _ := os.ReadFile(filepath.Join(out, "bootstrap-pack-v1.tar"))
	out2 := filepath.Join(dir, "out2")
	if _, errs, code := bale(t, "../..", "build", "specs/airgap", "-o", out2, "--cache", cache, "--offline", "-q"); code != 0 {
		t.Fatalf("build after prune: exit %d\n%s", code, errs)
	}
	if after, _ := os.ReadFile(filepath.Join(out2, "bootstrap-pack-v1.tar")); string(after) != string(before) {
		t.Error("pack differs after prune")
	}
}

func TestCacheRefusals(t *testing.T) {
	cache := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"cache", "prune", "--cache", cache, "--max-size", "lots"}, `--max-size: "lots"`},
		{[]string{"cache", "prune", "--cache", cache, "--max-size", "-5"}, "--max-size"},
		{[]string{"cache", "prune", "--cache", cache, "--older-than", "yesterday"}, `--older-than: "yesterday"`},
		{[]string{"cache", "du", "--cache", cache, "--format", "yaml"}, `--format "yaml"`},
		{[]string{"cache", "verify", "--cache", cache, "extra"}, "unknown command"},
	} {
		_, errs, code := bale(t, "", tt.args...)
		if code != 1 || !strings.Contains(errs, tt.want) {
			t.Errorf("bale %v: exit %d, stderr %q, want %q", tt.args, code, errs, tt.want)
		}
	}
	for _, sub := range []string{"du", "prune", "verify"} {
		stdout, _, code := bale(t, "", "cache", sub, "--help")
		if code != 0 || !strings.Contains(stdout, "--cache") || !strings.Contains(stdout, "--format") || !strings.Contains(stdout, "bale cache "+sub) {
			t.Errorf("cache %s --help: exit %d\n%s", sub, code, stdout)
		}
	}
}

func TestParseSizeAge(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1": 1, "500MB": 500e6, "20GiB": 20 << 30, "1.5g": 3 << 29, "10 kb": 1e4} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1XB", "GiB", "1e30"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseAge(in); err != nil || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-1h", "d", "soon"} {
		if _, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q) accepted", in)
		}
	}
}
