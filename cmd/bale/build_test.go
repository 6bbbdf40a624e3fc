package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/executor/cas"
)

// TestBuildVerify is the README's main job through the CLI: build the real
// pack, build it again with nothing to do, verify it, and see verify fail
// on a damaged copy.
func TestBuildVerify(t *testing.T) {
	dir := t.TempDir()
	out, cache := filepath.Join(dir, "out"), filepath.Join(dir, "cache")
	stdout, errs, code := bale(t, "../..", "build", "specs/airgap", "-o", out, "--cache", cache, "--offline")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, errs)
	}
	golden, err := os.ReadFile("executor/testdata/airgap-pack.golden") // cwd: the repo root, set by bale()
	if err != nil {
		t.Fatal(err)
	}
	wantSum := strings.Fields(strings.Split(string(golden), "\n")[0])[1]
	wantRoot := strings.Fields(strings.Split(string(golden), "\n")[1])[1]
	for _, want := range []string{
		filepath.Join(out, "bootstrap-pack-v1.tar") + "\n",
		"  artifactSha256  " + wantSum + "\n",
		"  rootHash        " + wantRoot + "\n",
		"planId sha256:",
		"12 steps run, 0 cached",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("build output lacks %q:\n%s", want, stdout)
		}
	}
	pack, _ := os.ReadFile(filepath.Join(out, "bootstrap-pack-v1.tar"))
	if sum := sha256.Sum256(pack); hex.EncodeToString(sum[:]) != wantSum {
		t.Errorf("the file's sha256 is not the printed artifactSha256")
	}

	stdout, _, code = bale(t, "../..", "build", "specs/airgap", "-o", out, "--cache", cache, "--format", "json", "-q")
	var res buildOutput
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
		t.Fatalf("warm build --format json: exit %d\n%s", code, stdout)
	}
	if res.StepsRun != 0 || res.StepsCached != 12 || res.Artifacts[0].SHA256 != wantSum || res.Artifacts[0].RootHash != wantRoot ||
		res.ArtifactSha256 != wantSum || res.RootHash != wantRoot || res.Path != filepath.Join(out, "bootstrap-pack-v1.tar") || res.Size != int64(len(pack)) {
		t.Errorf("warm build: %+v", res)
	}

	stdout, errs, code = bale(t, "", "verify", filepath.Join(out, "bootstrap-pack-v1.tar"))
	if code != 0 || !strings.Contains(stdout, "ok  ") || !strings.Contains(stdout, wantRoot) {
		t.Errorf("verify: exit %d\n%s%s", code, stdout, errs)
	}

	// A damaged copy.
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(bad, 0o755)
	pack[len(pack)/2] ^= 0x20
	os.WriteFile(filepath.Join(bad, "bootstrap-pack-v1.tar"), pack, 0o644)
	stdout, errs, code = bale(t, "", "verify", filepath.Join(bad, "bootstrap-pack-v1.tar"), "--format", "json")
	if code != 1 || !strings.Contains(stdout, `"failures": [`) || strings.Contains(stdout, `"failures": []`) {
		t.Errorf("verify of a damaged pack: exit %d\n%s%s", code, stdout, errs)
	}
}

