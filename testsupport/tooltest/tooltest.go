// Package tooltest finds the real tools (tar, skopeo, crane, helm, …) that
// tests drive. A missing tool skips its test on a developer's machine; with
// BALE_REQUIRE_TOOLS=1 in the environment, as .ci/run sets, it fails the
// test instead, so CI cannot pass by skipping what it was meant to check.
//
// Every skip, and every cross-check left out for want of a tool, is also
// appended to the file $BALE_SKIPPED names, one line each, "REASON\tTEST":
// make test sets it and prints the summary Summarize writes, so a run
// that passed by skipping says so.
package tooltest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// EnvRequire is the environment variable that turns a missing tool from a
// skip into a failure when it is "1".
const EnvRequire = "BALE_REQUIRE_TOOLS"

// EnvSkipped names the file skips are recorded in (none when unset).
const EnvSkipped = "BALE_SKIPPED"

// Required reports whether missing tools fail tests (BALE_REQUIRE_TOOLS=1).
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Require returns the path of the tool name on PATH. When it is missing the
// test fails under BALE_REQUIRE_TOOLS=1 and is skipped otherwise.
func Require(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not on PATH", name)
	}
	return path
}

// Lookup returns the tool named by the environment variable env when it is
// set, else the first of names on PATH. When none is there the test fails
// under BALE_REQUIRE_TOOLS=1 and is skipped otherwise.
func Lookup(t testing.TB, env string, names ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Unavailable(t, "%s is not on PATH (or set %s)", strings.Join(names, " or "), env)
	return ""
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
		record(t, name+" is not on PATH (a cross-check left out)")
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
	record(t, fmt.Sprintf(format, args...))
	t.Skipf(format, args...)
}

// record appends "REASON\tTEST" to $BALE_SKIPPED, if set, in one write:
// the test binaries of a run append to the file at once.
func record(t testing.TB, reason string) {
	p := os.Getenv(EnvSkipped)
	if p == "" {
		return
	}
	line := strings.Join(strings.Fields(reason), " ") + "\t" + pkgDir() + t.Name() + "\n"
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Logf("record the skip in %s=%s: %v", EnvSkipped, p, err)
	}
}

// pkgDir is the directory of the test's package below the module root, as
// "inspect/" (a test runs in its package's directory), or "" if unknown.
func pkgDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			rel, err := filepath.Rel(d, wd)
			if err != nil || rel == "." {
				return ""
			}
			return filepath.ToSlash(rel) + "/"
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Summarize writes one line saying what the skips recorded in r (the
// $BALE_SKIPPED file of a run) left out and why, tests grouped by reason,
// or that nothing was.
func Summarize(w io.Writer, r io.Reader) error {
	byReason := map[string][]string{}
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		reason, test, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		if !slices.Contains(byReason[reason], test) {
			byReason[reason] = append(byReason[reason], test)
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the skipped tests: %w", err)
	}
	if n == 0 {
		_, err := fmt.Fprintln(w, "skipped: nothing for want of a tool")
		return err
	}
	var parts []string
	for reason, tests := range byReason {
		slices.Sort(tests)
		parts = append(parts, reason+": "+strings.Join(tests, ", "))
	}
	slices.Sort(parts)
	tests := "tests"
	if n == 1 {
		tests = "test"
	}
	_, err := fmt.Fprintf(w, "skipped: %d %s for want of a tool (the README lists them; %s=1 makes them fail): %s\n", n, tests, EnvRequire, strings.Join(parts, "; "))
	return err
}
