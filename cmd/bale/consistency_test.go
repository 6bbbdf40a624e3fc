package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestArtifactSha256Name: build and verify call the pack's sha256 by one
// name, artifactSha256, with the same value.
func TestArtifactSha256Name(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tname: \"charts-only\"\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" +
			"\tcharts: [{name: \"airgap-controller\", path: \"../airgap-controller\", version: \"1.4.2\"}]\n}\n",
	}, "airgap-controller")
	out, errs, code := bale(t, ws, "build", "spec", "-o", "out", "--cache", "cache", "-q", "--format", "json")
	var b struct {
		ArtifactSha256 string `json:"artifactSha256"`
		Artifacts      []map[string]any
	}
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.ArtifactSha256 == "" {
		t.Fatalf("build --format json: exit %d\n%s%s", code, out, errs)
	}
	for _, a := range b.Artifacts {
		if _, ok := a["artifactSha256"]; !ok || a["sha256"] != nil {
			t.Errorf("build artifact %v: want artifactSha256, not sha256", a)
		}
	}
	out, errs, code = bale(t, ws, "verify", filepath.Join("out", "charts-only.tar"), "--format", "json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("verify --format json: exit %d\n%s%s", code, out, errs)
	}
	if v["artifactSha256"] != b.ArtifactSha256 || v["sha256"] != nil {
		t.Errorf("verify JSON %v: want artifactSha256 %s", v, b.ArtifactSha256)
	}
	// Exactly pack verify's keys: none of an offline kit's.
	if got, want := jsonKeys(t, out), "artifactSha256 checks entries failures path rootHash"; got != want {
		t.Errorf("verify JSON keys %q, want %q", got, want)
	}
}

// jsonKeys returns the sorted top-level keys of a JSON object.
func jsonKeys(t *testing.T, doc string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, " ")
}

// TestMuteLint: @bale(allow="unpinned") on a field mutes the "not pinned"
// warning for that input alone, so vet --strict and pin --check accept a
// spec whose author means a moving tag.
func TestMuteLint(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [\n" +
			"\t\t{name: \"a\", ref: \"r.example/a:nightly\" @bale(allow=\"unpinned\")},\n" +
			"\t\t{name: \"b\", ref: \"r.example/b:1\"},\n\t]\n}\n",
	})
	_, errs, code := bale(t, ws, "vet", "--strict", "spec")
	if code != 1 || strings.Contains(errs, "images[0]") || !strings.Contains(errs, "bootstrapPack.images[1].ref:") {
		t.Errorf("vet --strict: exit %d, want only images[1] refused\n%s", code, errs)
	}
	_, errs, code = bale(t, ws, "pin", "spec", "--check")
	if code != 1 || strings.Contains(errs, "images[0]") || !strings.Contains(errs, "bootstrapPack.images[1].digest: not pinned") {
		t.Errorf("pin --check: exit %d, want only images[1] listed\n%s", code, errs)
	}
}

// TestCompletion: bale completion writes shell scripts, and completing
// --format offers the values the flag takes.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out, errs, code := bale(t, "", "completion", sh); code != 0 || !strings.Contains(out, "bale") {
			t.Errorf("completion %s: exit %d\n%s", sh, code, errs)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "diff", "--format", ""}, "text\njson\nmarkdown\n:4\n"},
		{[]string{"__complete", "eval", "--format", ""}, "json\ncue\n:4\n"},
		{[]string{"__complete", "cache", "du", "--format", ""}, "text\njson\n:4\n"},
	} {
		if out, _, _ := bale(t, "", tt.args...); out != tt.want {
			t.Errorf("bale %v = %q, want %q", tt.args, out, tt.want)
		}
	}
}

// TestInit: bale init writes a starter spec that vets clean under --strict
// and builds, and never overwrites.
func TestInit(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{})
	out, errs, code := bale(t, ws, "init", "specs/mine", "--name", "mine-v1")
	if code != 0 || !strings.Contains(out, "wrote specs/mine/pack.cue") {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := bale(t, ws, "vet", "--strict", "specs/mine"); code != 0 || errs != "" {
		t.Errorf("vet --strict of the starter: exit %d\n%s", code, errs)
	}
	if _, errs, code := bale(t, ws, "build", "specs/mine", "-q", "-o", "out", "--cache", "cache"); code != 0 {
		t.Errorf("build of the starter: exit %d\n%s", code, errs)
	}
	if _, errs, code := bale(t, ws, "init", "specs/mine"); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("init over a spec: exit %d\n%s", code, errs)
	}
	if _, errs, code := bale(t, ws, "init", "x", "--name", "../evil"); code != 1 || !strings.Contains(errs, "--name") {
		t.Errorf("init --name ../evil: exit %d\n%s", code, errs)
	}
}
