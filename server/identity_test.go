package server

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// identityWorkspace writes a workspace named wsName (a directory of its
// own, a .git in it) holding one spec in the directory specDir, and
// returns the spec's directory. Its one local input, root.json, lies
// beside the spec, or in the workspace's shared/ directory when shared.
func identityWorkspace(t *testing.T, wsName, specDir, pkg string, shared bool) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), wsName)
	input, inputPath := specDir+"/root.json", "root.json"
	if shared {
		input = "shared/root.json"
		inputPath = strings.Repeat("../", strings.Count(specDir, "/")+1) + input
	}
	writeTree(t, root, map[string]string{
		".git/HEAD": "",
		specDir + "/pack.cue": "package " + pkg + `

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	signatures: [{name: "root.json", kind: "tuf", path: "` + inputPath + `"}]
}
`,
		input: `{"signed":{"_type":"root"}}`,
	})
	return filepath.Join(root, filepath.FromSlash(specDir))
}

// cliBuild builds dir with bale build and returns its plan id and
// artifactSha256.
func cliBuild(t *testing.T, bin, dir string) (planID, sum string) {
	t.Helper()
	out, err := exec.Command(bin, "build", dir, "-o", t.TempDir(), "--cache", t.TempDir(), "--format", "json", "-q").Output()
	if err != nil {
		t.Fatalf("bale build %s: %v", dir, err)
	}
	var r struct {
		PlanID         string `json:"planId"`
		ArtifactSha256 string `json:"artifactSha256"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.ArtifactSha256 == "" {
		t.Fatalf("bale build %s: %v %s", dir, err, out)
	}
	return r.PlanID, r.ArtifactSha256
}

// apiBuild serves dir and exports it through the API, returning the
// export's plan id and artifactSha256.
func apiBuild(t *testing.T, dir string) (planID, sum string) {
	t.Helper()
	h := startServer(t, "", func(c *Config) { c.Specs = []string{dir} })
	st := h.wait(h.export(h.post("rw", `{"spec":"`+filepath.Base(dir)+`"}`)).ExportID)
	if st.Status != statusSucceeded {
		t.Fatalf("export of %s: %s %s", dir, st.Status, st.Reason)
	}
	return st.PlanID, st.ArtifactSha256
}

// TestSpecIdentity: what of a spec reaches its plan and pack, through the
// CLI and the API alike. Where the spec's files sit does not: the
// workspace's place and name (a checkout anywhere, under any name), the
// CUE package's name and the spec's directory's name within the
// workspace give one plan and one pack, by bale build and by bale serve
// (a spec at another depth names its inputs by other relative paths, so
// its text, and digest, differ). Its local
// inputs' paths, relative to the workspace root, do: an input moved with
// the spec gives another plan, as the README says.
func TestSpecIdentity(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	a := identityWorkspace(t, "checkout-one", "specs/pack", "pack", true)
	b := identityWorkspace(t, "another-clone-elsewhere", "specs/pack", "renamedpkg", true)
	c := identityWorkspace(t, "checkout-one", "specs/other-name", "pack", true)
	planA, sumA := cliBuild(t, bin, a)
	for _, dir := range []string{b, c} {
		if plan, sum := cliBuild(t, bin, dir); plan != planA || sum != sumA {
			t.Fatalf("one spec at %s by bale build: plan %s, pack %s; at %s: %s, %s", dir, plan, sum, a, planA, sumA)
		}
	}
	for _, dir := range []string{a, c} {
		if plan, sum := apiBuild(t, dir); plan != planA || sum != sumA {
			t.Fatalf("%s through the API: plan %s, pack %s; bale build gives %s, %s", dir, plan, sum, planA, sumA)
		}
	}
	// A local input that moves with the spec is another source.
	e := identityWorkspace(t, "checkout-one", "specs/pack", "pack", false)
	planE, sumE := cliBuild(t, bin, e)
	if planE == planA || sumE == sumA {
		t.Fatalf("a spec whose input moved kept its plan id %s: the README says the input's path is part of the plan", planE)
	}
	if plan, sum := apiBuild(t, e); plan != planE || sum != sumE {
		t.Fatalf("%s through the API: plan %s, pack %s; bale build gives %s, %s", e, plan, sum, planE, sumE)
	}
}
