package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestPlanAndDiff(t *testing.T) {
	dir := t.TempDir()
	p1 := filepath.Join(dir, "plan.json")
	out, errs, code := bale(t, "../..", "plan", "specs/airgap", "--offline", "-o", p1)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errs)
	}
	data, err := os.ReadFile(p1)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if !strings.HasPrefix(out, "sha256:"+hex.EncodeToString(sum[:])+"  "+p1+"\n") {
		t.Errorf("the printed plan id is not the file's sha256:\n%s", out)
	}

	// --format json carries the same id.
	out, _, code = bale(t, "../..", "plan", "specs/airgap", "--offline", "--format", "json")
	var s planSummary
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.PlanID != "sha256:"+hex.EncodeToString(sum[:]) || s.Inputs != 10 {
		t.Errorf("plan --format json: exit %d %+v\n%s", code, s, out)
	}

	// A plan and the spec it came from: no change, exit 0.
	out, errs, code = bale(t, "../..", "diff", p1, "specs/airgap", "--offline")
	if code != 0 || !strings.Contains(out, "no changes") {
		t.Errorf("diff plan spec: exit %d\n%s%s", code, out, errs)
	}

	// Another build timestamp: a change, exit 2, in every format.
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	p2 := filepath.Join(dir, "plan2.json")
	if _, errs, code := bale(t, "../..", "plan", "specs/airgap", "--offline", "-o", p2); code != 0 {
		t.Fatalf("plan: %s", errs)
	}
	for _, f := range []struct{ format, want string }{
		{"text", "build timestamp (1)\n  2025-01-01T00:00:00Z -> 2023-11-14T22:13:20Z"},
		{"markdown", "- Build timestamp: `2025-01-01T00:00:00Z` → `2023-11-14T22:13:20Z`"},
		{"json", `"new": "2023-11-14T22:13:20Z"`},
	} {
		out, errs, code := bale(t, "", "diff", p1, p2, "--format", f.format)
		if code != 2 || !strings.Contains(out, f.want) {
			t.Errorf("diff --format %s: exit %d, want 2 and %q\n%s%s", f.format, code, f.want, out, errs)
		}
	}

	// Errors exit 1: a missing file, a tampered plan.
	if _, errs, code := bale(t, "", "diff", p1, filepath.Join(dir, "nope.json")); code != 1 || !strings.Contains(errs, "nope.json") {
		t.Errorf("missing plan: exit %d %s", code, errs)
	}
	tampered := strings.Replace(string(data), `"level": "1"`, `"level": "9"`, 1)
	p3 := filepath.Join(dir, "tampered.json")
	os.WriteFile(p3, []byte(tampered), 0o644)
	if _, errs, code := bale(t, "", "diff", p1, p3); code != 1 || !strings.Contains(errs, "does not match its content") {
		t.Errorf("tampered plan: exit %d %s", code, errs)
	}
}

func TestPlanLockOffline(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock.json")
	if _, errs, code := bale(t, "../..", "plan", "specs/airgap", "--offline", "-o", lock); code != 0 {
		t.Fatal(errs)
	}
	again := filepath.Join(dir, "again.json")
	if _, errs, code := bale(t, "../..", "plan", "specs/airgap", "--offline", "--lock", lock, "-o", again); code != 0 {
		t.Fatal(errs)
	}
	a, _ := os.ReadFile(lock)
	b, _ := os.ReadFile(again)
	if string(a) != string(b) {
		t.Error("planning with the lock of an unchanged spec changed the plan")
	}
}

