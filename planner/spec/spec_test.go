package spec

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRealSpecs(t *testing.T) {
	insts, diags, err := Load(context.Background(), []string{"../../specs/..."}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diags) != 0 {
		t.Fatalf("the real specs must vet with no errors or warnings:\n%v", diags)
	}
	if len(insts) != 2 {
		t.Fatalf("got %d specs, want 2 (airgap, aoc)", len(insts))
	}
	pack := insts[0].Spec.BootstrapPack
	if pack == nil || pack.Name != "bootstrap-pack-v1" {
		t.Fatalf("specs/airgap: bootstrap pack %+v", pack)
	}
	if want := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC); !pack.SourceDateEpoch.Time.Equal(want) {
		t.Errorf("sourceDateEpoch = %v, want %v", pack.SourceDateEpoch.Time, want)
	}
	if pack.Compression.Algorithm != "gzip" || pack.Compression.Level != 1 {
		t.Errorf("compression defaults not filled in: %+v", pack.Compression)
	}
	if len(pack.Images) != 3 || len(pack.Charts) != 2 || len(pack.Signatures) != 2 || len(pack.Bundles) != 2 {
		t.Errorf("pack contents: %d images, %d charts, %d signatures, %d bundles", len(pack.Images), len(pack.Charts), len(pack.Signatures), len(pack.Bundles))
	}
	rel := insts[1].Spec.Release
	if rel == nil || rel.Runner.Name != "aoc-backfill-runner" || rel.Dataset == nil || rel.OfflineKit == nil {
		t.Fatalf("specs/aoc: release %+v", rel)
	}
	if rel.OfflineKit.Checksums != "SHA256SUMS" || rel.OfflineKit.VerifyScript != "verify.sh" {
		t.Errorf("offline kit defaults: %+v", rel.OfflineKit)
	}
	if rel.Runner.Files[0].Mode != 0o755 || rel.Runner.Files[2].Mode != 0o644 {
		t.Errorf("file modes: %o %o", rel.Runner.Files[0].Mode, rel.Runner.Files[2].Mode)
	}
	if !filepath.IsAbs(insts[0].Dir) || filepath.Base(insts[0].Dir) != "airgap" {
		t.Errorf("Dir = %q, want the absolute spec directory", insts[0].Dir)
	}
}

// TestCanonicalJSON: the evaluated spec's bytes, and so its digest, depend
// on what the spec says, not how it is written.
func TestCanonicalJSON(t *testing.T) {
	a := `package x
bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [{name: "web", ref: "r.example/web@sha256:1111111111111111111111111111111111111111111111111111111111111111"}]
}
`
	b := `// the same spec, fields reordered, defaults spelled out, a definition added
package y

#img: {ref: "r.example/web@sha256:1111111111111111111111111111111111111111111111111111111111111111", ...}
bootstrapPack: images: [#img & {name: "web"}]
bootstrapPack: {name: "bootstrap-pack-v1", compression: level: 1, sourceDateEpoch: "2025-01-01T00:00:00Z"}
`
	ia, da, _ := Parse(context.Background(), "a.cue", []byte(a), "")
	ib, db, _ := Parse(context.Background(), "b.cue", []byte(b), "")
	if da.HasErrors() || db.HasErrors() {
		t.Fatalf("diags: %v / %v", da, db)
	}
	if !bytes.Equal(ia.JSON(), ib.JSON()) || ia.Digest != ib.Digest {
		t.Fatalf("same spec, different bytes:\n%s\n%s", ia.JSON(), ib.JSON())
	}
	if !bytes.HasSuffix(ia.JSON(), []byte("}\n")) || !bytes.Contains(ia.JSON(), []byte("\n  \"bootstrapPack\": {\n    \"name\"")) {
		t.Errorf("not two-space indented with a trailing newline:\n%s", ia.JSON())
	}
	var round Spec
	if err := json.Unmarshal(ia.JSON(), &round); err != nil {
		t.Fatalf("evaluated JSON does not decode: %v", err)
	}
}

func TestUnixSecondsTimestamp(t *testing.T) {
	in, diags, _ := Parse(context.Background(), "t.cue", []byte("bootstrapPack: sourceDateEpoch: 1735689600\n"), "")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ts := in.Spec.BootstrapPack.SourceDateEpoch
	if !ts.Time.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("time = %v", ts.Time)
	}
	if !bytes.Contains(in.JSON(), []byte(`"sourceDateEpoch": 1735689600`)) {
		t.Errorf("the timestamp must print back as written:\n%s", in.JSON())
	}
}

