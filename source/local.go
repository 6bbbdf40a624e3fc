package source

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bale-build/bale/plan"
)

// Local inputs are read through os.Root, one path element at a time, and
// every element below the workspace root must be a real directory (the
// last one a real directory or regular file): a symbolic link anywhere in
// the path is refused, not followed, even one that points back inside the
// workspace. os.Root is what makes this race-free: whatever is swapped in
// between bale's checks and its opens, nothing outside the root can be
// opened, and each opened element is compared with the one checked
// (os.SameFile), so a swap is reported instead of followed.
//
// Multiply-linked regular files. A hard link is not visible as a link: a
// file in the workspace with st_nlink > 1 may be the same inode as a file
// anywhere else on the file system (/etc/passwd, a CI secret), and its
// bytes would be hashed and shipped as if they were the workspace's. So
// bale refuses a regular file with more than one link wherever it takes
// the bytes as they are on disk: file, key, signature and bundle inputs,
// chart archives, every file of a chart directory, docker-save tarballs
// and an OCI layout's index.json. Blobs of an OCI layout are the one
// exception: a layout blob's name is the sha256 of its bytes, and bale
// takes only blobs whose digests a manifest names and checks the bytes
// against those digests, so a link can only supply bytes whose hash the
// spec's author already knew; tools that deduplicate layouts (and bale's
// own cache, before issue 7) hard-link blobs routinely.
type linkPolicy int

const (
	// singleLink refuses a regular file with more than one hard link.
	singleLink linkPolicy = iota
	// anyLinks accepts one: the bytes are verified against a digest.
	anyLinks
)

// ErrOutsideRoot is wrapped by the error for a local path that leaves the
// workspace root.
var ErrOutsideRoot = errors.New("outside the workspace root")

// rootError is a local path that leaves the workspace root; it is
// ErrOutsideRoot.
type rootError struct{ path, root string }

func (e *rootError) Error() string {
	return fmt.Sprintf("path %s leaves the workspace root %s", e.path, e.root)
}

func (e *rootError) Is(target error) bool { return target == ErrOutsideRoot }

// errLinkMsg is the explanation appended to refused links.
const errLinkMsg = "bale does not follow links in local inputs"

// local turns a spec path (relative to specDir, or absolute) into its
// slash path relative to the workspace root, lexically: nothing is
// touched. Opening it later refuses links, so a lexical check is enough to
// keep it inside the root.
func (r *Resolver) local(specDir, p string) (rel string, err error) {
	return inRoot(r.opts.Root, r.root, specDir, p)
}

// InRoot is the workspace rule planning applies to every local path a spec
// names, for a check before planning (bale vet): p, relative to specDir or
// absolute, must lie below the workspace root, lexically. It returns p as a
// slash path relative to root, or an error that is ErrOutsideRoot.
func InRoot(root, specDir, p string) (string, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		real = root
	}
	return inRoot(root, real, specDir, p)
}

// inRoot is InRoot for the root as given and with its links resolved
// (real): the spec directory may be named either way.
func inRoot(root, real, specDir, p string) (rel string, err error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if !filepath.IsAbs(specDir) {
		if specDir, err = filepath.Abs(specDir); err != nil {
			return "", err
		}
	}
	joined := filepath.FromSlash(p)
	if !filepath.IsAbs(joined) {
		joined = filepath.Join(specDir, joined)
	}
	joined = filepath.Clean(joined)
	if rel, ok := within(real, joined); ok {
		return rel, nil
	}
	if rel, ok := within(root, joined); ok {
		return rel, nil
	}
	return "", &rootError{path: p, root: root}
}

// within returns p's slash path relative to root and whether p is below
// root.
func within(root, p string) (string, bool) {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return "", false
	}
	rel = filepath.ToSlash(rel)
	if !plan.ValidPath(rel) {
		return "", false
	}
	return rel, true
}

// checkRel validates a plan path: a plan may come from anywhere.
func checkRel(rel string) error {
	if !plan.ValidPath(rel) {
		return fmt.Errorf("source path %q is not a clean relative path", rel)
	}
	return nil
}