func TestBuildRefusals(t *testing.T) {
	dir := t.TempDir()
	// The golden plan, hand-edited: image airgap-controller's digest
	// swapped for toolbox's, every step id still valid.
	golden, err := os.ReadFile("../../planner/testdata/airgap.plan.json")
	if err != nil {
		t.Fatal(err)
	}
	const controller, toolbox = "sha256:9c265428e3f2b21d026aed94afaf3b5b423efd72a22b3f24b997570908ce07f3", "sha256:66188e1fd14228053a291019793199b1e695c919905b2e785f5955597007cd97"
	swapped := strings.Replace(string(golden), `"digest": "`+controller+`"`, `"digest": "`+toolbox+`"`, 1)
	if swapped == string(golden) {
		t.Fatal("the golden plan no longer pins the digest this test swaps")
	}
	if err := os.WriteFile(dir+"/swapped.json", []byte(swapped), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		// A release without a key and without the development key's
		// permission (the environment is cleared below).
		{[]string{"build", "specs/aoc", "-o", dir + "/o", "--cache", dir + "/c"}, "COSIGN_ALLOW_DEV_KEY=1"},
		{[]string{"build", "specs/airgap", "--plan", "x.json"}, "give a spec PATH or --plan, not both"},
		{[]string{"build", "--plan", dir + "/missing.json"}, "read plan"},
		{[]string{"build", "--plan", dir + "/swapped.json", "-o", dir + "/o", "--cache", dir + "/c"}, "(image/airgap-controller): digest " + toolbox},
		{[]string{"verify", dir + "/missing.tar"}, "missing.tar"},
	}
	t.Setenv("COSIGN_KEY", "")
	t.Setenv("COSIGN_ALLOW_DEV_KEY", "")
	for _, tt := range tests {
		_, errs, code := bale(t, "../..", tt.args...)
		if code != 1 || !strings.Contains(errs, tt.want) {
			t.Errorf("bale %v: exit %d, stderr %q, want %q", tt.args, code, errs, tt.want)
		}
	}
	if entries, _ := os.ReadDir(dir + "/o"); len(entries) != 0 {
		t.Errorf("a refused build left files: %v", entries)
	}
}

// writeWorkspace writes files (path → content) under a new temp workspace
// with a cue.mod, copies the named testdata/charts entries into it, and
// returns its root.
func writeWorkspace(t *testing.T, files map[string]string, charts ...string) string {
	t.Helper()
	ws := t.TempDir()
	files["cue.mod/module.cue"] = "module: \"example.com/ws\"\nlanguage: version: \"v0.12.0\"\n"
	for name, body := range files {
		p := filepath.Join(ws, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range charts {
		if err := os.CopyFS(filepath.Join(ws, c), os.DirFS(filepath.Join("../../testdata/charts", c))); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}

// TestBuildWithoutImages: a chart-only pack builds with an empty but valid
// OCI layout, verify accepts it, and tar lists the layout's files.
func TestBuildWithoutImages(t *testing.T) {
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tname: \"charts-only\"\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" +
			"\tcharts: [{name: \"airgap-controller\", path: \"../airgap-controller\", version: \"1.4.2\"}]\n}\n",
	}, "airgap-controller")
	_, errs, code := bale(t, ws, "build", "spec", "-o", "out", "--cache", "cache", "-q")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, errs)
	}
	tarball := filepath.Join(ws, "out", "charts-only.tar")
	stdout, errs, code := bale(t, ws, "verify", tarball)
	if code != 0 || !strings.Contains(stdout, "ok  ") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, errs)
	}
	list, err := exec.Command("tar", "-tzf", tarball).Output()
	if err != nil {
		t.Fatalf("tar -tzf: %v", err)
	}
	for _, want := range []string{"charts/airgap-controller-1.4.2.tgz", "images/oci-layout", "images/index.json", "images/manifest.json"} {
		if !strings.Contains("\n"+string(list), "\n"+want+"\n") {
			t.Errorf("tar -tzf lacks %s:\n%s", want, list)
		}
	}
	index, err := exec.Command("tar", "-xzOf", tarball, "images/index.json").Output()
	if err != nil || !strings.Contains(string(index), `"manifests": []`) {
		t.Errorf("images/index.json: %v\n%s", err, index)
	}
	manifest, err := exec.Command("tar", "-xzOf", tarball, "images/manifest.json").Output()
	if err != nil || strings.TrimSpace(string(manifest)) != "[]" {
		t.Errorf("images/manifest.json: %v\n%s", err, manifest)
	}
}

