package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bale runs the CLI in-process from dir and returns stdout, stderr and the
// exit code.
func bale(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	if dir != "" {
		if !filepath.IsAbs(dir) {
			_, self, _, _ := runtime.Caller(0)
			dir = filepath.Join(filepath.Dir(self), dir)
		}
		t.Chdir(dir)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestVetRealSpecs(t *testing.T) {
	out, errs, code := bale(t, "../..", "vet", "specs/...")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	for _, want := range []string{"ok  specs/airgap  sha256:", "ok  specs/aoc  sha256:"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

func TestVetBadSpec(t *testing.T) {
	_, errs, code := bale(t, "../../planner/spec", "vet", "testdata/bad/several-errors.cue")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if n := strings.Count(errs, "testdata/bad/several-errors.cue:"); n != 6 {
		t.Errorf("want all 6 errors of the file in one run, got %d:\n%s", n, errs)
	}
}

func TestVetJSON(t *testing.T) {
	out, _, code := bale(t, "../../planner/spec", "vet", "--format", "json", "testdata/bad/malformed-digest.cue")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var res vetResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("vet --format json is not JSON: %v\n%s", err, out)
	}
	if res.FormatVersion != 1 {
		t.Errorf("formatVersion %d, want 1", res.FormatVersion)
	}
	if res.Valid || len(res.Diagnostics) != 1 {
		t.Fatalf("result %+v", res)
	}
	d := res.Diagnostics[0]
	if d.File != "testdata/bad/malformed-digest.cue" || d.Line != 5 || d.Column != 57 || d.Severity != "error" || !strings.Contains(d.Message, "bootstrapPack.images[0].digest") {
		t.Errorf("diagnostic %+v", d)
	}
}

func TestVetStrict(t *testing.T) {
	dir := t.TempDir()
	spec := "bootstrapPack: {sourceDateEpoch: 0, images: [{name: \"web\", ref: \"r.example/web:1\"}]}\n"
	if err := os.WriteFile(filepath.Join(dir, "w.cue"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := bale(t, dir, "vet", "w.cue")
	if code != 0 || !strings.Contains(errs, "w.cue:1:60: warning: bootstrapPack.images[0].ref:") {
		t.Errorf("without --strict: exit %d, stderr %q", code, errs)
	}
	_, errs, code = bale(t, dir, "vet", "--strict", "w.cue")
	if code != 1 || strings.Contains(errs, "warning:") || !strings.Contains(errs, "w.cue:1:60: bootstrapPack.images[0].ref:") {
		t.Errorf("with --strict: exit %d, stderr %q", code, errs)
	}
}

// TestVetWorkspaceRoot: without cue.mod or .git above it, a spec's
// workspace root is its own directory, and a chart path beside it is
// outside: plan refuses it, and so must vet (it said ok), both naming the
// path and --root; with --root naming the directory above, both accept it.
// An absolute path outside is refused the same way.
func TestVetWorkspaceRoot(t *testing.T) {
	ws := t.TempDir()
	if err := os.CopyFS(filepath.Join(ws, "airgap-controller"), os.DirFS("../../testdata/charts/airgap-controller")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, "spec"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"relative", "../airgap-controller"},
		{"absolute", filepath.Join(ws, "airgap-controller")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\tcharts: [{name: \"airgap-controller\", path: \"" + tc.path + "\", version: \"1.4.2\"}]\n}\n"
			if err := os.WriteFile(filepath.Join(ws, "spec", "pack.cue"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"vet", "spec"}, {"plan", "spec", "-o", "plan.json"}} {
				_, errs, code := bale(t, ws, args...)
				for _, want := range []string{
					"spec/pack.cue:5:",
					"path " + tc.path + " leaves the workspace root " + filepath.Join(ws, "spec"),
					"name another with --root",
				} {
					if code != 1 || !strings.Contains(errs, want) {
						t.Errorf("bale %v: exit %d, want 1 and %q in:\n%s", args, code, want, errs)
					}
				}
				args = append(args, "--root", ".")
				if _, errs, code := bale(t, ws, args...); code != 0 {
					t.Errorf("bale %v: exit %d\n%s", args, code, errs)
				}
			}
		})
	}
}

func TestEvalStable(t *testing.T) {
	a, _, code := bale(t, "../..", "eval", "specs/airgap")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, _, _ := bale(t, "../../specs/airgap", "eval")
	if a != b || !strings.HasSuffix(a, "}\n") {
		t.Errorf("eval from two directories differs or lacks a trailing newline")
	}
	c, _, code := bale(t, "../..", "eval", "specs/aoc", "--format", "cue")
	if code != 0 || !strings.Contains(c, "verifyScript: \"verify.sh\"") {
		t.Errorf("eval --format cue: exit %d\n%s", code, c)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"vet", "--format", "yaml"}, `--format "yaml": want one of [text json]`},
		{[]string{"vet", "no/such/dir"}, "load spec no/such/dir"},
		{[]string{"eval", "a", "b"}, "accepts at most 1 arg(s)"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"diff", "only-one.json"}, "accepts 2 arg(s)"},
	}
	for _, tt := range tests {
		_, errs, code := bale(t, "", tt.args...)
		if code != 1 || !strings.Contains(errs, tt.want) {
			t.Errorf("bale %v: exit %d, stderr %q, want %q", tt.args, code, errs, tt.want)
		}
	}
}

// TestHelp: every command explains itself with an example.
func TestHelp(t *testing.T) {
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		out, _, code := bale(t, "", c.Name(), "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "bale "+c.Name()) {
			t.Errorf("bale %s --help: exit %d, lacks an example:\n%s", c.Name(), code, out)
		}
		if c.Name() == "vet" && !strings.Contains(out, "formatVersion (currently 1;") {
			t.Errorf("bale vet --help does not document formatVersion:\n%s", out)
		}
	}
}

// TestVersionFlag: bale --version prints what bale version prints.
func TestVersionFlag(t *testing.T) {
	flag, _, code := bale(t, "", "--version")
	cmd, _, code2 := bale(t, "", "version")
	if code != 0 || code2 != 0 || flag != cmd || !strings.HasPrefix(flag, "bale ") {
		t.Errorf("--version: exit %d %q; version: exit %d %q", code, flag, code2, cmd)
	}
}
