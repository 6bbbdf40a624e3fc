//go:build unix

package source

import (
	"io/fs"
	"syscall"
)

// nlink returns the hard link count of fi, or 1 if unknown.
func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
