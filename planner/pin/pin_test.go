package pin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

func load(t *testing.T, src string) *spec.Instance {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	insts, diags, err := spec.Load(context.Background(), []string{filepath.Join(dir, "p.cue")}, spec.Options{})
	if err != nil || diags.HasErrors() || len(insts) != 1 {
		t.Fatalf("load: %v %v", err, diags)
	}
	return insts[0]
}

// TestApply: pins go beside the field they follow, in the struct's own
// layout; one struct that makes several images (a comprehension) is
// refused rather than given one digest for all.
func TestApply(t *testing.T) {
	const d = "sha256:1349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
	p := &plan.Plan{Inputs: []plan.Input{{Kind: plan.KindImage, Name: "a", Digest: d}, {Kind: plan.KindImage, Name: "b", Digest: d}}}
	inst := load(t, "bootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [\n\t\t{\n\t\t\tname: \"a\"\n\t\t\tref:  \"r.example/a:1\" // moves\n\t\t},\n\t\t{name: \"b\", ref: \"r.example/b:1\"},\n\t]\n}\n")
	pins := Missing(inst)
	if len(pins) != 2 {
		t.Fatalf("missing %+v", pins)
	}
	if err := Resolve(pins, p); err != nil {
		t.Fatal(err)
	}
	edits, err := Apply(inst, pins)
	if err != nil || len(edits) != 1 {
		t.Fatalf("apply: %v %v", edits, err)
	}
	got := string(edits[0].New)
	for _, want := range []string{"\t\t\tref:    \"r.example/a:1\" // moves\n\t\t\tdigest: \"" + d + "\"\n", `{name: "b", ref: "r.example/b:1", digest: "` + d + `"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("edit lacks %q:\n%s", want, got)
		}
	}
	var diff bytes.Buffer
	if err := edits[0].Diff(&diff, "p.cue"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(diff.String(), "-\t\t\tref:  \"r.example/a:1\" // moves\n+\t\t\tname:   \"a\"\n+\t\t\tref:    \"r.example/a:1\" // moves\n+\t\t\tdigest: ") {
		t.Errorf("diff:\n%s", diff.String())
	}

	inst = load(t, "bootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [for n in [\"a\", \"b\"] {name: n, ref: \"r.example/\\(n):1\"}]\n}\n")
	pins = Missing(inst)
	if err := Resolve(pins, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(inst, pins); err == nil || !strings.Contains(err.Error(), "pin them by hand") {
		t.Errorf("comprehension: err = %v", err)
	}
}
