package diff

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/bale-build/bale/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// dg makes a distinct, realistic-looking digest from n.
func dg(n int) string { return plan.ID([]byte(fmt.Sprint(n))) }

func image(name, ref string, digest int, plats map[string]int) plan.Input {
	img := &plan.Image{Tags: []string{ref}, Index: len(plats) > 1}
	for _, p := range slices.Sorted(maps.Keys(plats)) {
		img.Manifests = append(img.Manifests, plan.Manifest{Platform: p, Digest: dg(plats[p]), Size: 500, MediaType: "application/vnd.oci.image.manifest.v1+json",
			Config: plan.Blob{Digest: dg(plats[p] + 1000), Size: 100}})
		img.Platforms = append(img.Platforms, p)
	}
	return plan.Input{Kind: plan.KindImage, Name: name, Source: plan.Source{Type: plan.SourceRegistry, Ref: ref}, Digest: dg(digest), Size: 1000, Image: img}
}

func build(inputs ...plan.Input) *plan.Plan {
	p := &plan.Plan{
		FormatVersion:   plan.FormatVersion,
		Spec:            plan.SpecRef{Digest: dg(1)},
		SourceDateEpoch: "2025-01-01T00:00:00Z",
		Builder:         plan.Builder{Tar: "bale-tar/1", Compressor: "github.com/klauspost/compress@v1.20.3"},
		Targets:         []plan.Target{{Kind: "bootstrapPack", Name: "p", Compression: plan.Compression{Algorithm: "gzip", Level: 1}, Artifacts: []string{"p.tar"}}},
		Inputs:          inputs,
	}
	plan.SortInputs(p.Inputs)
	var keys []string
	for _, in := range p.Inputs {
		// The top manifest and every config, as pack.ImageEntries lists
		// them: a config two plans share is the same blob.
		outs := []string{"p.tar:images/blobs/sha256/" + strings.TrimPrefix(in.Digest, "sha256:")}
		for _, m := range in.Image.Manifests {
			outs = append(outs, "p.tar:images/blobs/sha256/"+strings.TrimPrefix(m.Config.Digest, "sha256:"))
		}
		s := plan.Step{Action: "image", Inputs: []string{in.Key()}, Outputs: outs}
		s.ID = plan.StepID(s)
		p.Steps = append(p.Steps, s)
		keys = append(keys, in.Key())
	}
	s := plan.Step{Action: "oci-layout", Inputs: keys, Outputs: []string{"p.tar:images/index.json", "p.tar:images/oci-layout"}}
	s.ID = plan.StepID(s)
	p.Steps = append(p.Steps, s)
	return p
}

func id(t *testing.T, p *plan.Plan) string {
	t.Helper()
	b, err := plan.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return plan.ID(b)
}