// TestProgressAfterRepair: a corrupt cache entry makes the build start
// over; progress starts over with it (never "[12/11]") and the summary
// counts the final attempt, summing to the plan's steps.
func TestProgressAfterRepair(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	stdout, errs, code := bale(t, "../..", "build", "specs/airgap", "-o", filepath.Join(dir, "out1"), "--cache", cache, "--offline", "--format", "json", "-q")
	var res buildOutput
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
		t.Fatalf("first build: exit %d\n%s%s", code, stdout, errs)
	}
	total := res.StepsRun + res.StepsCached
	// Damage a blob the pack is made from; a fresh output directory makes
	// the second build read it to make the pack again.
	store, err := cas.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(cache, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var h v1.Hash
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Size() > 200 && !strings.HasPrefix(e.Name(), ".") {
			h, _ = v1.NewHash("sha256:" + e.Name())
			break
		}
	}
	blob, err := os.ReadFile(store.Path(h))
	if err != nil {
		t.Fatal(err)
	}
	blob[100] ^= 0x40
	if err := os.WriteFile(store.Path(h), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, errs, code = bale(t, "../..", "build", "specs/airgap", "-o", filepath.Join(dir, "out2"), "--cache", cache, "--offline")
	if code != 0 {
		t.Fatalf("second build: exit %d\n%s", code, errs)
	}
	if !strings.Contains(errs, "cache entry corrupt") {
		t.Fatalf("the corrupt entry was not found:\n%s", errs)
	}
	lines := 0
	for _, l := range strings.Split(errs, "\n") {
		var n, of int
		if _, err := fmt.Sscanf(l, "[%d/%d]", &n, &of); err != nil {
			continue
		}
		lines++
		if of != total || n < 1 || n > total {
			t.Errorf("progress line past its total %d: %q", total, l)
		}
	}
	if lines <= total {
		t.Errorf("%d progress lines; want both attempts shown:\n%s", lines, errs)
	}
	var run, cached int
	for _, l := range strings.Split(stdout, "\n") {
		if m := regexp.MustCompile(`^(\d+) steps? run, (\d+) cached$`).FindStringSubmatch(l); m != nil {
			run, _ = strconv.Atoi(m[1])
			cached, _ = strconv.Atoi(m[2])
			break
		}
	}
	if run == 0 || run+cached != total {
		t.Errorf("summary %d run + %d cached, want %d in all:\n%s", run, cached, total, stdout)
	}
}

// TestPlanRootHint: the hint about a plan's workspace root comes with a
// missing input of a plan file, and only then, not with any "no such file"
// (an output directory under /proc).
func TestPlanRootHint(t *testing.T) {
	const hint = "a plan's local paths are relative to its workspace root"
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tname: \"charts-only\"\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n" +
			"\tcharts: [{name: \"airgap-controller\", path: \"../airgap-controller\", version: \"1.4.2\"}]\n}\n",
	}, "airgap-controller")
	if _, errs, code := bale(t, ws, "plan", "spec", "-o", "plan.json"); code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errs)
	}
	_, errs, code := bale(t, ws, "build", "--plan", "plan.json", "-o", "/proc/no-such-dir/out", "--cache", "cache", "-q")
	if code != 1 || strings.Contains(errs, hint) {
		t.Errorf("unwritable output: exit %d, want 1 without the hint:\n%s", code, errs)
	}
	if err := os.RemoveAll(filepath.Join(ws, "airgap-controller")); err != nil {
		t.Fatal(err)
	}
	_, errs, code = bale(t, ws, "build", "--plan", "plan.json", "-o", "out", "--cache", "cache2", "-q")
	if code != 1 || !strings.Contains(errs, hint) || !strings.Contains(errs, "airgap-controller") {
		t.Errorf("missing input: exit %d, want 1 with the hint:\n%s", code, errs)
	}
}

// TestUnwritableOutput: an output directory that cannot be created or
// written fails before any step runs, naming the directory.
func TestUnwritableOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, out string
	}{
		{"parent is a file", filepath.Join(file, "out")},
		{"read-only", ro},
		{"below a read-only directory", filepath.Join(ro, "out")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.out, ro) && os.Geteuid() == 0 {
				t.Skip("root writes to a read-only directory")
			}
			_, errs, code := bale(t, "../..", "build", "specs/airgap", "-o", tt.out, "--cache", filepath.Join(dir, "cache"), "--offline")
			if code != 1 || !strings.Contains(errs, "output directory "+tt.out) {
				t.Errorf("exit %d, want 1 naming the directory:\n%s", code, errs)
			}
			if strings.Contains(errs, "[1/") || strings.Contains(errs, "resolved") {
				t.Errorf("work was done before the refusal:\n%s", errs)
			}
			if _, err := os.Stat(filepath.Join(dir, "cache")); err == nil {
				t.Errorf("the cache was opened before the refusal")
			}
		})
	}
}
