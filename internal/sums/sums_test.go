package sums

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/testsupport/tooltest"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
)

func TestMarshalParse(t *testing.T) {
	t.Parallel()
	got, err := Marshal([]Sum{{"b.tar", hexB}, {"a b.txt", hexA}})
	if err != nil {
		t.Fatal(err)
	}
	want := hexA + "  a b.txt\n" + hexB + "  b.tar\n"
	if string(got) != want {
		t.Fatalf("Marshal = %q, want %q", got, want)
	}
	back, err := Parse(got)
	if err != nil || len(back) != 2 || back[0] != (Sum{"a b.txt", hexA}) || back[1] != (Sum{"b.tar", hexB}) {
		t.Fatalf("Parse = %v, %v", back, err)
	}
	for _, bad := range [][]Sum{
		{{"x", hexA}, {"x", hexB}},
		{{"a\nb", hexA}},
		{{`a\b`, hexA}},
		{{"", hexA}},
		{{"x", strings.ToUpper(hexA)}},
		{{"x", hexA[:63]}},
	} {
		if _, err := Marshal(bad); err == nil {
			t.Errorf("Marshal(%q): no error", bad)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, err string }{
		{hexA + "  x", "no newline"},
		{hexA + " *x\n", "line 1"},
		{hexA + " x\n", "line 1"},
		{hexB + "  b\n" + hexA + "  a\n", "line 2: a is out of order"},
		{hexA + "  a\n" + hexA + "  a\n", "line 2: a is out of order or repeated"},
		{"\n", "line 1"},
		{hexA + "  a\n\n", "line 2"},
		{strings.ToUpper(hexA) + "  a\n", "line 1"},
	} {
		if _, err := Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
	if s, err := Parse(nil); err != nil || s != nil {
		t.Errorf("Parse(empty) = %v, %v", s, err)
	}
}

func TestParseLine(t *testing.T) {
	t.Parallel()
	if s, err := ParseLine(Line(hexA, "p.tar")); err != nil || s != (Sum{"p.tar", hexA}) {
		t.Errorf("ParseLine = %v, %v", s, err)
	}
	for _, bad := range []string{"", hexA + "  p.tar", hexA + "  p.tar\n" + hexA + "  q\n", hexA + "  p.tar\n\n"} {
		if _, err := ParseLine([]byte(bad)); err == nil {
			t.Errorf("ParseLine(%q): no error", bad)
		}
	}
}

// TestSha256sumReads checks the format against the real sha256sum -c.
func TestSha256sumReads(t *testing.T) {
	t.Parallel()
	sha := tooltest.Require(t, "sha256sum")
	dir := t.TempDir()
	files := map[string]string{"a b.txt": "one", "c.tar": "two", "-dash": "three"}
	var list []Sum
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sha, filepath.Join(dir, name)).Output()
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, Sum{name, string(out[:64])})
	}
	b, err := Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sha, "-c", "--strict", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.tar"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("sha256sum -c passed a changed file:\n%s", out)
	}
}

func TestParseAny(t *testing.T) {
	t.Parallel()
	in := hexB + "  b.tar\n\n" + hexA + " *a.bin\r\n"
	got, err := ParseAny([]byte(in))
	if err != nil || len(got) != 2 || got[0] != (Sum{"b.tar", hexB}) || got[1] != (Sum{"a.bin", hexA}) {
		t.Fatalf("ParseAny = %v, %v", got, err)
	}
	for _, bad := range []string{hexA + " x\n", hexA + "\tx\n", strings.ToUpper(hexA) + "  x\n", hexA + "  a\\b\n", "junk\n"} {
		if _, err := ParseAny([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseAny(%q) = %v", bad, err)
		}
	}
}
