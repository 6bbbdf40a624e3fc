package spec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"cuelang.org/go/mod/modconfig"
	"cuelang.org/go/mod/modfile"
	"cuelang.org/go/mod/module"
)

// MaxSourceBytes caps the bytes the CUE loader may read for one spec: its
// .cue files, cue.mod, packages it imports and files it embeds, together.
// The largest spec the count caps allow (10,000 images) is about 2 MiB of
// CUE; a spec over the cap is refused before it is evaluated.
const MaxSourceBytes = 16 << 20

// FindRoot returns the workspace root for a spec directory: the nearest
// ancestor holding cue.mod or .git, else dir itself. Every file the CUE
// loader reads must lie below it, as every local path a spec names must.
func FindRoot(dir string) string {
	for d := dir; ; {
		for _, marker := range []string{"cue.mod", ".git"} {
			if _, err := os.Stat(filepath.Join(d, marker)); err == nil {
				return d
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dir
		}
		d = parent
	}
}

// confinedFS is the file system bale hands the CUE loader (load.Config.FS).
// It reads through an os.Root, so no read, whether of a .cue file, an
// @embed file or glob, or a package imported through cue.mod, follows a
// symbolic link out of the workspace; it refuses what is not a regular file
// or a directory (a FIFO would block the loader); and it keeps a byte
// budget. CUE words some of these failures as "no such file", so every
// refusal is also recorded, to be reported naming the file.
type confinedFS struct {
	fsys fs.FS
	// dir is the absolute host path of the file system's root, for
	// messages.
	dir string
	// virtual is true for a file system that is not on disk (Parse).
	virtual bool

	mu       sync.Mutex
	left     int64
	refusals []refusal
	// touched is every host path the loader opened, listed or looked at,
	// found or not: what the evaluation depends on.
	touched map[string]bool
}

// refusal is one path the loader was not allowed to read.
type refusal struct {
	path string // host path
	msg  string
	// read is true for an open or read (the loader wanted the bytes),
	// false for a stat (the loader was only looking).
	read bool
}

func newConfinedFS(fsys fs.FS, dir string) *confinedFS {
	return &confinedFS{fsys: fsys, dir: dir, left: MaxSourceBytes}
}

// hostPath is the host path of the file system path name.
func (c *confinedFS) hostPath(name string) string {
	return filepath.Join(c.dir, filepath.FromSlash(name))
}

// refuse records a refusal and returns the error the loader sees.
func (c *confinedFS) refuse(op, name string, read bool, msg string) error {
	host := c.hostPath(name)
	c.mu.Lock()
	c.refusals = append(c.refusals, refusal{path: host, msg: msg, read: read})
	c.mu.Unlock()
	return &fs.PathError{Op: op, Path: host, Err: errors.New(msg)}
}

// check turns an error from the confined file system into a refusal when
// the path leaves the workspace through a symbolic link: os.Root's own
// error says neither which link nor where it goes.
func (c *confinedFS) check(op, name string, read bool, err error) error {
	if c.virtual {
		return err
	}
	link, target, ok := c.escape(name)
	if !ok {
		return err
	}
	rl, _ := filepath.Rel(c.dir, link)
	c.mu.Lock()
	c.refusals = append(c.refusals, refusal{path: link, read: read,
		msg: fmt.Sprintf("is a symbolic link to %s, outside the workspace root %s; a spec reads only files inside its workspace", target, c.dir)})
	c.mu.Unlock()
	return &fs.PathError{Op: op, Path: c.hostPath(name), Err: fmt.Errorf("%s is a symbolic link out of the workspace root %s", filepath.ToSlash(rl), c.dir)}
}

// escape finds the first component of name that is a symbolic link leading
// out of the workspace root, dangling or not, and where it leads.
func (c *confinedFS) escape(name string) (link, target string, ok bool) {
	real, err := filepath.EvalSymlinks(c.dir)
	if err != nil {
		return "", "", false
	}
	cur := c.dir
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." {
			continue
		}
		next := filepath.Join(cur, el)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", "", false
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			dest, err := filepath.EvalSymlinks(next)
			if err != nil {
				// Dangling: judge by where it points.
				if dest, err = os.Readlink(next); err != nil {
					return "", "", false
				}
				if !filepath.IsAbs(dest) {
					dest = filepath.Join(cur, dest)
				}
				if !within(real, dest) && !within(c.dir, dest) {
					return next, dest, true
				}
				return "", "", false
			}
			if !within(real, dest) {
				return next, dest, true
			}
		}
		cur = next
	}
	return "", "", false
}

// within says whether p is dir or below it, lexically.
func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

