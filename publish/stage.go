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

// stage is where a pull writes its files before they are published, all
// or nothing, into the output directory dir: for a dir that does not
// exist, a directory beside it, renamed to dir at the end; for an empty
// dir (a mount point, the current directory), a directory inside it, on
// the same file system, whose entries are moved up at the end.
type stage struct {
	dir, tmp string
	existed  bool
	root     *os.Root
	done     bool
}

// newStage checks that dir is empty or absent and that need bytes fit in
// the free space of the file system the files will land on, and makes
// the staging directory.
func newStage(dir string, need int64) (*stage, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &stage{dir: abs}
	if err := emptyOrAbsent(abs); err != nil {
		return nil, err
	}
	_, err = os.Stat(abs)
	s.existed = err == nil
	home := abs // where the staging directory goes
	if !s.existed {
		home = filepath.Dir(abs)
		if home == abs {
			return nil, fmt.Errorf("output %s: not a directory to pull into", dir)
		}
		if err := os.MkdirAll(home, 0o755); err != nil {
			return nil, err
		}
	}
	if free, ok, err := freeSpace(home); err != nil {
		return nil, fmt.Errorf("free space of %s: %w", home, err)
	} else if ok && need > free {
		return nil, fmt.Errorf("the files need %d bytes, the file system of %s has %d free", need, home, free)
	}
	s.tmp = filepath.Join(home, "."+filepath.Base(abs)+".pull-"+rand.Text()[:8])
	if s.existed {
		s.tmp = filepath.Join(home, ".pull-"+rand.Text()[:8])
	}
	if err := os.Mkdir(s.tmp, 0o755); err != nil {
		return nil, err
	}
	if s.root, err = os.OpenRoot(s.tmp); err != nil {
		os.RemoveAll(s.tmp)
		return nil, err
	}
	return s, nil
}

// emptyOrAbsent refuses an output that holds something, or that is not a
// directory. A staging directory of this pull is not counted.
func emptyOrAbsent(dir string) error {
	fi, err := os.Stat(dir)
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

// publish puts the staged files in place: one rename of the staging
// directory for a new dir; for an existing one, a rename of each staged
// entry, undone if one fails, so dir ends with all of them or none.
func (s *stage) publish() error {
	s.root.Close()
	if !s.existed {
		if _, err := os.Lstat(s.dir); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("output %s appeared while pulling", s.dir)
		}
		if err := os.Rename(s.tmp, s.dir); err != nil {
			return fmt.Errorf("move the pulled files to %s: %w", s.dir, err)
		}
		s.done = true
		return atomicfile.SyncDir(filepath.Dir(s.dir))
	}
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return err
	}
	var moved []string
	undo := func(err error) error {
		for _, name := range moved {
			os.Rename(filepath.Join(s.dir, name), filepath.Join(s.tmp, name))
		}
		return err
	}
	for _, e := range ents {
		to := filepath.Join(s.dir, e.Name())
		if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
			return undo(fmt.Errorf("output directory %s: %s appeared while pulling", s.dir, e.Name()))
		}
		if err := os.Rename(filepath.Join(s.tmp, e.Name()), to); err != nil {
			return undo(fmt.Errorf("move the pulled files into %s: %w", s.dir, err))
		}
		moved = append(moved, e.Name())
	}
	s.done = true
	os.Remove(s.tmp)
	return atomicfile.SyncDir(s.dir)
}

// abort removes the staging directory and what is in it, unless it was
// published.
func (s *stage) abort() {
	if !s.done {
		s.root.Close()
		os.RemoveAll(s.tmp)
	}
}
