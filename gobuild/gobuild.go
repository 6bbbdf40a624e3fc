// Package gobuild builds Go main packages reproducibly: from a snapshot of
// the module's source tree whose digest the plan pins, with -trimpath,
// CGO_ENABLED=0, -buildvcs=false, a pinned GOOS/GOARCH, linker flags from
// the spec (only -s, -w and -X), and an environment that names only what
// decides the bytes, so the same source and toolchain give the same binary
// in any directory, on any machine, under any user's go env.
package gobuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Limits of a source tree; a module bigger than this is not a runner.
const (
	MaxFiles = 10000
	MaxBytes = 256 << 20
)

// TreeDigest returns the digest of the Go module source tree at dir: the
// sha256 of its listing, one "HEX  PATH\n" line per regular file, sorted by
// slash-separated path. Directories whose names start with "." (.git) are
// skipped, as the go command skips them; a symbolic link, device or other
// non-regular file is refused, naming it, since go build would read what it
// points at, which the digest would not cover.
func TreeDigest(ctx context.Context, dir string) (digest string, err error) {
	return Snapshot(ctx, dir, "")
}

// Snapshot copies the tree at src into dst (created; "" to copy nothing)
// and returns its TreeDigest, computed from the bytes as they are copied:
// a build from dst builds exactly what the digest names.
func Snapshot(ctx context.Context, src, dst string) (string, error) {
	type file struct{ path, sum string }
	var (
		files []file
		total int64
	)
	root, err := os.OpenRoot(src)
	if err != nil {
		return "", fmt.Errorf("go source %s: %w", src, err)
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			if dst != "" {
				return os.MkdirAll(filepath.Join(dst, filepath.FromSlash(p)), 0o755)
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file (%s): go source trees may hold only files and directories", p, d.Type())
		}
		if len(files) == MaxFiles {
			return fmt.Errorf("more than %d files", MaxFiles)
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		var w io.Writer = h
		var out *os.File
		if dst != "" {
			if out, err = os.OpenFile(filepath.Join(dst, filepath.FromSlash(p)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
				return err
			}
			defer out.Close()
			w = io.MultiWriter(h, out)
		}
		n, err := io.Copy(w, io.LimitReader(f, MaxBytes-total+1))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if total += n; total > MaxBytes {
			return fmt.Errorf("more than %d bytes", MaxBytes)
		}
		if out != nil {
			if err := out.Close(); err != nil {
				return err
			}
		}
		files = append(files, file{p, hex.EncodeToString(h.Sum(nil))})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("go source %s: %w", src, err)
	}
	if !slices.ContainsFunc(files, func(f file) bool { return f.path == "go.mod" }) {
		return "", fmt.Errorf("go source %s: no go.mod: name the module's root directory", src)
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	h := sha256.New()
	for _, f := range files {
		io.WriteString(h, f.sum+"  "+f.path+"\n")
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Options is one go build.
type Options struct {
	// Go is the go command; "" means "go" on PATH.
	Go string
	// Dir is the module's root directory.
	Dir string
	// Package is the main package, relative to Dir ("./cmd/x", ".").
	Package string
	// GOOS and GOARCH are the target platform.
	GOOS, GOARCH string
	// LDFlags are the linker flags (see CheckLDFlags).
	LDFlags string
	// Out is the binary's path.
	Out string
	// Getenv reads the environment bale passes through (PATH, HOME,
	// GOCACHE, GOMODCACHE, GOPATH, TMPDIR); nil means os.Getenv.
	Getenv func(string) string
}

var (
	platformRE = regexp.MustCompile(`^[a-z0-9]{1,32}$`)
	packageRE  = regexp.MustCompile(`^\.(/[A-Za-z0-9_.+-]+)*$`)
	versionRE  = regexp.MustCompile(`^go1\.[0-9]+(\.[0-9]+)?((rc|beta)[0-9]+)?$`)
	ldXRE      = regexp.MustCompile(`^[A-Za-z0-9_./-]+\.[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.+:@/,=-]*$`)
)

// CheckLDFlags checks linker flags: only -s, -w and -X importpath.name=value
// (values without spaces or quotes). Anything else could change how the
// binary is linked (-linkmode=external, -extld runs another program) or
// break its reproducibility, so it is refused, naming the flag.
func CheckLDFlags(flags string) error {
	fields := strings.Fields(flags)
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		switch {
		case f == "-s" || f == "-w":
		case f == "-X" && i+1 < len(fields) && ldXRE.MatchString(fields[i+1]):
			i++
		case strings.HasPrefix(f, "-X=") && ldXRE.MatchString(f[3:]):
		default:
			return fmt.Errorf("ldflags %q: flag %q is not allowed (only -s, -w and -X importpath.name=value)", flags, f)
		}
	}
	return nil
}

// CheckPlatform checks GOOS, GOARCH and the package path's form.
func CheckPlatform(pkg, goos, goarch string) error {
	if !packageRE.MatchString(pkg) || strings.Contains(pkg, "/../") || strings.HasSuffix(pkg, "/..") {
		return fmt.Errorf("package %q: want a path inside the module, \".\" or \"./cmd/NAME\"", pkg)
	}
	if !platformRE.MatchString(goos) || !platformRE.MatchString(goarch) {
		return fmt.Errorf("platform %q/%q: want GOOS and GOARCH names", goos, goarch)
	}
	return nil
}

// env is the build's whole environment: the pinned settings and the few
// locations the go command needs, nothing a user's go env could add.
func env(getenv func(string) string, goos, goarch string) []string {
	if getenv == nil {
		getenv = os.Getenv
	}
	e := []string{
		"CGO_ENABLED=0", "GOOS=" + goos, "GOARCH=" + goarch,
		"GOENV=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "GOPROXY=off", "GOEXPERIMENT=",
	}
	for _, k := range []string{"PATH", "HOME", "GOCACHE", "GOMODCACHE", "GOPATH", "TMPDIR", "XDG_CACHE_HOME"} {
		if v := getenv(k); v != "" {
			e = append(e, k+"="+v)
		}
	}
	return e
}

// Version returns the go command's toolchain version ("go1.26.8"). It
// reads the VERSION file of the GOROOT the go command lies in when there is
// one, as the go command itself does with GOTOOLCHAIN=local, and asks
// `go env GOVERSION` otherwise: a warm rebuild should not wait for a go
// process.
func Version(ctx context.Context, goCmd string, getenv func(string) string) (string, error) {
	if goCmd == "" {
		goCmd = "go"
	}
	if v, ok := rootVersion(goCmd, getenv); ok {
		return v, nil
	}
	cmd := exec.CommandContext(ctx, goCmd, "env", "GOVERSION")
	cmd.Env = env(getenv, "linux", "amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	v := strings.TrimSpace(string(out))
	if !strings.HasPrefix(v, "go") || strings.ContainsAny(v, " \n") {
		return "", fmt.Errorf("go env GOVERSION: unexpected %q", v)
	}
	return v, nil
}

// rootVersion reads GOROOT/VERSION for the go command at goCmd (found on
// the PATH getenv gives), when it is GOROOT/bin/go.
func rootVersion(goCmd string, getenv func(string) string) (string, bool) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := goCmd
	if !strings.Contains(goCmd, "/") {
		for dir := range strings.SplitSeq(getenv("PATH"), ":") {
			if dir == "" {
				continue
			}
			if fi, err := os.Stat(filepath.Join(dir, goCmd)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				p = filepath.Join(dir, goCmd)
				break
			}
		}
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil || filepath.Base(filepath.Dir(real)) != "bin" {
		return "", false
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(real)), "VERSION"))
	if err != nil {
		return "", false
	}
	v, _, _ := strings.Cut(string(data), "\n")
	if !versionRE.MatchString(v) {
		return "", false
	}
	return v, true
}

// Build runs go build for o.
func Build(ctx context.Context, o Options) error {
	if err := CheckPlatform(o.Package, o.GOOS, o.GOARCH); err != nil {
		return err
	}
	if err := CheckLDFlags(o.LDFlags); err != nil {
		return err
	}
	if o.Out == "" || o.Dir == "" {
		return errors.New("go build: no module directory or output")
	}
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-mod=readonly", "-o", o.Out}
	if o.LDFlags != "" {
		args = append(args, "-ldflags="+strings.Join(strings.Fields(o.LDFlags), " "))
	}
	args = append(args, o.Package)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = o.Dir
	cmd.Env = env(o.Getenv, o.GOOS, o.GOARCH)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (%s/%s): %w\n%s", o.Package, o.GOOS, o.GOARCH, err, strings.TrimSpace(out.String()))
	}
	return nil
}
