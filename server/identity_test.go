package server

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// identityWorkspace writes a workspace named wsName (a directory of its
// own, a .git in it) holding one spec in the directory specDir, with a
// local input beside it, and returns the spec's directory.
func identityWorkspace(t *testing.T, wsName, specDir, pkg string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), wsName)
	writeTree(t, root, map[string]string{
		".git/HEAD": "",
		specDir + "/pack.cue": "package " + pkg + `

bootstrapPack: {
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	signatures: [{name: "root.json", kind: "tuf", path: "root.json"}]
}
`,
		specDir + "/root.json": `{"signed":{"_type":"root"}}`,
	})
	dir := filepath.Join(root, filepath.FromSlash(specDir))
	return dir
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
// CLI and the API alike. The workspace's own place and name (a checkout
// anywhere, under any name) and the CUE package's name do not: one spec
// in two workspaces of different names, one with another package name,
// gives one plan and one pack, by bale build and by bale serve. The
// spec's directory within its workspace does (the plan records it, and
// its local inputs' paths, relative to the workspace root; the pack
// records the plan's id), as the README says: the same file in another
// directory of the workspace is another spec.
func TestSpecIdentity(t *testing.T) {
	t.Parallel()
	bin := buildBale(t)
	a := identityWorkspace(t, "checkout-one", "specs/pack", "pack")
	b := identityWorkspace(t, "another-clone-elsewhere", "specs/pack", "renamedpkg")
	planA, sumA := cliBuild(t, bin, a)
	planB, sumB := cliBuild(t, bin, b)
	if planA != planB || sumA != sumB {
		t.Fatalf("one spec in two workspaces by bale build: plans %s, %s; packs %s, %s", planA, planB, sumA, sumB)
	}
	for _, dir := range []string{a, b} {
		if plan, sum := apiBuild(t, dir); plan != planA || sum != sumA {
			t.Fatalf("%s through the API: plan %s, pack %s; bale build gives %s, %s", dir, plan, sum, planA, sumA)
		}
	}
	// The spec's directory within the workspace is part of its identity.
	c := identityWorkspace(t, "checkout-one", "specs/other", "pack")
	planC, sumC := cliBuild(t, bin, c)
	if planC == planA || sumC == sumA {
		t.Fatalf("the spec moved within its workspace kept its plan id %s: the README says the directory is part of its identity", planC)
	}
	if plan, sum := apiBuild(t, c); plan != planC || sum != sumC {
		t.Fatalf("%s through the API: plan %s, pack %s; bale build gives %s, %s", c, plan, sum, planC, sumC)
	}
}
