package provenance

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	d1 = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	d2 = "2222222222222222222222222222222222222222222222222222222222222222"
	d3 = "3333333333333333333333333333333333333333333333333333333333333333"
)

func input() Input {
	return Input{
		Subjects:   []Subject{{Name: "aoc-dataset-abc.tar.gz", Digest: Digest{SHA256: d1}}},
		SpecDigest: "sha256:" + d2,
		PlanID:     "sha256:" + d3,
		Target:     "aoc-backfill-release",
		Dependencies: []Dependency{
			{Name: "observations.ndjson", URI: "file:testdata/aoc/dataset/observations.ndjson", Digest: Digest{SHA256: d3}},
			{Name: "advisories.ndjson", URI: "file:testdata/aoc/dataset/advisories.ndjson", Digest: Digest{SHA256: d2}},
		},
		BuilderVersion: map[string]string{"go": "go1.26.8", "bale": "v0.0.0-test"},
		Time:           time.Date(2025, 1, 1, 2, 0, 0, 0, time.FixedZone("CET", 3600)),
	}
}

func TestMarshalGolden(t *testing.T) {
	got, err := Marshal(input())
	if err != nil {
		t.Fatal(err)
	}
	// Input order must not matter.
	in := input()
	in.Dependencies[0], in.Dependencies[1] = in.Dependencies[1], in.Dependencies[0]
	again, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Fatalf("dependency order changes the statement:\n%s\n%s", got, again)
	}
	golden := filepath.Join("testdata", "statement.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("statement:\n%s\nwant (testdata, -update to rewrite):\n%s", got, want)
	}
	if !strings.Contains(string(got), `"startedOn":"2025-01-01T01:00:00Z","finishedOn":"2025-01-01T01:00:00Z"`) {
		t.Errorf("time fields are not the build timestamp in UTC: %s", got)
	}

	// cosign reads SLSA v1 provenance with in-toto-golang's types.
	var st in_toto.ProvenanceStatementSLSA1
	if err := json.Unmarshal(got, &st); err != nil {
		t.Fatalf("in-toto-golang cannot read the statement: %v", err)
	}
	if st.PredicateType != "https://slsa.dev/provenance/v1" || st.Type != "https://in-toto.io/Statement/v1" ||
		len(st.Predicate.BuildDefinition.ResolvedDependencies) != 2 ||
		st.Predicate.RunDetails.BuildMetadata.StartedOn == nil ||
		!st.Predicate.RunDetails.BuildMetadata.StartedOn.Equal(time.Date(2025, 1, 1, 1, 0, 0, 0, time.UTC)) ||
		st.Predicate.RunDetails.Builder.Version["bale"] != "v0.0.0-test" {
		t.Errorf("in-toto-golang reads %+v", st)
	}

	parsed, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := parsed.SubjectDigest("aoc-dataset-abc.tar.gz"); !ok || d != d1 {
		t.Errorf("SubjectDigest = %s, %t", d, ok)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"no subject", func(in *Input) { in.Subjects = nil }, "no subject"},
		{"no time", func(in *Input) { in.Time = time.Time{} }, "no build timestamp"},
		{"bad spec digest", func(in *Input) { in.SpecDigest = "sha256:ABC" }, "spec digest"},
		{"no plan id", func(in *Input) { in.PlanID = "" }, "no plan id"},
		{"uppercase subject digest", func(in *Input) { in.Subjects[0].Digest.SHA256 = strings.ToUpper(d1) }, `subject "aoc-dataset-abc.tar.gz": sha256`},
		{"dependency without digest", func(in *Input) { in.Dependencies[0].Digest.SHA256 = "" }, `dependency "observations.ndjson"`},
		{"duplicate dependency", func(in *Input) { in.Dependencies[1] = in.Dependencies[0] }, "twice"},
		{"duplicate subject", func(in *Input) { in.Subjects = append(in.Subjects, in.Subjects[0]) }, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input()
			tt.edit(&in)
			if _, err := New(in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	good, err := Marshal(input())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, from, to, want string }{
		{"wrong _type", StatementType, "https://in-toto.io/Statement/v0.1", "_type"},
		{"wrong predicateType", PredicateType, "https://slsa.dev/provenance/v0.2", "predicateType"},
		{"short subject digest", `"sha256":"` + d1 + `"`, `"sha256":"11"`, "sha256"},
		{"unknown field", `"_type"`, `"extra":1,"_type"`, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(string(good), tt.from, tt.to, 1)
			if bad == string(good) {
				t.Fatalf("%q not in the statement", tt.from)
			}
			if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v, want %q", err, tt.want)
			}
		})
	}
}
