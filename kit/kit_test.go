package kit

import (
	"strings"
	"testing"

	"github.com/bale-build/bale/internal/sums"
)

func TestSumsFormat(t *testing.T) {
	t.Parallel()
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	got, err := MarshalSums([]sums.Sum{{Name: "z.txt", SHA256: a}, {Name: "B.txt", SHA256: b}})
	if err != nil {
		t.Fatal(err)
	}
	if want := b + "  B.txt\n" + a + "  z.txt\n"; string(got) != want {
		t.Fatalf("MarshalSums = %q, want %q", got, want)
	}
	for _, bad := range [][]sums.Sum{
		{{Name: "a b", SHA256: a}}, {{Name: "../x", SHA256: a}}, {{Name: ".hidden", SHA256: a}}, {{Name: "-n", SHA256: a}},
		{{Name: "x", SHA256: "A" + a[1:]}}, {{Name: "x", SHA256: a}, {Name: "x", SHA256: b}},
	} {
		if _, err := MarshalSums(bad); err == nil {
			t.Errorf("MarshalSums(%v) accepted", bad)
		}
	}
	for _, bad := range []string{"x", a + " x\n", a + "  b\n" + a + "  a\n", a + "  x", a + "  ../x\n", a + "  a b\n"} {
		if _, err := ParseSums([]byte(bad)); err == nil {
			t.Errorf("ParseSums(%q) accepted", bad)
		}
	}
}

// TestDatasetNameHash is the one dataset-hash rule the planner, the
// executor and the kit build call (issue 17 point 4).
func TestDatasetNameHash(t *testing.T) {
	t.Parallel()
	content := DatasetHash([]DatasetFile{{Path: "a", Size: 1, SHA256: strings.Repeat("1", 64)}})
	other := strings.Repeat("0", 64)
	for _, tt := range []struct {
		name, pinned string
		placeholders bool
		want, err    string
	}{
		{"none pinned", "", false, content, ""},
		{"pinned digest matches", content, false, content, ""},
		{"pinned digest differs", other, true, "", "the spec pins hash " + other + " but the files hash to " + content},
		{"placeholder allowed", "dev-rehearsal-placeholder", true, "dev-rehearsal-placeholder", ""},
		{"placeholder refused", "dev-rehearsal-placeholder", false, "", `placeholders are accepted only with the development key (COSIGN_ALLOW_DEV_KEY=1); a release pins the content hash: hash: "` + content + `"`},
		{"unsafe placeholder", "../x", true, "", "not a plain file name"},
	} {
		got, err := DatasetNameHash(tt.pinned, content, tt.placeholders)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.err)
		}
	}
}

// TestKindOf: every kit file has one kind, the one the CLI and the API
// both report (issue 17 point 1).
func TestKindOf(t *testing.T) {
	t.Parallel()
	m := &Manifest{Checksums: SumsName, ChecksumsSignature: SumsSignatureName, Archive: "k.tar.gz",
		Artifacts: []Artifact{{Name: "r.tar.gz", Kind: KindRunner}, {Name: PublicKeyName, Kind: KindPublicKey}, {Name: ScriptName, Kind: KindScript}}}
	for name, want := range map[string]string{
		"r.tar.gz": KindRunner, PublicKeyName: KindPublicKey, ScriptName: KindScript,
		ManifestName: KindKitManifest, SumsName: KindChecksums, SumsSignatureName: KindSignature,
		"k.tar.gz": KindKitArchive, "k.tar.gz.sha256": KindArchiveSHA256, "other": "",
	} {
		if got := m.KindOf(name); got != want {
			t.Errorf("KindOf(%s) = %q, want %q", name, got, want)
		}
	}
	seen := map[string]bool{}
	for _, k := range Kinds() {
		if seen[k] {
			t.Errorf("Kinds lists %s twice", k)
		}
		seen[k] = true
	}
	for _, k := range []string{KindKitManifest, KindChecksums, KindKitArchive, KindArchiveSHA256, KindSignature} {
		if !seen[k] {
			t.Errorf("Kinds does not list %s", k)
		}
	}
}
