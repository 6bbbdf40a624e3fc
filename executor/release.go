package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	stdhash "hash"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/gobuild"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/provenance"
	"github.com/bale-build/bale/sign"
)

// GoSourcer is implemented by a Source that can name the local directory of
// a go input (source.Resolver does). The executor snapshots the
// directory, checks the snapshot's tree digest against the plan's, and
// builds from the snapshot.
type GoSourcer interface {
	GoSourceDir(ctx context.Context, in plan.Input) (string, error)
}

// signerRef identifies the key a release step signs with, without
// decrypting it: the sha256 of the encrypted key's PEM text (the password
// cannot change what a given key file signs, only whether it opens) and
// whether it is the spec's development key. It is in the release step's
// cache key, so a warm rebuild knows its result without the ~1 s scrypt
// key decryption, and another key never reuses this one's signatures.
type signerRef struct {
	Key string `json:"key"`
	Dev bool   `json:"dev"`
}

// located is a signing key found but not yet decrypted.
type located struct {
	pem    []byte
	source string
	// how is KeyFile, KeyEnv or KeyDev, for Result.Kits.
	how    string
	dev    bool
	devPub []byte
}

// How a release's signing key was given, as Kit.SigningKey says.
const (
	KeyFile = "file" // a cosign key file: signing.key or the variable it names holds its path
	KeyEnv  = "env"  // the key's PEM text in an environment variable (env://VAR)
	KeyDev  = "dev"  // the spec's development key, with COSIGN_ALLOW_DEV_KEY=1
)

// maxKeyFile bounds a key file or variable; cosign keys are under 1 KiB.
const maxKeyFile = 64 << 10

// locateKey finds the release step's signing key: the spec's signing.key
// reference (env://VAR, whose value may itself be PEM text, a file path or
// another env://VAR; or a file path, relative to the working directory as
// cosign's --key is), else the spec's development key when
// COSIGN_ALLOW_DEV_KEY=1. With neither it fails wrapping sign.ErrNoKey,
// naming COSIGN_KEY and COSIGN_ALLOW_DEV_KEY.
func (x *execution) locateKey(ctx context.Context, def *stepDef) (*located, error) {
	ref := def.Step.Params[plan.ParamKey]
	for range 2 {
		name, isEnv := strings.CutPrefix(ref, "env://")
		if !isEnv {
			break
		}
		if name == "" {
			return nil, fmt.Errorf("signing key reference %q names no environment variable", ref)
		}
		v := x.getenv(name)
		if v == "" {
			ref = ""
			break
		}
		if strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN") {
			return &located{pem: []byte(v), source: "env://" + name, how: KeyEnv}, nil
		}
		ref = v
	}
	if ref != "" {
		if strings.Contains(ref, "://") {
			return nil, fmt.Errorf("signing key reference %q: only env://VAR and file paths are supported", ref)
		}
		text, err := readSmallFile(ref, maxKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load signing key: %w", err)
		}
		return &located{pem: text, source: ref, how: KeyFile}, nil
	}
	var devKey, devPub *plan.Input
	for i, in := range def.Inputs {
		switch {
		case in.Kind == plan.KindKey && in.Name == "dev.key":
			devKey = &def.Inputs[i]
		case in.Kind == plan.KindKey && in.Name == "dev.pub":
			devPub = &def.Inputs[i]
		}
	}
	if devKey == nil || x.getenv(sign.EnvAllowDevKey) != "1" {
		dev := "the spec has no signing.devKey"
		if devKey != nil {
			dev = fmt.Sprintf("the spec's development key is used only with %s=1", sign.EnvAllowDevKey)
		}
		return nil, fmt.Errorf("%w: signing.key %q gives no key (set %s to a cosign private key, its file or env://VAR, and %s to its password); %s",
			sign.ErrNoKey, def.Step.Params[plan.ParamKey], sign.EnvKey, sign.EnvPassword, dev)
	}
	l := &located{source: devKey.Source.Path, how: KeyDev, dev: true}
	var err error
	if l.pem, err = x.readInput(ctx, *devKey, maxKeyFile); err != nil {
		return nil, fmt.Errorf("load development key: %w", err)
	}
	if devPub != nil {
		if l.devPub, err = x.readInput(ctx, *devPub, maxKeyFile); err != nil {
			return nil, fmt.Errorf("load development public key: %w", err)
		}
	}
	return l, nil
}

