package spec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing/fstest"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/format"
	"cuelang.org/go/cue/load"
	"cuelang.org/go/cue/token"
	"cuelang.org/go/mod/modconfig"

	"github.com/bale-build/bale/schemas"
)

// Instance is one loaded, valid spec.
type Instance struct {
	// Dir is the absolute directory of the spec; relative source paths in
	// the spec are resolved against it.
	Dir string
	// Name is how the spec was named to bale, relative to the working
	// directory where possible; it is used in messages only.
	Name string
	// Spec is the decoded spec.
	Spec *Spec
	// Digest is the sha256 of JSON(), in "sha256:<hex>" form.
	Digest string
	// Warnings are lint findings: problems that do not stop a build.
	Warnings Diagnostics

	value    cue.Value
	user     cue.Value // the spec as written, for positions
	wd       string    // positions are shown relative to it
	fallback string    // the spec's first file, for a value without a position
	json     []byte
	sources  []string
}

// Sources returns the host paths the loader opened, listed or looked at
// (some may not exist) to load the spec from disk, sorted: the files and
// directories its evaluation depends on, for a caller that keeps what it
// made from the spec while they stay as they were. A spec from Parse has
// none.
func (in *Instance) Sources() []string { return in.sources }

// Pos returns the position, in the spec's files, of the value at path (a
// CUE path such as "bootstrapPack.images[0]"): the file relative to the
// working directory the spec was loaded from, line and column. A value the
// spec does not write itself (a default) gives its nearest enclosing value
// that it does, and at worst the spec's first file at 1:1.
func (in *Instance) Pos(path string) (file string, line, col int) {
	if p, ok := in.SourcePos(path); ok {
		return rel(in.wd, p.Filename()), p.Line(), p.Column()
	}
	return in.fallback, 1, 1
}

// SourcePos returns the position of the value at path, or of its nearest
// enclosing value, in the spec's own files, with the file's full name; ok
// is false when the spec writes none of them.
func (in *Instance) SourcePos(path string) (token.Pos, bool) {
	p := cue.ParsePath(path)
	if p.Err() != nil || !in.user.Exists() {
		return token.NoPos, false
	}
	sels := p.Selectors()
	for n := len(sels); n >= 0; n-- {
		v := in.user.LookupPath(cue.MakePath(sels[:n]...))
		if !v.Exists() {
			continue
		}
		if ps := v.Pos(); ps.IsValid() && ps.Filename() != schemas.Filename && ps.Filename() != "" {
			return ps, true
		}
	}
	return token.NoPos, false
}

// Allowed says whether the spec mutes lint warning what (AllowUnpinned)
// on the field at path with @bale(allow="what").
func (in *Instance) Allowed(path, what string) bool {
	if !in.user.Exists() {
		return false
	}
	return allowed(in.user.LookupPath(cue.ParsePath(path)), what)
}

// JSON returns the evaluated spec as canonical JSON: fields in schema order,
// two-space indentation, a trailing newline. The same spec gives the same
// bytes, whatever its formatting or field order.
func (in *Instance) JSON() []byte { return bytes.Clone(in.json) }

// CUE returns the evaluated spec as formatted CUE with defaults filled in.
func (in *Instance) CUE() ([]byte, error) {
	b, err := format.Node(in.value.Syntax(cue.Final(), cue.Concrete(true)))
	if err != nil {
		return nil, fmt.Errorf("format spec %s: %w", in.Name, err)
	}
	return append(b, '\n'), nil
}

// Options tunes loading.
type Options struct {
	// WorkDir is the directory diagnostics are reported relative to; empty
	// means the process's working directory.
	WorkDir string
	// Root is the workspace root every file the CUE loader reads must lie
	// below; empty means FindRoot of each spec's directory.
	Root string
	// CUERegistry, when set, is where CUE module dependencies are fetched
	// from (see cuelang.org/go/mod/modconfig). It is nil by default: bale
	// never fetches a CUE module, nor reads one from a cache outside the
	// workspace, because a spec asks for it; CUE_REGISTRY and the other
	// CUE variables are ignored.
	CUERegistry modconfig.Registry
}

