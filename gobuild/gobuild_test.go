package gobuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/testsupport/tooltest"
)

// writeModule writes a tiny main module into dir.
func writeModule(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"go.mod":            "module example.com/hello\n\ngo 1.22\n",
		"cmd/hello/main.go": "package main\n\nimport \"fmt\"\n\nvar version = \"dev\"\n\nfunc main() { fmt.Println(\"hello\", version) }\n",
		".git/HEAD":         "ref: refs/heads/main\n",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTreeDigest(t *testing.T) {
	ctx := context.Background()
	a, b := t.TempDir(), t.TempDir()
	writeModule(t, a)
	writeModule(t, b)
	da, err := TreeDigest(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// The same tree elsewhere, with other .git content, has the same digest.
	os.WriteFile(filepath.Join(b, ".git", "HEAD"), []byte("other"), 0o644)
	if db, err := TreeDigest(ctx, b); err != nil || db != da {
		t.Errorf("digest of an identical tree: %s, %v; want %s", db, err, da)
	}
	// A changed byte changes it; the snapshot's digest is the tree's.
	os.WriteFile(filepath.Join(b, "cmd", "hello", "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
	if db, _ := TreeDigest(ctx, b); db == da {
		t.Error("a changed file does not change the digest")
	}
	snap := filepath.Join(t.TempDir(), "snap")
	if ds, err := Snapshot(ctx, a, snap); err != nil || ds != da {
		t.Errorf("Snapshot: %s, %v; want %s", ds, err, da)
	}
	if _, err := os.Stat(filepath.Join(snap, ".git")); err == nil {
		t.Error("the snapshot copied .git")
	}
}

// TestTreeRefusals: a symbolic link (which go build would follow outside
// the pinned tree) and a tree without go.mod are refused, naming them.
func TestTreeRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeModule(t, dir)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "cmd", "hello", "data.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := TreeDigest(ctx, dir); err == nil || !strings.Contains(err.Error(), "cmd/hello/data.txt") {
		t.Errorf("a tree with a symlink: %v", err)
	}
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "main.go"), []byte("package main\n"), 0o644)
	if _, err := TreeDigest(ctx, empty); err == nil || !strings.Contains(err.Error(), "no go.mod") {
		t.Errorf("a tree without go.mod: %v", err)
	}
}

func TestCheckLDFlags(t *testing.T) {
	tests := []struct {
		flags string
		ok    bool
	}{
		{"", true},
		{"-s -w", true},
		{"-s -w -X main.version=19.5.0", true},
		{"-X=example.com/x/internal/build.Commit=abc123", true},
		{"-linkmode=external", false},
		{"-extld=/bin/sh", false},
		{"-X main.version=1 -extldflags=-static", false},
		{"-X", false},
		{"-X main.version='1 2'", false},
		{"-buildid=", false},
	}
	for _, tt := range tests {
		if err := CheckLDFlags(tt.flags); (err == nil) != tt.ok {
			t.Errorf("CheckLDFlags(%q) = %v, want ok=%v", tt.flags, err, tt.ok)
		}
	}
	for _, pkg := range []string{"../x", "./a/../../b", "/abs", "-toolexec=x", "./cmd/x;rm"} {
		if err := CheckPlatform(pkg, "linux", "amd64"); err == nil {
			t.Errorf("CheckPlatform accepts package %q", pkg)
		}
	}
}

// TestBuildReproducible: the same tree built from two directories, with a
// hostile go env in the environment (GOFLAGS adding -race, a GOENV file),
// gives the same bytes, and the ldflags reach the binary.
func TestBuildReproducible(t *testing.T) {
	tooltest.Require(t, "go")
	ctx := context.Background()
	src := t.TempDir()
	writeModule(t, src)
	var bins [][]byte
	for i, env := range []map[string]string{{}, {"GOFLAGS": "-race -ldflags=-X=main.version=evil", "GOENV": "/nonexistent"}} {
		snap := filepath.Join(t.TempDir(), "deep", "snap")
		if _, err := Snapshot(ctx, src, snap); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "hello")
		getenv := func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			return os.Getenv(k)
		}
		if err := Build(ctx, Options{Dir: snap, Package: "./cmd/hello", GOOS: "linux", GOARCH: "amd64", LDFlags: "-s -w -X main.version=1.2.3", Out: out, Getenv: getenv}); err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, b)
	}
	if !bytes.Equal(bins[0], bins[1]) {
		t.Error("two builds of the same tree differ")
	}
	if !bytes.Contains(bins[0], []byte("1.2.3")) || bytes.Contains(bins[0], []byte("evil")) {
		t.Error("the spec's ldflags did not (only) reach the binary")
	}
	if err := Build(ctx, Options{Dir: src, Package: "./cmd/hello", GOOS: "linux", GOARCH: "amd64", LDFlags: "-extld=/bin/sh", Out: filepath.Join(t.TempDir(), "x")}); err == nil {
		t.Error("Build accepted -extld")
	}
}

// TestVersion: the GOROOT/VERSION fast path says what go env GOVERSION says.
func TestVersion(t *testing.T) {
	tooltest.Require(t, "go")
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Version(context.Background(), "", nil)
	if err != nil || v != strings.TrimSpace(string(out)) {
		t.Errorf("Version = %q, %v; go env GOVERSION says %s", v, err, out)
	}
	// A go command outside a GOROOT layout falls back to asking it.
	if _, ok := rootVersion("/nonexistent/go", nil); ok {
		t.Error("rootVersion of a missing command")
	}
}
