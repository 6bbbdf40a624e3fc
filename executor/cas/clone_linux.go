package cas

import (
	"os"

	"golang.org/x/sys/unix"
)

// clone makes dst, an empty file, a copy-on-write clone of src (FICLONE:
// btrfs, XFS, bcachefs, overlayfs over them). It reports false, leaving dst
// untouched, where the file system or the pair of files does not allow it.
func clone(dst, src *os.File) bool {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}
