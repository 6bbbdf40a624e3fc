package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is bale's module path.
const module = "github.com/bale-build/bale"

// floors is the layering of bale's packages, lowest first: a package may
// import packages on its own floor or below, never above. Data flows one
// way (spec → planner → plan → executor → artifact, the server on top), and
// formats more than one stage reads are low, so every stage can share them.
// A package missing from the table fails the test: place it.
var floors = [][]string{
	// 0. leaf rules: each a small package named for its one concept.
	{"internal/ctxio", "internal/strictjson", "internal/canonjson", "internal/capread", "internal/digest", "internal/sums", "atomicfile", "schemas", "gobuild"},
	// 1. formats: archives, packs, plans, signatures, SBOMs, provenance, kits.
	{"archive", "pack", "plan", "sign", "sbom", "provenance", "kit", "internal/fixtures"},
	// 2. readers and stores: specs, input sources, offline checks, the
	// content store, the kit builder.
	{"planner/spec", "source", "verify", "inspect", "executor/cas", "kit/assemble"},
	// 3. planning, building and the far side.
	{"planner", "planner/diff", "planner/pin", "executor", "push", "publish"},
	// 4. the export API.
	{"server/auth", "server"},
	// 5. the CLI.
	{"cmd/bale"},
}

// testSupport packages hold test harnesses: only tests import them, and
// they may import anything.
const testSupport = "testsupport/"

// TestFloors holds the import graph to the floors: no package imports one
// above it, no production package imports a test harness, kit does not
// import verify, the planner links no sigstore package and the bale binary
// no testing package.
func TestFloors(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	golist := func(args ...string) []string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"list"}, args...)...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		return lines
	}
	floor := map[string]int{}
	for i, f := range floors {
		for _, p := range f {
			floor[p] = i
		}
	}
	rel := func(p string) (string, bool) {
		if p == module {
			return "", true
		}
		return strings.CutPrefix(p, module+"/")
	}
	for _, line := range golist("-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...") {
		fields := strings.Fields(line)
		pkg, _ := rel(fields[0])
		if strings.HasPrefix(pkg, testSupport) || strings.HasPrefix(pkg, "testdata/") || strings.Contains(pkg, "/testdata/") {
			continue
		}
		own, ok := floor[pkg]
		if !ok {
			t.Errorf("package %s has no floor: place it in floors", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ok := rel(imp)
			if !ok {
				continue
			}
			if strings.HasPrefix(dep, testSupport) {
				t.Errorf("%s imports the test harness %s", pkg, dep)
				continue
			}
			if f, ok := floor[dep]; ok && f > own {
				t.Errorf("%s (floor %d) imports %s, a floor above it (%d)", pkg, own, dep, f)
			}
		}
	}

	deps := func(pkg string) []string { return golist("-deps", "./"+pkg) }
	if slices.Contains(deps("kit"), module+"/verify") {
		t.Error("kit imports verify")
	}
	for _, d := range deps("planner") {
		if strings.Contains(d, "sigstore") {
			t.Errorf("the planner links %s", d)
		}
	}
	if slices.Contains(deps("cmd/bale"), "testing") {
		t.Error("the bale binary links package testing")
	}
}