func TestWarnings(t *testing.T) {
	src := `package w
bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [{name: "web", ref: "r.example/web:1.0"}, {name: "db", ref: "r.example/db"}]
	charts: [{name: "c", path: "charts/c"}, {name: "r", repository: "https://charts.example", version: "^1.2"}, {name: "n", repository: "https://charts.example"}]
}
`
	in, diags, err := Parse(context.Background(), "w.cue", []byte(src), "/specs")
	if err != nil || in == nil {
		t.Fatalf("Parse: %v %v", err, diags)
	}
	want := []string{
		`w.cue:4:25: warning: bootstrapPack.images[0].ref: "r.example/web:1.0" is a tag without a pinned digest; a moved tag changes the build`,
		`w.cue:4:65: warning: bootstrapPack.images[1].ref: "r.example/db" has no tag or digest; it resolves ":latest", which moves`,
		`w.cue:5:11: warning: bootstrapPack.charts[0]: chart "c" has no pinned version; the version in its Chart.yaml is used as found`,
		`w.cue:5:92: warning: bootstrapPack.charts[1].version: "^1.2" is a range; the newest version in it is used (bale pin writes it)`,
		`w.cue:5:110: warning: bootstrapPack.charts[2]: chart "n" has no pinned version; the newest in the repository is used (bale pin writes it)`,
	}
	var got []string
	for _, d := range diags {
		got = append(got, d.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n got: %q\nwant: %q", got, want)
	}
	if in.Dir != "/specs" {
		t.Errorf("Dir = %q", in.Dir)
	}
}

func TestLoadArgs(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"testdata/nope"}, "load spec testdata/nope: stat"},
		{[]string{"spec.go"}, "not a .cue file or a directory"},
		{[]string{"spec.go/..."}, "not a directory"},
		{[]string{"."}, "no .cue files in directory"},
	}
	for _, tt := range tests {
		_, _, err := Load(context.Background(), tt.args, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Load(%v) error = %v, want it to contain %q", tt.args, err, tt.wantErr)
		}
	}
	// testdata is skipped by "...", so the bad specs do not leak into a
	// recursive load of this package's directory.
	if _, _, err := Load(context.Background(), []string{"./..."}, Options{}); err == nil || !strings.Contains(err.Error(), "no .cue files found") {
		t.Errorf("./... here must skip testdata: %v", err)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Load(ctx, []string{"../../specs/..."}, Options{}); err == nil {
		t.Fatal("Load with a cancelled context succeeded")
	}
}

// FuzzParse: no input makes loading panic or hang, and a spec that loads
// evaluates to the same bytes twice.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../../specs/*/*.cue", "testdata/bad/*.cue"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 1<<16 {
			return
		}
		in, diags, err := Parse(context.Background(), "fuzz.cue", src, "")
		if err != nil {
			t.Fatalf("Parse returned an error rather than diagnostics: %v", err)
		}
		if in == nil {
			if !diags.HasErrors() {
				t.Fatal("no instance and no error diagnostic")
			}
			return
		}
		again, _, _ := Parse(context.Background(), "fuzz.cue", src, "")
		if again == nil || !bytes.Equal(in.JSON(), again.JSON()) {
			t.Fatal("the same spec evaluated to different bytes")
		}
	})
}

// BenchmarkLoadRealSpecs is bale vet specs/... in-process.
func BenchmarkLoadRealSpecs(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		insts, diags, err := Load(context.Background(), []string{"../../specs/..."}, Options{})
		if err != nil || diags.HasErrors() || len(insts) != 2 {
			b.Fatalf("%v %v %d", err, diags, len(insts))
		}
	}
}

func TestDirectoryNeedsPackage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.cue"), []byte("bootstrapPack: sourceDateEpoch: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, diags, err := Load(context.Background(), []string{dir}, Options{})
	if err != nil || len(diags) != 1 || !strings.Contains(diags[0].Message, "need a package clause") {
		t.Errorf("err %v, diags %v", err, diags)
	}
	insts, diags, _ := Load(context.Background(), []string{filepath.Join(dir, "a.cue")}, Options{})
	if len(insts) != 1 || diags.HasErrors() {
		t.Errorf("a single file needs no package clause: %v", diags)
	}
}

// TestShortRefsNormalized: a Docker Hub short reference and its full form
// are one spec: the same decoded reference, the same spec digest. Tags are
// the pack's names as written.
func TestShortRefsNormalized(t *testing.T) {
	const d = "sha256:1349ce72c65098f07ef79be4d6089445426b9ef3eeedb2c0bf24dcc00a39f866"
	short := `bootstrapPack: {sourceDateEpoch: 0, images: [{name: "a", ref: "alpine:3.19", digest: "` + d + `", tags: ["alpine:3.19", "r.example/a:1"]}]}` + "\n"
	full := `bootstrapPack: {sourceDateEpoch: 0, images: [{name: "a", ref: "index.docker.io/library/alpine:3.19", digest: "` + d + `", tags: ["alpine:3.19", "r.example/a:1"]}]}` + "\n"
	a, da, _ := Parse(context.Background(), "a.cue", []byte(short), "")
	b, db, _ := Parse(context.Background(), "b.cue", []byte(full), "")
	if a == nil || b == nil {
		t.Fatalf("parse: %v %v", da, db)
	}
	img := a.Spec.BootstrapPack.Images[0]
	if img.Ref != "index.docker.io/library/alpine:3.19" || img.Tags[0] != "alpine:3.19" || img.Tags[1] != "r.example/a:1" {
		t.Errorf("decoded %+v", img)
	}
	if a.Digest != b.Digest {
		t.Errorf("short and full spellings differ in spec digest: %s %s", a.Digest, b.Digest)
	}
}
