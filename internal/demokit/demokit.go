// Package demokit gives tests the repository's release workspace (the AOC
// release of specs/aoc over testdata/) and the golden form of an offline
// kit directory, for the tests of kit and of bale build and verify on
// releases.
package demokit

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Workspace copies the parts of the repository at root that the AOC
// release builds from (specs/aoc, testdata/aoc, testdata/keys) into dst,
// file modes kept: a workspace at another path, for builds that must not
// depend on where they run.
func Workspace(root, dst string) error {
	for _, top := range []string{"specs/aoc", "testdata/aoc", "testdata/keys"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			target := filepath.Join(dst, rel)
			info, err := d.Info()
			if err != nil {
				return err
			}
			if d.IsDir() {
				return os.MkdirAll(target, 0o755)
			}
			return copyFile(p, target, info.Mode().Perm())
		})
		if err != nil {
			return fmt.Errorf("demokit: copy %s: %w", top, err)
		}
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
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
