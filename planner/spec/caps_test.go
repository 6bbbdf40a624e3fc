package spec

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/schemas"
)

// imagesSpec is a valid spec with n images written out, as a generator
// would write a large spec.
func imagesSpec(n int) string {
	var b strings.Builder
	b.WriteString("package big\n\nbootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n\timages: [\n")
	for i := range n {
		fmt.Fprintf(&b, "\t\t{name: \"img%d\", ref: \"registry.example/team/app%d:1.0\", digest: \"sha256:%064x\", platforms: [\"linux/amd64\"], tags: [\"team/app%d:1.0\"]},\n", i, i, i, i)
	}
	b.WriteString("\t]\n}\n")
	return b.String()
}

// TestCaps: a spec over a count cap gets one clear error, at the list, and
// quickly: the lists are counted before anything is checked. The
// comprehensions make lists far longer than their source.
func TestCaps(t *testing.T) {
	const head = "package big\n\nimport \"list\"\n\nbootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n"
	const dg = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	tests := []struct {
		name, body, want string
	}{
		{"images literal", strings.TrimPrefix(imagesSpec(10001), "package big\n"), "bootstrapPack.images: 10001 images; bale allows at most 10000 (#MaxImages in bale's schema)"},
		{"tags literal", head + "\timages: [{name: \"a\", ref: \"r.example/a:1\", tags: [" + strings.Repeat("\"r.example/a:1\", ", 65) + "]}]\n}\n", "bootstrapPack.images[0].tags: 65 tags; bale allows at most 64 (#MaxTags"},
		{"charts", head + "\tcharts: [for i in list.Range(0, 1001, 1) {name: \"c\\(i)\", path: \"c\"}]\n}\n", "bootstrapPack.charts: 1001 charts; bale allows at most 1000 (#MaxCharts"},
		{"signatures", head + "\tsignatures: [for i in list.Range(0, 1001, 1) {name: \"s\\(i)\", kind: \"tuf\", path: \"s\"}]\n}\n", "bootstrapPack.signatures: 1001 signature files; bale allows at most 1000"},
		{"bundles", head + "\tbundles: [for i in list.Range(0, 1001, 1) {name: \"b\\(i)\", kind: \"mirror\", digest: \"" + dg + "\", url: \"https://x.example/\\(i)\"}]\n}\n", "bootstrapPack.bundles: 1001 bundle references; bale allows at most 1000"},
		{"tags", head + "\timages: [{name: \"a\", ref: \"r.example/a:1\", tags: [for i in list.Range(0, 65, 1) {\"r.example/a:\\(i)\"}]}]\n}\n", "bootstrapPack.images[0].tags: 65 tags; bale allows at most 64 (#MaxTags"},
		{"platforms", head + "\timages: [{name: \"a\", ref: \"r.example/a:1\", platforms: [for i in list.Range(0, 65, 1) {\"linux/a\\(i)\"}]}]\n}\n", "bootstrapPack.images[0].platforms: 65 platforms; bale allows at most 64 (#MaxPlatforms"},
		{"files", "package big\n\nimport \"list\"\n\nrelease: {\n\tname: \"r\"\n\tsourceDateEpoch: 0\n\tsigning: key: \"k\"\n\trunner: {name: \"r\", version: \"1\", files: [for i in list.Range(0, 10001, 1) {path: \"f\", dest: \"f\\(i)\"}]}\n}\n",
			"release.runner.files: 10001 files; bale allows at most 10000 (#MaxFiles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			insts, diags, err := Parse(context.Background(), "big.cue", []byte(tt.body), t.TempDir())
			took := time.Since(start)
			if err != nil || insts != nil {
				t.Fatalf("Parse = %v, %v", insts, err)
			}
			if len(diags) != 1 || !strings.Contains(diags[0].String(), tt.want) || diags[0].Line == 0 {
				t.Errorf("diagnostics:\n%s\nwant one positioned error containing %q", diags.Error(), tt.want)
			}
			// Generous for a shared CI machine; checking 100,000 images
			// took over two minutes before the caps.
			if took > 20*time.Second {
				t.Errorf("refusing took %v", took)
			}
		})
	}
	// At the cap, the spec is fine.
	insts, diags, err := Parse(context.Background(), "big.cue", []byte(head+"\ttags: 1\n\timages: [{name: \"a\", ref: \"r.example/a:1\", digest: \""+dg+"\", tags: [for i in list.Range(0, 64, 1) {\"r.example/a:\\(i)\"}]}]\n}\n"), t.TempDir())
	if err != nil || insts != nil && len(insts.Spec.BootstrapPack.Images[0].Tags) != 64 {
		t.Fatalf("Parse at the cap: %v", err)
	}
	if !strings.Contains(diags.Error(), `unknown field "tags"`) || strings.Contains(diags.Error(), "bale allows") {
		t.Errorf("at the cap:\n%s", diags.Error())
	}
}

// TestSchemaRepoTagIsPlanGrammar: the schema and the plan decoder check
// tags with the same grammar, so a tag vet accepts is never refused by
// build, and the reverse.
func TestSchemaRepoTagIsPlanGrammar(t *testing.T) {
	want := `#RepoTag: =~#"^` + plan.RepositoryPattern + `:` + plan.TagPattern + `$"#`
	if !strings.Contains(schemas.Source, want) {
		t.Fatalf("schemas/bale.cue's #RepoTag is not\n%s", want)
	}
	for _, tag := range []string{
		"r.example/web:1", "localhost:5000/a/b__c:V1.0_x-y", "[::1]:5000/a:1", "Foo/bar:1", "r_x.example/web:1",
		"r.example/web:1\u202egpj.exe", "r.example/web:../../x", "../../x:1", "r.example/web", "r.example/Web:1",
		"r.example/web:.x", "-r.example:5000/web:1", "r.example//web:1", "r.example/web:" + strings.Repeat("a", 129),
	} {
		src := fmt.Sprintf("package x\nbootstrapPack: {sourceDateEpoch: 0, images: [{name: \"a\", ref: \"r.example/a@sha256:%064x\", tags: [%q]}]}\n", 1, tag)
		_, diags, err := Parse(context.Background(), "x.cue", []byte(src), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if schemaOK, planOK := !diags.HasErrors(), plan.ValidateRepoTag(tag) == nil; schemaOK != planOK {
			t.Errorf("tag %q: schema accepts %v, plan accepts %v\n%s", tag, schemaOK, planOK, diags.Error())
		}
	}
}

// BenchmarkVet checks a spec of 1,000 and of 10,000 images: time and
// memory per image must stay flat (vet is linear; 100,000 images once took
// 141 s and 2 GB).
func BenchmarkVet(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		src := []byte(imagesSpec(n))
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				insts, diags, err := Parse(context.Background(), "big.cue", src, b.TempDir())
				if err != nil || insts == nil {
					b.Fatalf("Parse: %v\n%s", err, diags.Error())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/image")
		})
	}
}