// readSmallFile reads at most max bytes of the file at p.
func readSmallFile(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is more than %d bytes", p, max)
	}
	return data, nil
}

// readInput reads a small file input through the Source, checked against
// its planned digest.
func (x *execution) readInput(ctx context.Context, in plan.Input, max int64) ([]byte, error) {
	if in.Size > max {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", in.Key(), in.Size, max)
	}
	rc, _, err := x.src.OpenFile(ctx, in)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != in.Digest {
		return nil, fmt.Errorf("%s hashes to %s, the plan says %s: it changed since planning", in.Key(), got, in.Digest)
	}
	return data, nil
}

// releaseSigner locates the release step's key and returns its identity
// for the step's cache key; the key itself is decrypted only if the step
// runs. A development key is announced through Options.Warn, cached or
// not, and a placeholder dataset hash is refused without one.
func (x *execution) releaseSigner(ctx context.Context, def *stepDef) (*signerRef, *located, error) {
	l, err := x.locateKey(ctx, def)
	if err != nil {
		return nil, nil, err
	}
	if h := def.Step.Params[plan.ParamDatasetHash]; h != "" && !digest.ValidHex(h) && !l.dev {
		ds := def.Step.Params[plan.ParamDataset]
		var files []kit.DatasetFile
		for _, in := range def.Inputs {
			if dest, ok := strings.CutPrefix(in.Name, ds+"/"); ok && in.Kind == plan.KindFile {
				files = append(files, kit.DatasetFile{Path: dest, Size: in.Size, SHA256: strings.TrimPrefix(in.Digest, "sha256:")})
			}
		}
		return nil, nil, fmt.Errorf("dataset %s: hash %q is a placeholder, accepted only with the development key (%s=1); a release pins the content hash: hash: %q", ds, h, sign.EnvAllowDevKey, kit.DatasetHash(files))
	}
	if l.dev {
		x.warn(fmt.Sprintf("release %s is signed with the spec's DEVELOPMENT key (%s=1): offline-kit.json and verify.sh say so; do not ship it", def.Target.Name, sign.EnvAllowDevKey))
	}
	sum := sha256.Sum256(l.pem)
	return &signerRef{Key: "sha256:" + hex.EncodeToString(sum[:]), Dev: l.dev}, l, nil
}

func (x *execution) getenv(k string) string {
	if k == "TMPDIR" && x.tempDir != "" {
		return x.tempDir
	}
	if x.getenvFn != nil {
		return x.getenvFn(k)
	}
	return os.Getenv(k)
}

func (x *execution) warn(msg string) {
	if x.warnFn != nil {
		x.progressMu.Lock()
		defer x.progressMu.Unlock()
		x.warnFn(msg)
	}
}

