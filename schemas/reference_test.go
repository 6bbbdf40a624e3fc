package schemas

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite ../docs/schema.md")

// TestReferenceCurrent fails when docs/schema.md is not what Reference
// renders from bale.cue: a schema change must come with its reference.
func TestReferenceCurrent(t *testing.T) {
	got, err := Reference()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "docs", "schema.md")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./schemas -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/schema.md is stale: run go test ./schemas -update")
	}
}

// TestReferenceCoversSchema checks that every definition and every field
// of the schema appears in the reference with its doc comment.
func TestReferenceCoversSchema(t *testing.T) {
	got, err := Reference()
	if err != nil {
		t.Fatal(err)
	}
	ref := string(got)
	for _, want := range []string{
		"## #BootstrapPack", "## #Image", "## #Chart", "## #File", "## #Signing", "## #Release",
		"| `layout.refName` |", "| `sourceDateEpoch` | `#Timestamp` |  | **required** |",
		"| `level` | `*1 \\| (int & >=0 & <=9)` | `1` | always | level is the gzip level: 0 (store) to 9 (best). |",
		"| `name` | `*\"bootstrap-pack-v1\" \\| #Name` | `\"bootstrap-pack-v1\"` | always |",
	} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	for _, line := range strings.Split(Source, "\n") {
		if strings.HasPrefix(line, "#") && strings.Contains(line, ":") {
			def := strings.TrimSpace(line[:strings.Index(line, ":")])
			if !strings.Contains(ref, "## "+def+"\n") {
				t.Errorf("reference lacks definition %s", def)
			}
		}
	}
}
