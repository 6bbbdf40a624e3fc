package publish

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bale-build/bale/atomicfile"
)

// stage is a directory beside a pull's output directory that the files
// are written into; publish renames it to the output directory, so a pull
// leaves all of its files or none.
type stage struct {
	dir, tmp string
	root     *os.Root
	done     bool
}

// newStage checks that dir is empty or absent and that need bytes fit in
// the free space of its file system, and makes the staging directory
// beside it.
func newStage(dir string, need int64) (*stage, error) {
	dir = filepath.Clean(dir)
	if err := emptyOrAbsent(dir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	if free, ok, err := freeSpace(parent); err != nil {
		return nil, fmt.Errorf("free space of %s: %w", parent, err)
	} else if ok && need > free {
		return nil, fmt.Errorf("the files need %d bytes, the file system of %s has %d free", need, parent, free)
	}
	tmp := filepath.Join(parent, "."+filepath.Base(dir)+".pull-"+rand.Text()[:8])
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &stage{dir: dir, tmp: tmp, root: root}, nil
}

// emptyOrAbsent refuses an output directory that holds something, or a
// path that is not a directory.
func emptyOrAbsent(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("output %s is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("output directory %s is not empty", dir)
	}
	return nil
}

// publish makes the staging directory the output directory: a rename,
// which replaces an empty directory and fails on one that filled up in
// the meantime.
func (s *stage) publish() error {
	s.root.Close()
	if err := emptyOrAbsent(s.dir); err != nil {
		return err
	}
	if err := os.Rename(s.tmp, s.dir); err != nil {
		return fmt.Errorf("move the pulled files into %s: %w", s.dir, err)
	}
	s.done = true
	return atomicfile.SyncDir(filepath.Dir(s.dir))
}

// abort removes the staging directory unless it was published.
func (s *stage) abort() {
	if !s.done {
		s.root.Close()
		os.RemoveAll(s.tmp)
	}
}