// openDir opens the directory rel (a clean slash path below the workspace
// root, or "." for the root) as an os.Root, refusing any element that is a
// symbolic link or not a directory.
func (r *Resolver) openDir(rel string) (*os.Root, error) {
	if rel != "." {
		if err := checkRel(rel); err != nil {
			return nil, err
		}
	}
	d, err := os.OpenRoot(r.root)
	if err != nil {
		return nil, fmt.Errorf("workspace root: %w", err)
	}
	if rel == "." {
		return d, nil
	}
	done := ""
	for seg := range strings.SplitSeq(rel, "/") {
		done = path.Join(done, seg)
		sub, err := subdir(d, seg, done)
		d.Close()
		if err != nil {
			return nil, err
		}
		d = sub
	}
	return d, nil
}

// subdir opens directory name of parent, shown as shown in errors.
func subdir(parent *os.Root, name, shown string) (*os.Root, error) {
	fi, err := parent.Lstat(name)
	if err != nil {
		return nil, localErr(shown, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link: %s", shown, errLinkMsg)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", shown)
	}
	sub, err := parent.OpenRoot(name)
	if err != nil {
		return nil, localErr(shown, err)
	}
	if st, err := sub.Stat("."); err != nil || !os.SameFile(fi, st) {
		sub.Close()
		return nil, fmt.Errorf("%s changed while bale opened it", shown)
	}
	return sub, nil
}

// lstatLocal returns the file information of rel without following a link
// at any element.
func (r *Resolver) lstatLocal(rel string) (fs.FileInfo, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	dir, leaf := path.Split(rel)
	d, err := r.openDir(cleanDir(dir))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fi, err := d.Lstat(leaf)
	if err != nil {
		return nil, localErr(rel, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link: %s", rel, errLinkMsg)
	}
	return fi, nil
}

// openLocal opens the regular file rel below the workspace root, refusing
// a symbolic link at any element, an irregular file and, under singleLink,
// a file with more than one hard link.
func (r *Resolver) openLocal(rel string, links linkPolicy) (*os.File, fs.FileInfo, error) {
	if err := checkRel(rel); err != nil {
		return nil, nil, err
	}
	dir, leaf := path.Split(rel)
	d, err := r.openDir(cleanDir(dir))
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	return openIn(d, leaf, rel, links)
}

// openIn opens regular file name of d (shown as shown in errors) under the
// rules of openLocal.
func openIn(d *os.Root, name, shown string, links linkPolicy) (*os.File, fs.FileInfo, error) {
	fi, err := d.Lstat(name)
	if err != nil {
		return nil, nil, localErr(shown, err)
	}
	if err := checkRegular(fi, shown, links); err != nil {
		return nil, nil, err
	}
	f, err := d.Open(name)
	if err != nil {
		return nil, nil, localErr(shown, err)
	}
	st, err := f.Stat()
	if err != nil || !os.SameFile(fi, st) {
		f.Close()
		return nil, nil, fmt.Errorf("%s changed while bale opened it", shown)
	}
	if err := checkRegular(st, shown, links); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// checkRegular refuses what openLocal refuses, given fi from Lstat.
func checkRegular(fi fs.FileInfo, shown string, links linkPolicy) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: %s", shown, errLinkMsg)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", shown)
	case links == singleLink && nlink(fi) > 1:
		return fmt.Errorf("%s has %d hard links: it may be the same file as one outside the workspace, so bale refuses it (copy it instead of linking)", shown, nlink(fi))
	}
	return nil
}

// cleanDir turns path.Split's directory ("a/b/" or "") into "a/b" or ".".
func cleanDir(dir string) string {
	if dir == "" {
		return "."
	}
	return strings.TrimSuffix(dir, "/")
}

// localErr names the workspace path in an error from os.Root, whose own
// message names only the last element.
func localErr(shown string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &LocalError{Path: shown, Err: err}
}

// LocalError is a failure to read a local input: a file or directory below
// the workspace root that a spec or plan names. It lets a caller tell a
// missing input (errors.Is(err, fs.ErrNotExist)) from other missing files,
// such as an output directory's.
type LocalError struct {
	// Path is the input's path relative to the workspace root.
	Path string
	Err  error
}

func (e *LocalError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *LocalError) Unwrap() error { return e.Err }
