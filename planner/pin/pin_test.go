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

// applyOne resolves pins from p and applies them to inst, whose one file
// they edit; it returns that edit.
func applyOne(t *testing.T, inst *spec.Instance, pins []Pin, p *plan.Plan) Edit {
	t.Helper()
	if err := Resolve(pins, p); err != nil {
		t.Fatal(err)
	}
	edits, err := Apply(inst, pins)
	if err != nil || len(edits) != 1 {
		t.Fatalf("apply: %v %v", edits, err)
	}
	return edits[0]
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
	edit := applyOne(t, inst, pins, p)
	got := string(edit.New)
	for _, want := range []string{"\t\t\tref:    \"r.example/a:1\" // moves\n\t\t\tdigest: \"" + d + "\"\n", `{name: "b", ref: "r.example/b:1", digest: "` + d + `"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("edit lacks %q:\n%s", want, got)
		}
	}
	var diff bytes.Buffer
	if err := edit.Diff(&diff, "p.cue"); err != nil {
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

// TestUpdate: --update lists the digests a source can move (not an image
// named by digest in its ref), by name when names are given (an image and
// a chart may share one), replaces each in place, and leaves the spec it
// was given as it was: only the copy it returns for planning lacks them.
func TestUpdate(t *testing.T) {
	const (
		d1 = "sha256:1349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
		d2 = "sha256:2349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
		d3 = "sha256:3349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
	)
	inst := load(t, `bootstrapPack: {
	sourceDateEpoch: 0
	charts: [{name: "a", repository: "https://charts.example", version: "1.0.0", digest: "`+d1+`"}]
	images: [
		{name: "a", ref: "r.example/a:1", digest: "`+d1+`"},
		{name: "b", ref: "r.example/b@`+d2+`", digest: "`+d2+`"},
		{name: "c", ref: "r.example/c:1"},
	]
}
`)
	for _, tc := range []struct {
		names []string
		want  []string // pin paths
		err   string
	}{
		{nil, []string{"bootstrapPack.images[0].digest", "bootstrapPack.charts[0].digest"}, ""},
		{[]string{"a"}, []string{"bootstrapPack.images[0].digest", "bootstrapPack.charts[0].digest"}, ""},
		{[]string{"b", "c"}, nil, ""},
		{[]string{"a", "z", "y"}, nil, "no image or chart named y, z"},
	} {
		upd, pins, err := Update(inst, tc.names)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Update(%q): err %v, want %q", tc.names, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Update(%q): %v", tc.names, err)
		}
		var got []string
		for _, p := range pins {
			got = append(got, p.Path)
			if p.Pinned != d1 || p.After != "digest" {
				t.Errorf("Update(%q): pin %+v", tc.names, p)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Update(%q) = %q, want %q", tc.names, got, tc.want)
		}
		if inst.Spec.BootstrapPack.Images[0].Digest != d1 || inst.Spec.BootstrapPack.Charts[0].Digest != d1 {
			t.Fatalf("Update(%q) changed the spec it was given", tc.names)
		}
		if n := len(tc.want); n > 0 && (upd.Spec.BootstrapPack.Images[0].Digest != "" || upd.Spec.BootstrapPack.Charts[0].Digest != "" || upd.Spec.BootstrapPack.Images[1].Digest != d2) {
			t.Errorf("Update(%q): the copy to plan still pins %+v", tc.names, upd.Spec.BootstrapPack)
		}
	}

	_, pins, err := Update(inst, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{Inputs: []plan.Input{{Kind: plan.KindChart, Name: "a", Digest: d3, Chart: &plan.Chart{Version: "1.0.0"}}, {Kind: plan.KindImage, Name: "a", Digest: d3}}}
	got := string(applyOne(t, inst, pins, p).New)
	if strings.Count(got, d1) != 0 || strings.Count(got, d3) != 2 || strings.Count(got, d2) != 2 || strings.Count(got, "digest:") != 3 {
		t.Errorf("edit:\n%s", got)
	}
}
