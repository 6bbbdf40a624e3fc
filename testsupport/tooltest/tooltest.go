// Package tooltest finds the real tools (tar, skopeo, crane, helm, …) that
// tests drive. A missing tool skips its test on a developer's machine; with
// BALE_REQUIRE_TOOLS=1 in the environment, as .ci/run sets, it fails the
// test instead, so CI cannot pass by skipping what it was meant to check.
package tooltest

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// EnvRequire is the environment variable that turns a missing tool from a
// skip into a failure when it is "1".
const EnvRequire = "BALE_REQUIRE_TOOLS"

// Required reports whether missing tools fail tests (BALE_REQUIRE_TOOLS=1).
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Require returns the path of the tool name on PATH. When it is missing the
// test fails under BALE_REQUIRE_TOOLS=1 and is skipped otherwise.
func Require(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not on PATH: %v", name, err)
	}
	return path
}

// Find returns the path of the tool name for an optional cross-check
// within a larger test, and false when it is missing and not required
// (the caller then logs what it checked without it). Under
// BALE_REQUIRE_TOOLS=1 a missing tool fails the test.
func Find(t testing.TB, name string) (string, bool) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if Required() {
			t.Fatalf("%s is required (%s=1) but not on PATH: %v", name, EnvRequire, err)
		}
		return "", false
	}
	return path, true
}

// RequireGNUTar returns the path of GNU tar, which tests use to list and
// write archives the way users' tools do; another tar counts as missing.
func RequireGNUTar(t testing.TB) string {
	t.Helper()
	path := Require(t, "tar")
	if v, err := exec.Command(path, "--version").Output(); err != nil || !bytes.Contains(v, []byte("GNU tar")) {
		Unavailable(t, "%s is not GNU tar (%v)", path, err)
	}
	return path
}

// Unavailable ends the test for a tool it cannot use: a failure under
// BALE_REQUIRE_TOOLS=1, a skip otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("required tool ("+EnvRequire+"=1): "+format, args...)
	}
	t.Skipf(format, args...)
}
