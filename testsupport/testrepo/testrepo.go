// Package testrepo gives tests the repository's own specs and fixtures:
// its root, copies of its trees as workspaces (the AOC release's, or any),
// and the golden form of an offline kit directory. It imports nothing of
// bale's, so the tests of every package may use it.
package testrepo

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Workspace copies the parts of the repository at root that the AOC
// release builds from (specs/aoc, testdata/aoc, testdata/keys) into dst,
// file modes kept: a workspace at another path, for builds that must not
// depend on where they run.
func Workspace(root, dst string) error {
	return CopyTrees(root, dst, "specs/aoc", "testdata/aoc", "testdata/keys")
}

// Digests lists every file of the kit directory dir with its sha256,
// sorted by name, as sha256sum prints them: the golden form the kit's
// golden files hold.
func Digests(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256(data), e.Name())
	}
	return b.String(), nil
}

// Root returns the repository's root: the nearest directory at or above
// the working directory (a test's package directory) holding go.mod and
// specs/.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "specs")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testrepo: no repository root (go.mod beside specs/) above the working directory")
		}
		dir = parent
	}
}
