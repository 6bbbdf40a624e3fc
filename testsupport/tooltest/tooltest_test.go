package tooltest

import (
	"os"
	"os/exec"
	"path/filepath"
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
		recorded string // the line in $BALE_SKIPPED
	}{
		{"", false, "--- SKIP: TestMissingTool", missing + " is not on PATH\ttestsupport/tooltest/TestMissingTool\n"},
		{"0", false, "--- SKIP: TestMissingTool", missing + " is not on PATH\ttestsupport/tooltest/TestMissingTool\n"},
		{"1", true, "--- FAIL: TestMissingTool", ""},
	} {
		skipped := filepath.Join(t.TempDir(), "skipped")
		cmd := exec.Command(exe, "-test.run=^TestMissingTool$", "-test.v")
		cmd.Env = append(os.Environ(), "BALE_TOOLTEST_CHILD=1", EnvRequire+"="+tc.require, EnvSkipped+"="+skipped)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.wantFail || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), missing) {
			t.Errorf("%s=%q: err %v, want failure %t and %q in:\n%s", EnvRequire, tc.require, err, tc.wantFail, tc.want, out)
		}
		if b, _ := os.ReadFile(skipped); string(b) != tc.recorded {
			t.Errorf("%s=%q: %s holds %q, want %q", EnvRequire, tc.require, EnvSkipped, b, tc.recorded)
		}
	}
}

// TestSummarize: one line, tests grouped by reason and sorted, a test
// recorded twice counted once, a line without a tab ignored.
func TestSummarize(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		{"", "skipped: nothing for want of a tool\n"},
		{"syft is not on PATH (or set BALE_SYFT)\tcmd/bale/TestReleaseSBOMAgainstSyft\n",
			"skipped: 1 test for want of a tool (the README lists them; BALE_REQUIRE_TOOLS=1 makes them fail): syft is not on PATH (or set BALE_SYFT): cmd/bale/TestReleaseSBOMAgainstSyft\n"},
		{"postgres: initdb not found\tserver/TestB\ncrane is not on PATH (a cross-check left out)\texecutor/TestX\npostgres: initdb not found\tserver/TestA\npostgres: initdb not found\tserver/TestA\nnot a record\n",
			"skipped: 3 tests for want of a tool (the README lists them; BALE_REQUIRE_TOOLS=1 makes them fail): crane is not on PATH (a cross-check left out): executor/TestX; postgres: initdb not found: server/TestA, server/TestB\n"},
	} {
		var b strings.Builder
		if err := Summarize(&b, strings.NewReader(tc.log)); err != nil || b.String() != tc.want {
			t.Errorf("Summarize(%q) = %q, %v; want %q", tc.log, b.String(), err, tc.want)
		}
	}
}

func TestFind(t *testing.T) {
	t.Setenv(EnvRequire, "")
	t.Setenv(EnvSkipped, "") // the missing tool is this test's own
	if p, ok := Find(t, missing); ok || p != "" {
		t.Errorf("Find(%s) = %q, %t", missing, p, ok)
	}
	if p, ok := Find(t, "sh"); !ok || p == "" {
		t.Errorf("Find(sh) = %q, %t", p, ok)
	}
}
