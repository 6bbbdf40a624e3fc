package tooltest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const missing = "bale-no-such-tool-on-path"

// TestMissingTool runs this test binary again with and without
// BALE_REQUIRE_TOOLS=1 and a test that requires a tool no machine has:
// it must be skipped without, and fail with.
func TestMissingTool(t *testing.T) {
	if os.Getenv("BALE_TOOLTEST_CHILD") == "1" {
		Require(t, missing)
		t.Fatal("Require returned for a missing tool")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		require  string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestMissingTool"},
		{"0", false, "--- SKIP: TestMissingTool"},
		{"1", true, "--- FAIL: TestMissingTool"},
	} {
		cmd := exec.Command(exe, "-test.run=^TestMissingTool$", "-test.v")
		cmd.Env = append(os.Environ(), "BALE_TOOLTEST_CHILD=1", EnvRequire+"="+tc.require)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.wantFail || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), missing) {
			t.Errorf("%s=%q: err %v, want failure %t and %q in:\n%s", EnvRequire, tc.require, err, tc.wantFail, tc.want, out)
		}
	}
}

func TestFind(t *testing.T) {
	t.Setenv(EnvRequire, "")
	if p, ok := Find(t, missing); ok || p != "" {
		t.Errorf("Find(%s) = %q, %t", missing, p, ok)
	}
	if p, ok := Find(t, "sh"); !ok || p == "" {
		t.Errorf("Find(sh) = %q, %t", p, ok)
	}
}
