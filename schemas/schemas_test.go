package schemas

import (
	"os"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
)

// TestSchemaCompiles: the embedded text is bale.cue as committed, it
// compiles, and it defines every definition specs and the loader use.
func TestSchemaCompiles(t *testing.T) {
	disk, err := os.ReadFile("bale.cue")
	if err != nil {
		t.Fatal(err)
	}
	if string(disk) != Source {
		t.Fatal("the embedded schema differs from bale.cue")
	}
	v := cuecontext.New().CompileString(Source, cue.Filename(Filename))
	if err := v.Err(); err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	for _, def := range []string{
		"#Spec", "#BootstrapPack", "#Release", "#RunnerBundle", "#DatasetBundle", "#OfflineKit",
		"#Image", "#Chart", "#File", "#SignatureFile", "#BundleRef", "#Signing", "#SBOM",
		"#Provenance", "#Compression", "#Name", "#Digest", "#Timestamp", "#Platform", "#Mode", "#RelPath",
	} {
		if d := v.LookupPath(cue.ParsePath(def)); !d.Exists() {
			t.Errorf("schema lacks %s", def)
		}
	}
	// Closed: an unknown field of #Spec is not allowed.
	if v.LookupPath(cue.ParsePath("#Spec")).Allows(cue.Str("bootstrapPackz")) {
		t.Error("#Spec is not closed")
	}
}

// TestConstraints checks the scalar definitions against values a spec may
// and may not hold.
func TestConstraints(t *testing.T) {
	ctx := cuecontext.New()
	v := ctx.CompileString(Source, cue.Filename(Filename))
	tests := []struct {
		def  string
		val  string
		want bool
	}{
		{"#Name", `"bootstrap-pack-v1"`, true},
		{"#Name", `"a+b_c.d"`, true},
		{"#Name", `"../x"`, false},
		{"#Name", `"a/b"`, false},
		{"#Name", `".hidden"`, false},
		{"#Name", `"a..b"`, false},
		{"#Digest", `"sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"`, true},
		{"#Digest", `"sha256:ABC"`, false},
		{"#Platform", `"linux/arm64/v8"`, true},
		{"#Platform", `"linux-amd64"`, false},
		{"#Mode", `0o755`, true},
		{"#Mode", `0o777`, false},
		{"#Timestamp", `"2025-01-01T00:00:00Z"`, true},
		{"#Timestamp", `1735689600`, true},
		{"#Timestamp", `"2025-13-01T00:00:00Z"`, false},
		{"#Timestamp", `-1`, false},
		{"#RelPath", `"bin/aoc-backfill"`, true},
		{"#RelPath", `"../etc/passwd"`, false},
		{"#RelPath", `"/etc/passwd"`, false},
		{"#RelPath", `"a//b"`, false},
	}
	for _, tt := range tests {
		got := v.LookupPath(cue.ParsePath(tt.def)).Unify(ctx.CompileString(tt.val)).Validate(cue.Concrete(true)) == nil
		if got != tt.want {
			t.Errorf("%s & %s valid = %v, want %v", tt.def, tt.val, got, tt.want)
		}
	}
}
