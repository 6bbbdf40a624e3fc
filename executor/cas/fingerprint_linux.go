package cas

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// fileStat is what a stamp records of a blob file: which file it is, its
// size, and when its data and its inode last changed.
type fileStat struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func statOf(fi fs.FileInfo) (fileStat, bool) {
	if fi == nil || !fi.Mode().IsRegular() {
		return fileStat{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStat{}, false
	}
	return fileStat{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, true
}

// sameContent reports whether a and b are one file with the same size and
// modification time: no write landed between the two looks, although the
// inode itself may have changed (a chmod or rename moves only the change
// time).
func (a fileStat) sameContent(b fileStat) bool {
	return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime == b.mtime
}

// String is the stamp's text.
func (a fileStat) String() string {
	return fmt.Sprintf("dev=%d ino=%d size=%d mtime=%d.%09d ctime=%d.%09d\n",
		a.dev, a.ino, a.size, a.mtime.Sec, a.mtime.Nsec, a.ctime.Sec, a.ctime.Nsec)
}

// fingerprintOf returns path's identity and times as text.
func fingerprintOf(path string) (string, bool) {
	st, ok := lstatOf(path)
	if !ok {
		return "", false
	}
	return st.String(), true
}

func lstatOf(path string) (fileStat, bool) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileStat{}, false
	}
	return statOf(fi)
}
