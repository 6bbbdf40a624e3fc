package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPin: bale pin writes the digest of an image named by tag (resolved
// from a loopback registry) and the version of a local chart into the CUE
// source, keeping its comments, prints a diff, and afterwards --check,
// vet --strict, plan --strict and build --strict accept the spec, which
// they refused before.
func TestPin(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/web:1.0"
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	src := `package x

// The pack of the web team.
bootstrapPack: {
	sourceDateEpoch: 0
	charts: [{
		name: "airgap-controller"
		path: "../airgap-controller" // vendored
	}]
	images: [
		// The web front end.
		{name: "web", ref: "` + ref + `"},
	]
}
`
	ws := writeWorkspace(t, map[string]string{"spec/pack.cue": src}, "airgap-controller")
	file := filepath.Join(ws, "spec", "pack.cue")

	_, errs, code := bale(t, ws, "pin", "spec", "--check")
	if code != 1 || !strings.Contains(errs, "spec/pack.cue:12:17: bootstrapPack.images[0].digest: not pinned (image/web)") ||
		!strings.Contains(errs, "spec/pack.cue:8:3: bootstrapPack.charts[0].version: not pinned (chart/airgap-controller)") {
		t.Fatalf("pin --check before: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"plan", "spec", "--strict"}, {"build", "spec", "--strict", "-q", "-o", "out", "--cache", "cache"}} {
		if _, errs, code := bale(t, ws, args...); code != 1 || !strings.Contains(errs, "tag without a pinned digest") {
			t.Errorf("bale %v before pinning: exit %d, want 1\n%s", args, code, errs)
		}
	}

	out, errs, code := bale(t, ws, "pin", "spec", "--dry-run")
	if code != 0 || !strings.Contains(out, "+\t\tversion: \"1.4.2\"\n") {
		t.Fatalf("pin --dry-run: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(file); string(b) != src {
		t.Fatal("pin --dry-run wrote the spec")
	}

	out, errs, code = bale(t, ws, "pin", "spec")
	if code != 0 {
		t.Fatalf("pin: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"--- spec/pack.cue\n+++ spec/pack.cue\n@@ ", "+\t\tversion: \"1.4.2\"\n", `+		{name: "web", ref: "` + ref + `", digest: "` + d.String() + `"},`} {
		if !strings.Contains(out, want) {
			t.Errorf("pin diff lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"// The pack of the web team.\n", "// vendored\n", "// The web front end.\n", `digest: "` + d.String() + `"`, `version: "1.4.2"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pinned spec lacks %q:\n%s", want, b)
		}
	}
	if _, errs, code := bale(t, ws, "pin", "spec", "--check"); code != 0 {
		t.Errorf("pin --check after: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"vet", "--strict", "spec"}, {"plan", "spec", "--strict", "-o", "plan.json"}, {"build", "spec", "--strict", "-q", "-o", "out", "--cache", "cache"}} {
		if _, errs, code := bale(t, ws, args...); code != 0 {
			t.Errorf("bale %v after pinning: exit %d\n%s", args, code, errs)
		}
	}
	// Pinning a pinned spec changes nothing.
	out, _, code = bale(t, ws, "pin", "spec")
	if b2, _ := os.ReadFile(file); code != 0 || string(b2) != string(b) || !strings.Contains(out, "nothing to write") {
		t.Errorf("pin of a pinned spec: exit %d\n%s", code, out)
	}
}
