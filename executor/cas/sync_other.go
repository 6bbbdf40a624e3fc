//go:build !linux

package cas

import (
	"os"

	"github.com/bale-build/bale/atomicfile"
)

// syncFiles makes the files at paths, all in dir, and dir's entries
// durable, one file at a time where the system has no syncfs(2).
func syncFiles(dir string, paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue // evicted meanwhile
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return atomicfile.SyncDir(dir)
}