// touch records that the loader reached name.
func (c *confinedFS) touch(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.touched == nil {
		c.touched = map[string]bool{}
	}
	c.touched[c.hostPath(name)] = true
}

// sources returns the host paths the loader reached, sorted.
func (c *confinedFS) sources() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.touched))
	for p := range c.touched {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Open implements fs.FS.
func (c *confinedFS) Open(name string) (fs.File, error) {
	c.touch(name)
	fi, err := fs.Stat(c.fsys, name)
	if err != nil {
		return nil, c.check("open", name, true, err)
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, c.refuse("open", name, true, fmt.Sprintf("is not a regular file or a directory (%s)", fi.Mode().Type()))
	}
	if !fi.IsDir() {
		if err := c.take(name, fi.Size()); err != nil {
			return nil, err
		}
	}
	f, err := c.fsys.Open(name)
	if err != nil {
		return nil, c.check("open", name, true, err)
	}
	if fi.IsDir() {
		return f, nil
	}
	// The size was charged at open; a file that grows after that is cut
	// off at the size it had, and read as an error.
	return &limitedFile{File: f, name: c.hostPath(name), left: fi.Size()}, nil
}

// take charges n bytes of the budget for reading name.
func (c *confinedFS) take(name string, n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.left {
		msg := fmt.Sprintf("spec sources exceed %d bytes (cue files, imports and embeds together); bale refuses larger specs", MaxSourceBytes)
		c.refusals = append(c.refusals, refusal{path: c.hostPath(name), msg: msg, read: true})
		c.left = 0
		return &fs.PathError{Op: "read", Path: c.hostPath(name), Err: errors.New(msg)}
	}
	c.left -= n
	return nil
}

// ReadFile implements fs.ReadFileFS.
func (c *confinedFS) ReadFile(name string) ([]byte, error) {
	f, err := c.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ReadDir implements fs.ReadDirFS.
func (c *confinedFS) ReadDir(name string) ([]fs.DirEntry, error) {
	c.touch(name)
	es, err := fs.ReadDir(c.fsys, name)
	if err != nil {
		return nil, c.check("readdir", name, true, err)
	}
	return es, nil
}

// Stat implements fs.StatFS.
func (c *confinedFS) Stat(name string) (fs.FileInfo, error) {
	c.touch(name)
	fi, err := fs.Stat(c.fsys, name)
	if err != nil {
		return nil, c.check("stat", name, false, err)
	}
	return fi, nil
}

// refused returns the recorded refusals, reads first when loaded is
// true, sorted by path. A failed stat is only reported when the load
// failed (loaded false): a link the loader merely looked at and did not
// need does not stop a spec.
func (c *confinedFS) refused(loaded bool) []refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []refusal
	for _, r := range c.refusals {
		if (loaded && !r.read) || seen[r.path] {
			continue
		}
		seen[r.path] = true
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// limitedFile is an open file that may yield at most left more bytes.
type limitedFile struct {
	fs.File
	name string
	left int64
}

func (f *limitedFile) Read(p []byte) (int, error) {
	if f.left <= 0 {
		// One more byte than its size at open means the file grew.
		var one [1]byte
		if n, _ := f.File.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("read %s: the file grew while it was read", f.name)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.File.Read(p)
	f.left -= int64(n)
	return n, err
}

// noRegistry is the CUE module registry bale uses unless a caller supplies
// one: CUE module dependencies are never fetched, nor read from a module
// cache outside the workspace, on a spec's say-so. CUE_REGISTRY and the
// other CUE variables are not consulted.
type noRegistry struct{}

var _ modconfig.Registry = noRegistry{}

func (noRegistry) refuse(m string) error {
	return fmt.Errorf("CUE module %s: bale does not fetch CUE module dependencies; put the package in the workspace (e.g. under cue.mod/pkg) or drop the dependency", m)
}

func (r noRegistry) ModFile(_ context.Context, mv module.Version) (*modfile.File, error) {
	return nil, r.refuse(mv.String())
}

func (r noRegistry) Fetch(_ context.Context, mv module.Version) (module.SourceLoc, error) {
	return module.SourceLoc{}, r.refuse(mv.String())
}

func (r noRegistry) ModuleVersions(_ context.Context, mpath string) ([]string, error) {
	return nil, r.refuse(mpath)
}

// fsPath is the confined file system's path for host path p below root.
func fsPath(root, p string) (string, error) {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return "", err
	}
	if !within(root, p) {
		return "", fmt.Errorf("%s is not below the workspace root %s", p, root)
	}
	return path.Join("/", filepath.ToSlash(r)), nil
}