// Load loads every spec named by args: a .cue file, a directory (one CUE
// package), or a directory followed by "/..." for every package below it
// (directories named testdata or starting with '.' or '_' are skipped, as
// the go tool does). No args means ".".
//
// Spec problems come back as Diagnostics, all of them from one run, sorted
// by position; the returned instances are the specs that had no errors. The
// error is for failures that are not about a spec's content: a path that
// does not exist, a cancelled context.
func Load(ctx context.Context, args []string, opts Options) ([]*Instance, Diagnostics, error) {
	wd := opts.WorkDir
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return nil, nil, fmt.Errorf("load specs: %w", err)
		}
	}
	if len(args) == 0 {
		args = []string{"."}
	}
	var targets []target
	for _, arg := range args {
		ts, err := expand(wd, arg)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, ts...)
	}
	var (
		insts []*Instance
		diags Diagnostics
	)
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		in, ds := loadTarget(t, wd, opts)
		diags = append(diags, ds...)
		if in != nil {
			insts = append(insts, in)
		}
	}
	diags.sort()
	return insts, diags, nil
}

// Parse loads a spec from bytes, as a single file with the given name. It is
// how specs arriving over the network are read: nothing on disk is touched,
// and relative source paths resolve against dir.
func Parse(ctx context.Context, filename string, src []byte, dir string) (*Instance, Diagnostics, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if len(src) > MaxSourceBytes {
		return nil, Diagnostics{{File: filename, Severity: SeverityError,
			Message: fmt.Sprintf("spec is %d bytes; bale refuses specs over %d bytes", len(src), MaxSourceBytes)}}, nil
	}
	// A file system holding only this file: cue/load reads nothing from
	// disk, so a spec from the network cannot embed or import a local file.
	base := path.Base(path.Clean("/" + filepath.ToSlash(filename)))
	if !strings.HasSuffix(base, ".cue") {
		base += ".cue"
	}
	cfs := newConfinedFS(fstest.MapFS{base: &fstest.MapFile{Data: src, Mode: 0o644}}, "/")
	cfs.virtual = true
	cfg := &load.Config{
		FS:         cfs,
		Dir:        "/",
		FromFSPath: func(string) string { return filename },
		Registry:   noRegistry{},
		Env:        []string{},
	}
	in, diags := evaluate(cfg, "./"+base, filename, "/", cfs)
	if in != nil {
		in.Dir = dir
	}
	diags.sort()
	return in, diags, nil
}

// loadTarget loads one spec confined to its workspace root.
func loadTarget(t target, wd string, opts Options) (*Instance, Diagnostics) {
	fail := func(err error) (*Instance, Diagnostics) {
		return nil, Diagnostics{{File: t.name, Severity: SeverityError, Message: "load spec: " + err.Error()}}
	}
	root := opts.Root
	if root == "" {
		root = FindRoot(t.dir)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return fail(err)
	}
	dir, err := fsPath(root, t.dir)
	if err != nil {
		return fail(err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fail(fmt.Errorf("workspace root: %w", err))
	}
	defer r.Close()
	reg := opts.CUERegistry
	if reg == nil {
		reg = noRegistry{}
	}
	cfs := newConfinedFS(r.FS(), root)
	cfg := &load.Config{
		FS:  cfs,
		Dir: dir,
		// The loader's paths are inside the workspace's file system;
		// positions and messages name the files on disk.
		FromFSPath: func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) },
		Registry:   reg,
		Env:        []string{},
	}
	in, diags := evaluate(cfg, t.arg, t.name, wd, cfs)
	if in != nil {
		in.Dir = t.dir
		in.sources = cfs.sources()
	}
	return in, diags
}

// target is one CUE instance to load: arg as cue/load takes it, in dir.
type target struct {
	dir, arg, name string
}

