// Package atomicfile writes files that appear under their final name only
// when complete and durable: a reader, a concurrent writer or a crash never
// leaves a partial file there.
//
// Data goes to a temporary file in the destination directory (so the final
// rename stays within one file system and is atomic); Commit syncs it,
// renames it into place and syncs the directory so the rename survives a
// power loss.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Mode is the permission of every committed file, set explicitly so the
// process umask does not change it.
const Mode os.FileMode = 0o644

// File is a file being written. It is not safe for concurrent use.
type File struct {
	f    *os.File
	path string // final name
	done bool   // committed or aborted
}

// Create starts a file that Commit will put at path. The temporary file is
// named ".NAME.tmp-RANDOM" in the same directory, so it is hidden from
// ordinary listings and tells what it was for if a crash leaves it behind.
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("create atomic file %s: not a file name", path)
	}
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create atomic file %s: %w", path, err)
	}
	// Held until the file is closed, by the kernel for as long as this
	// process lives: RemoveStale tells a live writer's file from a dead
	// one's by it.
	if err := lockFile(f); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("create atomic file %s: lock: %w", path, err)
	}
	return &File{f: f, path: path}, nil
}

// WriteFile writes data to path as Create, Write and Commit do: the file
// appears under path only complete and durable, with Mode, replacing any
// file there. Errors name path.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write atomic file %s: %w", path, err)
	}
	return f.Commit()
}

// Stat returns the temporary file's current status, for callers that
// compare it with the committed file (see package cas).
func (f *File) Stat() (os.FileInfo, error) {
	if f.done {
		return nil, fmt.Errorf("stat atomic file %s: %w", f.path, os.ErrClosed)
	}
	return f.f.Stat()
}

// OSFile returns the temporary file itself, for writers that need a file
// descriptor (copy_file_range, FICLONE) or read back what they wrote. Do
// not close it; Commit and Abort do.
func (f *File) OSFile() *os.File { return f.f }

// IsTemp reports whether name (a base name) is one Create gives its
// temporary files.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// RemoveStale removes the temporary files a killed or crashed writer left
// in dir: names for which isTemp reports true (IsTemp when nil), last
// modified before now-olderThan, and not locked by a live writer (Create
// locks its file for as long as it is open). A live writer's file is never
// removed, however old. It returns how many files and bytes it removed.
func RemoveStale(dir string, olderThan time.Duration, isTemp func(string) bool) (int, int64, error) {
	if isTemp == nil {
		isTemp = IsTemp
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("remove stale files in %s: %w", dir, err)
	}
	cutoff := time.Now().Add(-olderThan)
	var n int
	var bytes int64
	var errs []error
	for _, de := range des {
		if !de.Type().IsRegular() || !isTemp(de.Name()) {
			continue
		}
		path := filepath.Join(dir, de.Name())
		size, ok, err := removeIfStale(path, cutoff)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			n++
			bytes += size
		}
	}
	if err := errors.Join(errs...); err != nil {
		return n, bytes, fmt.Errorf("remove stale files in %s: %w", dir, err)
	}
	return n, bytes, nil
}

// removeIfStale removes path if it is older than cutoff and its lock is
// free, holding the lock while it removes it so a writer cannot start in
// between.
func removeIfStale(path string, cutoff time.Time) (int64, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(cutoff) {
		return 0, false, err
	}
	locked, err := tryLock(f)
	if err != nil || !locked {
		return 0, false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, false, err
	}
	return fi.Size(), true, nil
}

// Name returns the final path the file will have once committed.
func (f *File) Name() string { return f.path }

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("write atomic file %s: %w", f.path, os.ErrClosed)
	}
	return f.f.Write(p)
}

// Commit makes the written data durable and atomically gives it the final
// name, replacing any file there. On error the temporary file is removed and
// nothing new appears under the final name, except when only the final
// directory sync fails: the file is then in place but its rename may not
// survive a crash.
func (f *File) Commit() error {
	return f.CommitAs(f.path)
}

// CommitAs is Commit to a name decided after writing, such as a content
// digest. path must be in the directory given to Create, so the rename stays
// atomic and one directory sync covers it.
func (f *File) CommitAs(path string) error {
	if err := f.commitTo(path, true); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("commit atomic file %s: %w", path, err)
	}
	return nil
}

// CommitUnsynced is CommitAs without making anything durable: the data and
// the rename reach the disk when the kernel writes them back, or when the
// caller syncs the file system. A crash before then may leave the file
// empty, short or missing, so it is only for content checked again before
// it is trusted (a content store's blobs).
func (f *File) CommitUnsynced(path string) error { return f.commitTo(path, false) }

// commitTo renames the file to path, syncing its data first when sync is
// set; the temporary file is removed if that fails.
func (f *File) commitTo(path string, sync bool) error {
	if f.done {
		return fmt.Errorf("commit atomic file %s: %w", path, os.ErrClosed)
	}
	if filepath.Clean(filepath.Dir(path)) != filepath.Clean(filepath.Dir(f.path)) {
		return fmt.Errorf("commit atomic file %s: not in directory %s", path, filepath.Dir(f.path))
	}
	f.done = true
	tmp := f.f.Name()
	if err := commit(f.f, tmp, path, sync); err != nil {
		// The rename did not happen, or the file is in place already and
		// the temporary name is gone; either way removing tmp is right.
		_ = os.Remove(tmp)
		return fmt.Errorf("commit atomic file %s: %w", path, err)
	}
	return nil
}

func commit(f *os.File, tmp, path string, durable bool) error {
	// Chmod before the rename so the file never appears with the temporary
	// file's 0600, and through the descriptor so the umask has no say.
	if err := f.Chmod(Mode); err != nil {
		_ = f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SyncDir fsyncs a directory so a rename or link within it is durable. Its
// errors are *fs.PathError values, which name the operation and directory.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort discards the file: the temporary file is closed and removed, and
// nothing appears under the final name. Abort after Commit or Abort does
// nothing, so it is safe to defer.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	cerr := f.f.Close()
	rerr := os.Remove(f.f.Name())
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("abort atomic file %s: %w", f.path, err)
	}
	return nil
}

// Close is Abort: a file closed without Commit never appears. It makes File
// an io.WriteCloser whose Close cannot publish partial data.
func (f *File) Close() error { return f.Abort() }
