package testrepo

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// CopyTrees copies the trees tops (relative to the repository at root)
// into dst at the same relative paths, bytes and file modes kept: a
// workspace a test may change (mtimes, an added file) without touching
// the repository, or build at another path. Anything but regular files
// and directories is refused.
func CopyTrees(root, dst string, tops ...string) error {
	for _, top := range tops {
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
			switch {
			case d.IsDir():
				return os.MkdirAll(target, info.Mode().Perm()|0o700)
			case !info.Mode().IsRegular():
				return fmt.Errorf("%s is not a regular file", rel)
			}
			return copyFile(p, target, info.Mode().Perm())
		})
		if err != nil {
			return fmt.Errorf("copy %s: %w", top, err)
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