func expand(wd, arg string) ([]target, error) {
	recursive := false
	if arg == "..." || strings.HasSuffix(arg, "/...") {
		recursive = true
		arg = strings.TrimSuffix(strings.TrimSuffix(arg, "..."), "/")
		if arg == "" {
			arg = "."
		}
	}
	abs := arg
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(wd, arg)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("load spec %s: %w", arg, err)
	}
	if !fi.IsDir() {
		if recursive {
			return nil, fmt.Errorf("load spec %s/...: not a directory", arg)
		}
		if filepath.Ext(abs) != ".cue" {
			return nil, fmt.Errorf("load spec %s: not a .cue file or a directory", arg)
		}
		return []target{{dir: filepath.Dir(abs), arg: "./" + filepath.Base(abs), name: rel(wd, abs)}}, nil
	}
	if !recursive {
		if !hasCUE(abs) {
			return nil, fmt.Errorf("load spec %s: no .cue files in directory", arg)
		}
		return []target{{dir: abs, arg: ".", name: rel(wd, abs)}}, nil
	}
	var ts []target
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != abs {
			n := d.Name()
			if n == "testdata" || n == "cue.mod" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") {
				return filepath.SkipDir
			}
		}
		if hasCUE(p) {
			ts = append(ts, target{dir: p, arg: ".", name: rel(wd, p)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load specs %s/...: %w", arg, err)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("load specs %s/...: no .cue files found", arg)
	}
	return ts, nil
}

func hasCUE(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.cue"))
	return len(m) > 0
}

func rel(wd, p string) string {
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && r != ".." {
		return r
	}
	return p
}

// evaluate loads, checks and decodes one instance, and reports every file
// the loader was refused. It never panics on hostile input: CUE's own
// errors become diagnostics.
func evaluate(cfg *load.Config, arg, name, wd string, cfs *confinedFS) (*Instance, Diagnostics) {
	in, diags := evaluateCUE(cfg, arg, name, wd)
	refused := cfs.refused(in != nil)
	if len(refused) == 0 {
		return in, diags
	}
	// CUE's errors without a position only repeat, less clearly, what
	// the refusals say.
	kept := diags[:0]
	for _, d := range diags {
		if d.File != "" {
			kept = append(kept, d)
		}
	}
	for _, r := range refused {
		kept = append(kept, Diagnostic{File: rel(wd, r.path), Severity: SeverityError, Message: r.msg})
	}
	return nil, kept
}

func evaluateCUE(cfg *load.Config, arg, name, wd string) (in *Instance, diags Diagnostics) {
	binsts := load.Instances([]string{arg}, cfg)
	if len(binsts) != 1 {
		return nil, Diagnostics{{File: name, Line: 1, Column: 1, Severity: SeverityError, Message: fmt.Sprintf("expected one CUE package, found %d", len(binsts))}}
	}
	bi := binsts[0]
	if bi.Err != nil {
		ds := fromCUE(bi.Err, wd, cue.Value{})
		if strings.Contains(bi.Err.Error(), "no package name") {
			// cue/load's words for it are "build constraints exclude all
			// CUE files"; say what to do instead.
			ds = Diagnostics{{File: name, Severity: SeverityError,
				Message: "the .cue files of a spec directory need a package clause (e.g. \"package airgap\"); or name a single file"}}
		}
		return nil, ds
	}
	ctx := cuecontext.New()
	schema := ctx.CompileString(schemas.Source, cue.Filename(schemas.Filename))
	if err := schema.Err(); err != nil {
		// The schema is embedded and tested; this is a bale bug.
		return nil, Diagnostics{{File: schemas.Filename, Line: 1, Column: 1, Severity: SeverityError, Message: "bale's embedded schema does not compile: " + err.Error()}}
	}
	// The checks run on the user's own value, so they report every problem
	// even where CUE's errors stop it short, at the positions the user
	// wrote.
	c := &checker{wd: wd, fallback: firstFile(bi.BuildFiles, name, wd)}
	if c.sourceCaps(bi.Files, schema); len(c.diags) > 0 {
		return nil, c.diags
	}
	user := ctx.BuildInstance(bi)
	c.v = user
	if c.caps(schema); len(c.diags) > 0 {
		return nil, c.diags
	}
	if err := user.Err(); err != nil {
		return nil, fromCUE(err, wd, user)
	}
	v := schema.FillPath(cue.MakePath(cue.Str("spec")), user).LookupPath(cue.MakePath(cue.Str("spec")))
	c.closed(user, schema.LookupPath(cue.ParsePath("#Spec")), nil, &schemaMemo{})
	c.check()
	if err := v.Validate(cue.Concrete(true), cue.All()); err != nil {
		diags = append(diags, fromCUE(err, wd, user)...)
	}
	diags = append(diags, c.diags...)
	diags = diags.dedupe()
	if diags.HasErrors() {
		return nil, diags
	}
	raw, err := v.MarshalJSON()
	if err != nil {
		return nil, fromCUE(err, wd, user)
	}
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, append(diags, Diagnostic{File: c.fallback, Line: 1, Column: 1, Severity: SeverityError, Message: "decode evaluated spec: " + err.Error()})
	}
	s.normalize()
	canon, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		return nil, append(diags, Diagnostic{File: c.fallback, Line: 1, Column: 1, Severity: SeverityError, Message: "encode evaluated spec: " + err.Error()})
	}
	canon = append(canon, '\n')
	sum := sha256.Sum256(canon)
	return &Instance{
		Name:     name,
		Spec:     &s,
		Digest:   "sha256:" + hex.EncodeToString(sum[:]),
		Warnings: diags,
		value:    v,
		user:     user,
		wd:       wd,
		fallback: c.fallback,
		json:     canon,
	}, diags
}