func TestPlans(t *testing.T) {
	base := func() *plan.Plan {
		return build(
			image("web", "r.example/web:1", 10, map[string]int{"linux/amd64": 11}),
			image("agent", "r.example/agent:2", 20, map[string]int{"linux/amd64": 21, "linux/arm64/v8": 22}),
		)
	}
	tests := []struct {
		name  string
		edit  func(p *plan.Plan)
		check func(t *testing.T, r *Report)
	}{
		{"same", func(*plan.Plan) {}, func(t *testing.T, r *Report) {
			if !r.Empty() || !r.Same {
				t.Errorf("identical plans reported changes: %+v", r)
			}
		}},
		{"Go toolchain changed", func(p *plan.Plan) { p.Builder.Go = "go1.27.0" }, func(t *testing.T, r *Report) {
			if len(r.Builder) != 1 || r.Builder[0] != (FieldChange{"go", "", "go1.27.0"}) {
				t.Errorf("builder = %+v", r.Builder)
			}
		}},
		{"tag moved, one platform", func(p *plan.Plan) {
			p.Inputs[0] = image("agent", "r.example/agent:2", 30, map[string]int{"linux/amd64": 21, "linux/arm64/v8": 32})
			*p = *build(p.Inputs...)
		}, func(t *testing.T, r *Report) {
			if len(r.Repinned) != 1 || r.Repinned[0].Key != "image/agent" || r.Repinned[0].Old != dg(20) || r.Repinned[0].New != dg(30) {
				t.Fatalf("repinned = %+v", r.Repinned)
			}
			pc := r.Repinned[0].Platforms
			if len(pc) != 1 || pc[0].Platform != "linux/arm64/v8" || pc[0].Old != dg(22) || pc[0].New != dg(32) {
				t.Errorf("platforms = %+v", pc)
			}
			if len(r.StepsAdded) != 1 || len(r.StepsRemoved) != 1 {
				t.Errorf("steps +%d -%d", len(r.StepsAdded), len(r.StepsRemoved))
			}
			// By content: the moved index and the new platform's config
			// are added, the old ones removed, index.json changes; the
			// unchanged amd64 config and the constant oci-layout do not
			// show.
			want := []Output{
				{Path: "p.tar:images/blobs/sha256/" + strings.TrimPrefix(dg(1022), "sha256:"), Change: Removed, Old: dg(1022)},
				{Path: "p.tar:images/blobs/sha256/" + strings.TrimPrefix(dg(1032), "sha256:"), Change: Added, New: dg(1032)},
				{Path: "p.tar:images/blobs/sha256/" + strings.TrimPrefix(dg(20), "sha256:"), Change: Removed, Old: dg(20)},
				{Path: "p.tar:images/blobs/sha256/" + strings.TrimPrefix(dg(30), "sha256:"), Change: Added, New: dg(30)},
			}
			sort.Slice(want, func(i, j int) bool { return want[i].Path < want[j].Path })
			got := r.Outputs
			if len(got) != len(want)+1 || got[len(got)-1].Path != "p.tar:images/index.json" || got[len(got)-1].Change != Changed ||
				!strings.HasPrefix(got[len(got)-1].Old, "recipe:sha256:") {
				t.Fatalf("outputs = %+v", got)
			}
			for i, w := range want {
				if got[i] != w {
					t.Errorf("outputs[%d] = %+v, want %+v", i, got[i], w)
				}
			}
		}},
		{"single-platform image re-pinned", func(p *plan.Plan) {
			p.Inputs[1] = image("web", "r.example/web:1", 12, map[string]int{"linux/amd64": 13})
			*p = *build(p.Inputs...)
		}, func(t *testing.T, r *Report) {
			if len(r.Repinned) != 1 || len(r.Repinned[0].Platforms) != 0 {
				t.Errorf("repinned %+v: a single manifest's platform line only repeats the input's", r.Repinned)
			}
		}},
		{"added and removed", func(p *plan.Plan) {
			*p = *build(p.Inputs[0], image("db", "r.example/db:3", 40, map[string]int{"linux/amd64": 41}))
		}, func(t *testing.T, r *Report) {
			if len(r.Added) != 1 || r.Added[0].Key != "image/db" || len(r.Removed) != 1 || r.Removed[0].Key != "image/web" {
				t.Errorf("added %+v removed %+v", r.Added, r.Removed)
			}
		}},
		{"source changed, same digest", func(p *plan.Plan) {
			p.Inputs[1].Source.Ref = "mirror.example/web:1"
		}, func(t *testing.T, r *Report) {
			if len(r.SourceChanged) != 1 || r.SourceChanged[0].New != "registry mirror.example/web:1" || len(r.Repinned) != 0 {
				t.Errorf("sourceChanged %+v repinned %+v", r.SourceChanged, r.Repinned)
			}
		}},
		{"timestamp, builder, target", func(p *plan.Plan) {
			p.SourceDateEpoch = "2025-02-01T00:00:00Z"
			p.Builder.Compressor = "github.com/klauspost/compress@v1.21.0"
			p.Targets[0].Compression.Level = 9
		}, func(t *testing.T, r *Report) {
			if r.SourceDateEpoch == nil || r.SourceDateEpoch.New != "2025-02-01T00:00:00Z" {
				t.Errorf("sourceDateEpoch %+v", r.SourceDateEpoch)
			}
			if len(r.Builder) != 1 || r.Builder[0].Field != "compressor" {
				t.Errorf("builder %+v", r.Builder)
			}
			if len(r.Targets) != 1 || !strings.Contains(r.Targets[0].New, "level 9") {
				t.Errorf("targets %+v", r.Targets)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.edit(b)
			r := Plans("old.json", "new.json", id(t, a), id(t, b), a, b)
			tt.check(t, r)
			var buf bytes.Buffer
			if err := r.JSON(&buf); err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.FormatVersion != FormatVersion {
				t.Errorf("JSON does not round-trip: %v", err)
			}
		})
	}
}

// TestRender pins the text, Markdown and JSON renderings in golden files.
func TestRender(t *testing.T) {
	a := build(
		image("web", "r.example/web:1", 10, map[string]int{"linux/amd64": 11}),
		image("agent", "r.example/agent:2", 20, map[string]int{"linux/amd64": 21, "linux/arm64/v8": 22}),
	)
	b := build(
		image("agent", "r.example/agent:2", 30, map[string]int{"linux/amd64": 21, "linux/arm64/v8": 32}),
		image("db", "r.example/db:3", 40, map[string]int{"linux/amd64": 41}),
	)
	b.SourceDateEpoch = "2025-02-01T00:00:00Z"
	r := Plans("old.json", "new.json", id(t, a), id(t, b), a, b)
	for _, f := range []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{"diff.txt", func(w *bytes.Buffer) error { return r.Text(w, false) }},
		{"diff-colour.txt", func(w *bytes.Buffer) error { return r.Text(w, true) }},
		{"diff.md", func(w *bytes.Buffer) error { return r.Markdown(w) }},
		{"diff.json", func(w *bytes.Buffer) error { return r.JSON(w) }},
	} {
		var buf bytes.Buffer
		if err := f.render(&buf); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", f.name)
		if *update {
			if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./planner/diff -update)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s differs from the golden file (go test ./planner/diff -update):\n%s", f.name, buf.Bytes())
		}
	}
	if bytes.Contains([]byte(mustText(t, r, false)), []byte("\x1b[")) {
		t.Error("plain text output has colour escapes")
	}
}