// TestDiffTagMoved: a tag moved in a registry (go-containerregistry's
// pkg/registry over httptest) between `bale plan` and `bale diff` shows as a
// re-pin, and diff exits 2.
func TestDiffTagMoved(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/web:1.0"
	dir := t.TempDir()
	spec := "package p\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [{name: \"web\", ref: \"" + ref + "\"}]\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "pack.cue"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	first := pushRandom(t, ref)
	if _, errs, code := bale(t, dir, "plan", ".", "-o", "old.json"); code != 0 {
		t.Fatalf("plan: %s", errs)
	}
	second := pushRandom(t, ref)
	out, errs, code := bale(t, dir, "diff", "old.json", ".")
	if code != 2 {
		t.Fatalf("diff after a tag move: exit %d, want 2\n%s%s", code, out, errs)
	}
	for _, want := range []string{"inputs re-pinned (1)", "~ image/web registry " + ref, first + " -> " + second,
		// Outputs by content: the moved manifest is a new blob, the old
		// one is gone, index.json changes; the constant oci-layout and
		// the single platform (named by the input line) do not show.
		"\n  + bootstrap-pack-v1.tar:images/blobs/sha256/" + strings.TrimPrefix(second, "sha256:") + "\n",
		"\n  - bootstrap-pack-v1.tar:images/blobs/sha256/" + strings.TrimPrefix(first, "sha256:") + "\n",
		"\n  ~ bootstrap-pack-v1.tar:images/index.json  recipe sha256:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"oci-layout\n", "(single)", "single-platform"} {
		if strings.Contains(out, not) {
			t.Errorf("diff output shows %q:\n%s", not, out)
		}
	}
	out, _, code = bale(t, dir, "diff", "old.json", ".", "--format", "json")
	var r struct {
		FormatVersion int `json:"formatVersion"`
		Outputs       []struct{ Path, Change, Old, New string }
	}
	if code != 2 || json.Unmarshal([]byte(out), &r) != nil || r.FormatVersion != 2 || len(r.Outputs) == 0 {
		t.Errorf("diff --format json: exit %d\n%s", code, out)
	}
	for _, o := range r.Outputs {
		if o.Change == "+" && o.New != second && strings.HasSuffix(o.Path, strings.TrimPrefix(second, "sha256:")) {
			t.Errorf("added output %+v: want its digest %s", o, second)
		}
	}
	// The --help example, offline: the plan is the lock, the spec did not
	// change, so no change, and nothing fetched.
	srv.Close()
	out, errs, code = bale(t, dir, "diff", "old.json", ".", "--offline")
	if code != 0 || !strings.Contains(out, "no changes") {
		t.Errorf("diff old.json . --offline: exit %d, want 0\n%s%s", code, out, errs)
	}
}

// TestRootConfinesLoader checks that --root narrows what the CUE loader
// may read, not only the plan's paths: an embed through a link that stays
// inside the workspace but leaves --root is refused.
func TestRootConfinesLoader(t *testing.T) {
	ws := t.TempDir()
	for name, body := range map[string]string{
		"cue.mod/module.cue": "module: \"example.com/ws\"\nlanguage: version: \"v0.12.0\"\n",
		"other/name.json":    `"from-other"`,
		"spec/pack.cue": "@extern(embed)\npackage x\n\nbootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" +
			"\tbundles: [{name: _n, kind: \"evidence\", digest: \"sha256:" + strings.Repeat("1", 64) + "\", url: \"https://x.example/b\"}]\n}\n" +
			"_n: _ @embed(file=name.json)\n",
	} {
		p := filepath.Join(ws, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../other/name.json", filepath.Join(ws, "spec", "name.json")); err != nil {
		t.Fatal(err)
	}
	out, errs, code := bale(t, ws, "plan", "spec", "--offline")
	if code != 0 || !strings.Contains(out, "from-other") {
		t.Fatalf("default root: exit %d, want the embed read\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	_, errs, code = bale(t, ws, "plan", "spec", "--offline", "--root", "spec")
	if code != 1 || !strings.Contains(errs, "outside the workspace root") {
		t.Fatalf("--root spec: exit %d, want 1 naming the workspace rule\nstderr:\n%s", code, errs)
	}
}

// TestPlanOutputDash: -o - writes the plan to standard output, not to a
// file named "-"; build, which writes a directory, refuses it.
func TestPlanOutputDash(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tname: \"charts-only\"\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" +
			"\tcharts: [{name: \"airgap-controller\", path: \"../airgap-controller\", version: \"1.4.2\"}]\n}\n",
	}, "airgap-controller")
	dash, errs, code := bale(t, ws, "plan", "spec", "-o", "-")
	if code != 0 {
		t.Fatalf("plan -o -: exit %d\n%s", code, errs)
	}
	plain, _, _ := bale(t, ws, "plan", "spec")
	if dash != plain || !json.Valid([]byte(dash)) {
		t.Errorf("plan -o - differs from plan without -o:\n%s", dash)
	}
	if _, err := os.Stat(filepath.Join(ws, "-")); err == nil {
		t.Error(`plan -o - created a file named "-"`)
	}
	_, errs, code = bale(t, ws, "build", "spec", "-o", "-", "--cache", "cache")
	if code != 1 || !strings.Contains(errs, "-o -") {
		t.Errorf("build -o -: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(ws, "-")); err == nil {
		t.Error(`build -o - created a directory named "-"`)
	}
}

// TestSourceDateEpochNotice: when SOURCE_DATE_EPOCH overrides the spec's
// timestamp, plan and build say so on stderr, naming both values; when it
// agrees with the spec, or is unset, they say nothing.
func TestSourceDateEpochNotice(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tname: \"charts-only\"\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" +
			"\tcharts: [{name: \"airgap-controller\", path: \"../airgap-controller\", version: \"1.4.2\"}]\n}\n",
	}, "airgap-controller")
	tests := []struct {
		env    string
		notice bool
	}{
		{"", false},
		{"1735689600", false}, // the spec's own 2025-01-01T00:00:00Z
		{"1700000000", true},
	}
	for _, tt := range tests {
		t.Setenv("SOURCE_DATE_EPOCH", tt.env)
		for _, args := range [][]string{
			{"plan", "spec", "-o", "plan.json"},
			{"build", "spec", "-o", "out", "--cache", "cache", "-q"},
		} {
			_, errs, code := bale(t, ws, args...)
			if code != 0 {
				t.Fatalf("SOURCE_DATE_EPOCH=%q bale %v: exit %d\n%s", tt.env, args, code, errs)
			}
			got := strings.Contains(errs, "overrides the spec's sourceDateEpoch")
			if got != tt.notice {
				t.Errorf("SOURCE_DATE_EPOCH=%q bale %s: notice %v, want %v:\n%s", tt.env, args[0], got, tt.notice, errs)
			}
			if tt.notice && !strings.Contains(errs, "SOURCE_DATE_EPOCH=1700000000 overrides the spec's sourceDateEpoch 2025-01-01T00:00:00Z: building with 2023-11-14T22:13:20Z\n") {
				t.Errorf("bale %s: notice does not name both values:\n%s", args[0], errs)
			}
		}
	}
}