func firstFile(files []*build.File, name, wd string) string {
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, rel(wd, f.Filename))
	}
	sort.Strings(names)
	if len(names) > 0 {
		return names[0]
	}
	return name
}

// fromCUE turns CUE errors into diagnostics positioned in the user's files.
// Errors at the same path are merged, so a failed disjunction reads as one
// problem rather than one line per alternative.
func fromCUE(err error, wd string, user cue.Value) Diagnostics {
	type group struct {
		path  []string
		errs  []cueerrors.Error
		disj  bool
		order int
	}
	groups := map[string]*group{}
	var keys []string
	for _, e := range cueerrors.Errors(err) {
		p := trimSpecPath(e.Path())
		k := strings.Join(p, "\x00")
		g, ok := groups[k]
		if !ok {
			g = &group{path: p, order: len(keys)}
			groups[k] = g
			keys = append(keys, k)
		}
		f, _ := e.Msg()
		if strings.Contains(f, "empty disjunction") {
			g.disj = true
			continue
		}
		g.errs = append(g.errs, e)
	}
	var diags Diagnostics
	for _, k := range keys {
		g := groups[k]
		if len(g.errs) == 0 {
			continue
		}
		file, line, col := userPos(g.errs[0], wd, user, g.path)
		msg := message(g.path, g.errs, g.disj, user)
		diags = append(diags, Diagnostic{File: file, Line: line, Column: col, Severity: SeverityError, Message: msg})
	}
	return diags
}

func trimSpecPath(p []string) []string {
	if len(p) > 0 && (p[0] == "spec" || p[0] == "#Spec") {
		return p[1:]
	}
	return p
}

// userPos picks the first position of e that lies in a spec file. An error
// that only has schema positions (a required field that is missing) is
// placed at the nearest enclosing value the user wrote.
func userPos(e cueerrors.Error, wd string, user cue.Value, path []string) (string, int, int) {
	for _, p := range cueerrors.Positions(e) {
		if p.IsValid() && p.Filename() != schemas.Filename && p.Filename() != "" {
			return rel(wd, p.Filename()), p.Line(), p.Column()
		}
	}
	if user.Exists() {
		for n := len(path); n >= 0; n-- {
			v := user.LookupPath(cuePath(path[:n]))
			if !v.Exists() {
				continue
			}
			if p := v.Pos(); p.IsValid() && p.Filename() != schemas.Filename {
				return rel(wd, p.Filename()), p.Line(), p.Column()
			}
		}
	}
	if p := e.Position(); p.IsValid() && p.Filename() != schemas.Filename {
		return rel(wd, p.Filename()), p.Line(), p.Column()
	}
	return "", 0, 0
}

func cuePath(elems []string) cue.Path {
	sels := make([]cue.Selector, 0, len(elems))
	for _, e := range elems {
		if i, ok := index(e); ok {
			sels = append(sels, cue.Index(i))
		} else {
			sels = append(sels, cue.Str(e))
		}
	}
	return cue.MakePath(sels...)
}

func index(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + int(r-'0')
	}
	return n, true
}

// fieldPath renders a CUE path the way a spec author reads it:
// bootstrapPack.images[1].digest.
func fieldPath(elems []string) string {
	var b strings.Builder
	for _, e := range elems {
		if _, ok := index(e); ok {
			b.WriteString("[" + e + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e)
	}
	return b.String()
}