// doGoBuild builds a runner's Go binary: it snapshots the module's tree
// (checking its digest against the plan's), checks the go command is the
// toolchain the plan names, and runs gobuild.Build from the snapshot.
//
// Output: "RUNNER.tar.gz:DEST", the binary.
func (x *execution) doGoBuild(ctx context.Context, n *node) (outputs, error) {
	in, err := x.input(n, plan.KindGo)
	if err != nil {
		return nil, err
	}
	gs, ok := x.src.(GoSourcer)
	if !ok {
		return nil, fmt.Errorf("go %s: the source cannot provide Go source trees", in.Name)
	}
	dir, err := gs.GoSourceDir(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("go %s: %w", in.Name, err)
	}
	want := n.def.Builder.Go
	have, err := gobuild.Version(ctx, "", x.getenv)
	if err != nil {
		return nil, fmt.Errorf("go %s: %w", in.Name, err)
	}
	if have != want {
		return nil, fmt.Errorf("go %s: the plan builds with %s but the go command is %s: plan again, or build with %s", in.Name, want, have, want)
	}
	tmp, err := os.MkdirTemp(x.tempDir, "bale-go-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	got, err := gobuild.Snapshot(ctx, dir, src)
	if err != nil {
		return nil, fmt.Errorf("go %s: %w", in.Name, err)
	}
	if got != in.Digest {
		return nil, fmt.Errorf("go %s: the source tree %s hashes to %s, not the planned %s: it changed since planning", in.Name, in.Source.Path, got, in.Digest)
	}
	p := n.step.Params
	bin := filepath.Join(tmp, "bin")
	if err := gobuild.Build(ctx, gobuild.Options{
		Dir: src, Package: p[plan.ParamPackage], GOOS: p[plan.ParamGOOS], GOARCH: p[plan.ParamGOARCH],
		LDFlags: p[plan.ParamLDFlags], Out: bin, Getenv: x.getenv,
	}); err != nil {
		return nil, fmt.Errorf("go %s: %w", in.Name, err)
	}
	h, size, err := x.putFile(ctx, bin)
	if err != nil {
		return nil, fmt.Errorf("go %s: store binary: %w", in.Name, err)
	}
	out := outputs{}
	return out, out.add(n.step.Outputs[0], h, size)
}

// putFile stores the file at p, hashing it as it is copied.
func (x *execution) putFile(ctx context.Context, p string) (v1.Hash, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer f.Close()
	w, err := x.store.Writer(ctx)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	if _, err := io.Copy(w, f); err != nil {
		_ = w.Abort()
		return v1.Hash{}, 0, err
	}
	return w.Commit()
}

// fileOf stores a file input (read through the Source, checked against
// its digest) unless the store has it, and returns it as a kit file at its
// store path, with its known digest.
func (x *execution) fileOf(ctx context.Context, in plan.Input, dest string, mode int64) (kit.FileInput, error) {
	h, err := hash(in.Digest)
	if err != nil {
		return kit.FileInput{}, fmt.Errorf("%s: %w", in.Key(), err)
	}
	if ok, err := x.holds(ctx, h, in.Size); err != nil {
		return kit.FileInput{}, fmt.Errorf("%s: %w", in.Key(), err)
	} else if !ok {
		rc, size, err := x.src.OpenFile(ctx, in)
		if err != nil {
			return kit.FileInput{}, err
		}
		defer rc.Close()
		if size >= 0 && size != in.Size {
			return kit.FileInput{}, fmt.Errorf("%s is %d bytes, the plan says %d", in.Key(), size, in.Size)
		}
		if err := x.store.Put(ctx, h, in.Size, rc); err != nil {
			return kit.FileInput{}, fmt.Errorf("%s: %w", in.Key(), err)
		}
	}
	src := in.Source.Path
	if src == "" {
		src = in.Source.URL
	}
	path, err := x.localPath(h)
	if err != nil {
		return kit.FileInput{}, err
	}
	return kit.FileInput{Path: path, Dest: dest, Mode: mode, Source: src, SHA256: h.Hex, Size: in.Size}, nil
}

// streamedFile is a dataset file read from the Source as the tarball is
// written, checked against its planned digest and size by the reader.
func (x *execution) streamedFile(ctx context.Context, in plan.Input, dest string, mode int64) kit.FileInput {
	src := in.Source.Path
	if src == "" {
		src = in.Source.URL
	}
	return kit.FileInput{Dest: dest, Mode: mode, Source: src, SHA256: strings.TrimPrefix(in.Digest, "sha256:"), Size: in.Size,
		Open: func() (io.ReadCloser, error) {
			rc, size, err := x.src.OpenFile(ctx, in)
			if err != nil {
				return nil, err
			}
			if size >= 0 && size != in.Size {
				rc.Close()
				return nil, fmt.Errorf("%s is %d bytes, the plan says %d", in.Key(), size, in.Size)
			}
			return &checkedReader{rc: rc, h: sha256.New(), want: in.Digest, size: in.Size, what: in.Key()}, nil
		}}
}

// checkedReader fails at its end unless the bytes hash to want and are
// size long: a Source need not verify what it returns.
type checkedReader struct {
	rc   io.ReadCloser
	h    stdhash.Hash
	n    int64
	want string
	size int64
	what string
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.size {
		return n, fmt.Errorf("%s: more than the planned %d bytes: it changed since planning", c.what, c.size)
	}
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(c.h.Sum(nil)); c.n != c.size || got != c.want {
			return n, fmt.Errorf("%s: %d bytes hashing to %s, not the planned %d bytes %s: it changed since planning", c.what, c.n, got, c.size, c.want)
		}
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.rc.Close() }

// baleVersion is the version the kit's SBOM and provenance name as their
// tool and builder.
func baleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// doRelease builds a release's offline kit with kit.Build from the step's
// file inputs and its go-build steps' binaries, signing with the key
// releaseSigner located (decrypted only now), into a temporary directory,
// and stores every kit file.
//
// Outputs: every artifact of the release target.
func (x *execution) doRelease(ctx context.Context, n *node) (outputs, error) {
	p := n.step.Params
	runner, dataset := p[plan.ParamRunner], p[plan.ParamDataset]
	if n.signer == nil {
		return nil, errors.New("no signing key located")
	}
	kl := n.signKey
	if kl == nil {
		kl = x.decrypt(n.signer)
	}
	var key *sign.Key
	select {
	case <-kl.done:
		if kl.err != nil {
			return nil, kl.err
		}
		key = kl.key
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	ver := baleVersion()
	in := kit.Input{
		Release:        n.def.Target.Name,
		Name:           p[plan.ParamKit],
		Time:           n.def.mtime,
		PlanID:         n.def.Plan.ID,
		SpecDigest:     n.def.Plan.SpecDigest,
		Tool:           "bale-" + ver,
		BuilderVersion: map[string]string{"bale": ver},
		Key:            key,
		Runner: kit.Runner{
			Name: runner, Version: p[plan.ParamRunnerVersion],
			Supplier: p[plan.ParamSupplier], License: p[plan.ParamLicense],
		},
		GzipLevel: n.def.Target.Compression.Level,
	}
	if n.def.Builder.Go != "" {
		in.BuilderVersion["go"] = n.def.Builder.Go
	}
	var deps []provenance.Dependency
	if dataset != "" {
		in.Dataset = &kit.Dataset{Name: dataset, Hash: p[plan.ParamDatasetHash], BuilderID: p[plan.ParamBuilderID], BuildType: p[plan.ParamBuildType]}
	}
	for _, fi := range n.def.Inputs {
		if fi.Kind != plan.KindFile {
			continue
		}
		mode := int64(0o644)
		if p[plan.ParamModePrefix+fi.Name] == "0755" {
			mode = 0o755
		}
		if dest, ok := strings.CutPrefix(fi.Name, runner+"/"); ok {
			f, err := x.fileOf(ctx, fi, dest, mode)
			if err != nil {
				return nil, err
			}
			in.Runner.Files = append(in.Runner.Files, f)
			deps = append(deps, provenance.Dependency{Name: fi.Key(), URI: f.Source, Digest: provenance.Digest{SHA256: f.SHA256}})
		} else if dest, ok := strings.CutPrefix(fi.Name, dataset+"/"); ok && dataset != "" {
			// A dataset file is streamed from its source into the tarball,
			// not copied into the store first: the source's reader fails
			// the build unless the bytes are the planned ones.
			in.Dataset.Files = append(in.Dataset.Files, x.streamedFile(ctx, fi, dest, mode))
		} else {
			return nil, fmt.Errorf("file %s belongs to neither runner %s nor dataset %s", fi.Name, runner, dataset)
		}
	}
	for _, d := range n.needs {
		for _, o := range d.result.Outputs {
			bundle, dest, ok := plan.CutEntry(o.Path)
			if !ok || bundle != runner+".tar.gz" {
				return nil, fmt.Errorf("go-build output %s is not inside %s.tar.gz", o.Path, runner)
			}
			if ok, err := x.holds(ctx, o.Digest, o.Size); err != nil {
				return nil, err
			} else if !ok {
				return nil, blobMissing(fmt.Errorf("go-build output %s: %w", o.Path, os.ErrNotExist))
			}
			path, err := x.localPath(o.Digest)
			if err != nil {
				return nil, err
			}
			in.Runner.Files = append(in.Runner.Files, kit.FileInput{Path: path, Dest: dest, Mode: 0o755, Source: "go-build " + d.step.ID, SHA256: o.Digest.Hex, Size: o.Size})
			g := d.def.Inputs[0]
			deps = append(deps, provenance.Dependency{Name: g.Key(), URI: g.Source.Path, Digest: provenance.Digest{SHA256: strings.TrimPrefix(g.Digest, "sha256:")}})
		}
	}
	sortFiles := func(fs []kit.FileInput) {
		slices.SortFunc(fs, func(a, b kit.FileInput) int { return strings.Compare(a.Dest, b.Dest) })
	}
	sortFiles(in.Runner.Files)
	if in.Dataset != nil {
		sortFiles(in.Dataset.Files)
		slices.SortFunc(deps, func(a, b provenance.Dependency) int { return strings.Compare(a.Name, b.Name) })
		in.Dataset.Dependencies = deps
	}
	tmp, err := os.MkdirTemp(x.tempDir, "bale-release-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := kit.Build(ctx, tmp, in); err != nil {
		return nil, err
	}
	out := outputs{}
	for _, name := range n.step.Outputs {
		h, size, err := x.putFile(ctx, filepath.Join(tmp, name))
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", name, err)
		}
		if err := out.add(name, h, size); err != nil {
			return nil, err
		}
	}
	// Anything else kit.Build wrote is a file the plan does not declare.
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, err
	}
	if len(entries) != len(n.step.Outputs) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return nil, fmt.Errorf("the kit holds %s, the plan declares %s", strings.Join(names, ", "), strings.Join(n.step.Outputs, ", "))
	}
	return out, nil
}