// TestSharedLayerCounts: two images on a loopback registry share a layer.
// The plan's "from sources" total counts the shared layer once (it counted
// it for each image), and plan, build and inspect write "1 chart", "1
// shared layer", not "1 charts".
func TestSharedLayerCounts(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	shared, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	var want int64 // every blob of both images, the shared layer once
	for _, n := range []string{"a", "b"} {
		own, err := random.Layer(1024, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(empty.Image, shared, own)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(host + "/team/" + n + ":1")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		ownSize, err := own.Size()
		if err != nil {
			t.Fatal(err)
		}
		want += int64(len(raw)+len(cfg)) + ownSize
	}
	size, err := shared.Size()
	if err != nil {
		t.Fatal(err)
	}
	want += size

	ws := writeWorkspace(t, map[string]string{"spec/pack.cue": `package x

bootstrapPack: {
	name:            "shared"
	sourceDateEpoch: 0
	charts: [{name: "airgap-controller", path: "../airgap-controller", version: "1.4.2"}]
	images: [{name: "a", ref: "` + host + `/team/a:1"}, {name: "b", ref: "` + host + `/team/b:1"}]
}
`}, "airgap-controller")
	out, errs, code := bale(t, ws, "plan", "spec", "-o", "plan.json")
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errs)
	}
	p, err := readPlan(filepath.Join(ws, "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	ch, ok := p.sp.Plan().Input("chart/airgap-controller")
	if !ok {
		t.Fatal("the plan has no chart input")
	}
	want += ch.Size
	if line := fmt.Sprintf("3 inputs, %s, %s from sources\n", count(len(p.sp.Plan().Steps), "step"), humanBytes(want)); !strings.HasSuffix(out, line) {
		t.Errorf("plan prints\n%s, want %q", out, line)
	}
	var sum planSummary
	out, _, _ = bale(t, ws, "plan", "spec", "--format", "json")
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Bytes != want {
		t.Errorf("plan --format json: bytes %d, want %d (%v)", sum.Bytes, want, err)
	}

	if _, errs, code := bale(t, ws, "build", "--plan", "plan.json", "-o", "out", "--cache", "cache", "-q"); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, errs)
	}
	out, errs, code = bale(t, ws, "inspect", "out/shared.tar")
	if code != 0 || !strings.Contains(out, "2 images (2 manifests, 3 layers, ") || !strings.Contains(out, "; 1 shared layer save "+humanBytes(size)+"), 1 chart (") || !strings.Contains(out, ", 0 signatures, 0 bundles\n") {
		t.Errorf("inspect: exit %d\n%s%s", code, out, errs)
	}
}

func TestCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n          int
		noun, want string
	}{
		{0, "chart", "0 charts"},
		{1, "chart", "1 chart"},
		{2, "shared layer", "2 shared layers"},
		{1, "entry", "1 entry"},
		{3, "entry", "3 entries"},
	} {
		if got := count(tc.n, tc.noun); got != tc.want {
			t.Errorf("count(%d, %q) = %q, want %q", tc.n, tc.noun, got, tc.want)
		}
	}
}