func mustText(t *testing.T, r *Report, colour bool) string {
	var buf bytes.Buffer
	if err := r.Text(&buf, colour); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// BigPlans makes two plans of n inputs each, a tenth of them re-pinned.
func BigPlans(n int) (*plan.Plan, *plan.Plan) {
	var a, b []plan.Input
	for i := 0; i < n; i++ {
		in := image(fmt.Sprintf("img-%05d", i), fmt.Sprintf("r.example/app%d:1", i), i*10, map[string]int{"linux/amd64": i*10 + 1})
		a = append(a, in)
		if i%10 == 0 {
			in = image(in.Name, in.Source.Ref, i*10+5, map[string]int{"linux/amd64": i*10 + 6})
		}
		b = append(b, in)
	}
	return build(a...), build(b...)
}

func BenchmarkDiff10000(b *testing.B) {
	pa, pb := BigPlans(10000)
	ba, _ := plan.Marshal(pa)
	bb, _ := plan.Marshal(pb)
	b.SetBytes(int64(len(ba) + len(bb)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Decode (with full validation) and diff, as bale diff does.
		x, err := plan.Decode(bytes.NewReader(ba))
		if err != nil {
			b.Fatal(err)
		}
		y, err := plan.Decode(bytes.NewReader(bb))
		if err != nil {
			b.Fatal(err)
		}
		r := Plans("a", "b", plan.ID(ba), plan.ID(bb), x, y)
		if len(r.Repinned) != 1000 {
			b.Fatalf("repinned %d", len(r.Repinned))
		}
		if err := r.Text(&bytes.Buffer{}, false); err != nil {
			b.Fatal(err)
		}
	}
}