// keyLoad is a release key being decrypted: key and err are set when done
// is closed.
type keyLoad struct {
	done chan struct{}
	key  *sign.Key
	err  error
}

// decrypt starts decrypting the located key l.
func (x *execution) decrypt(l *located) *keyLoad {
	kl := &keyLoad{done: make(chan struct{})}
	password := []byte(x.getenv(sign.EnvPassword))
	go func() {
		defer close(kl.done)
		kl.key, kl.err = sign.LoadPEM(l.pem, password, l.source, l.dev, l.devPub)
	}()
	return kl
}

// decryptEarly starts decrypting release node n's key unless n's result is
// in the action cache. The key's scrypt (about 0.3 s of one core) then
// overlaps the go-build steps n needs instead of following them; n's cache
// key is its definition's, known before they run. A warm build decrypts
// nothing. If a needed step fails, the decryption finishes unused.
func (x *execution) decryptEarly(ctx context.Context, n *node) *keyLoad {
	if res, hit, err := x.store.GetAction(ctx, n.key); err == nil && hit && sameOutputs(res, n.step.Outputs) {
		return nil
	}
	return x.decrypt(n.signer)
}

// kits describes the offline kit of every release step, in target order.
func (x *execution) kits() []Kit {
	var out []Kit
	for _, tg := range x.targets {
		for _, n := range x.nodes {
			if n.target != tg || n.step.Action != plan.ActionRelease || n.signer == nil {
				continue
			}
			p := n.step.Params
			out = append(out, Kit{
				Target:     tg.t.Name,
				Name:       p[plan.ParamKit],
				Archive:    kit.NamesFor(p[plan.ParamRunner], p[plan.ParamDataset], p[plan.ParamDatasetHash], p[plan.ParamKit]).Archive,
				SigningKey: n.signer.how,
			})
		}
	}
	return out
}

// localPath returns the file of blob h in a local store. The kit builder
// still reads runner and kit files by path (the SBOM reads a Go binary's
// build information, which needs random access), so a release builds only
// on a store with files.
func (x *execution) localPath(h v1.Hash) (string, error) {
	d, ok := x.store.(interface{ Path(v1.Hash) string })
	if !ok {
		return "", fmt.Errorf("blob %s: a release is built from a local store", h)
	}
	return d.Path(h), nil
}
