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

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/gobuild"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/kit/assemble"
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
// cannot change what a given key text signs, only whether it opens) and
// whether it is known to be a development key. It is in the release step's
// cache key, so a warm rebuild knows its result without the ~1 s scrypt
// key decryption, and another key never reuses this one's signatures.
//
// AllowDev is set when COSIGN_ALLOW_DEV_KEY=1 permits a development key
// and the key is not known to be one: a development key encrypted anew is
// recognised (by its public key) only once decrypted, so a result built
// with that permission must not be reused without it.
type signerRef struct {
	Key      string `json:"key"`
	Dev      bool   `json:"dev"`
	AllowDev bool   `json:"allowDev,omitempty"`
}

// located is a release step's signing key: found (sign.Located) but not
// yet decrypted, or given opened (Options.SigningKey).
type located struct {
	loc   *sign.Located
	given *sign.Key
	// how is KeyFile, KeyEnv, KeyText, KeyDev or KeyGiven, for Result.Kits.
	how string
	// dev says the key is known to be a development key.
	dev    bool
	devPub []byte
}

// How a release's signing key was given, as Kit.SigningKey says.
const (
	KeyFile  = sign.FromFile // a cosign key file: signing.key or the variable it names holds its path
	KeyEnv   = sign.FromEnv  // the key's PEM text in an environment variable (env://VAR)
	KeyText  = sign.FromText // the key's PEM text as the reference itself
	KeyDev   = "dev"         // the spec's development key, with COSIGN_ALLOW_DEV_KEY=1
	KeyGiven = "given"       // Options.SigningKey (bale serve --signing-key)
)

// maxKeyFile bounds a development key input; cosign keys are under 1 KiB.
const maxKeyFile = 64 << 10

// locateKey finds the release step's signing key: Options.SigningKey; else
// the spec's signing.key reference (sign.Locate: env://VAR, whose value
// may be PEM text or a file path; a file path; PEM text), unless
// Options.IgnoreSpecKey; else the spec's development key when
// COSIGN_ALLOW_DEV_KEY=1. With none it fails wrapping sign.ErrNoKey,
// naming COSIGN_KEY and COSIGN_ALLOW_DEV_KEY.
func (x *execution) locateKey(ctx context.Context, def *stepDef) (*located, error) {
	var devKey, devPub *plan.Input
	for i, in := range def.Inputs {
		switch {
		case in.Kind == plan.KindKey && in.Name == "dev.key":
			devKey = &def.Inputs[i]
		case in.Kind == plan.KindKey && in.Name == "dev.pub":
			devPub = &def.Inputs[i]
		}
	}
	l := &located{}
	// The spec's development public key marks its key as a development
	// key however it is given; only the development key itself needs it.
	var devPubErr error
	if devPub != nil {
		l.devPub, devPubErr = x.readInput(ctx, *devPub, maxKeyFile)
	}
	if x.signingKey != nil {
		l.given, l.how, l.dev = x.signingKey, KeyGiven, x.signingKey.Dev()
		if l.devPub != nil {
			if pub, err := sign.ParsePublicKey(l.devPub); err == nil && pub.Equal(x.signingKey.Verifier()) {
				l.dev = true
			}
		}
		return l, nil
	}
	if !x.noSpecKey {
		loc, err := sign.Locate(def.Step.Params[plan.ParamKey], x.getenv)
		if err != nil {
			return nil, err
		}
		if loc != nil {
			// The spec's own development key given as its release key
			// is still the development key.
			if devKey != nil && loc.TextDigest() == devKey.Digest {
				loc.Dev = true
			}
			l.loc, l.how, l.dev = loc, loc.From, loc.KnownDev()
			return l, nil
		}
	}
	if devKey == nil || x.getenv(sign.EnvAllowDevKey) != "1" {
		dev := "the spec has no signing.devKey"
		if devKey != nil {
			dev = fmt.Sprintf("the spec's development key is used only with %s=1", sign.EnvAllowDevKey)
		}
		given := fmt.Sprintf("signing.key %q gives no key", def.Step.Params[plan.ParamKey])
		if x.noSpecKey {
			given = "no signing key was given (bale serve --signing-key)"
		}
		return nil, fmt.Errorf("%w: %s (set %s to a cosign private key, its file or env://VAR, and %s to its password); %s",
			sign.ErrNoKey, given, sign.EnvKey, sign.EnvPassword, dev)
	}
	if devPubErr != nil {
		return nil, fmt.Errorf("load development public key: %w", devPubErr)
	}
	text, err := x.readInput(ctx, *devKey, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load development key: %w", err)
	}
	l.loc = &sign.Located{PEM: text, Source: devKey.Source.Path, From: sign.FromFile, Dev: true}
	l.how, l.dev = KeyDev, true
	return l, nil
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
	data, err := capread.ReadAll(rc, max)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Key(), err)
	}
	sum := sha256.Sum256(data)
	if got := digest.Prefix + hex.EncodeToString(sum[:]); got != in.Digest {
		return nil, fmt.Errorf("%s hashes to %s, the plan says %s: it changed since planning", in.Key(), got, in.Digest)
	}
	return data, nil
}

// errDevKey says a development key needs COSIGN_ALLOW_DEV_KEY=1.
func errDevKey(source string) error {
	return fmt.Errorf("the signing key %s is a development key (the repository's, known by its public key, or the spec's signing.devKey): its private half is public, so it signs only with %s=1, and its kits say so", source, sign.EnvAllowDevKey)
}

// releaseSigner locates the release step's key and returns its identity
// for the step's cache key; the key itself is decrypted only if the step
// runs. A development key is refused without COSIGN_ALLOW_DEV_KEY=1 and
// announced through Options.Warn, cached or not; a placeholder dataset
// hash is refused without one (kit.DatasetNameHash, the rule the kit
// build applies again once the key is open).
func (x *execution) releaseSigner(ctx context.Context, def *stepDef) (*signerRef, *located, error) {
	l, err := x.locateKey(ctx, def)
	if err != nil {
		return nil, nil, err
	}
	allowed := x.getenv(sign.EnvAllowDevKey) == "1"
	source := l.source()
	if l.dev && !allowed {
		return nil, nil, errDevKey(source)
	}
	if h := def.Step.Params[plan.ParamDatasetHash]; h != "" {
		ds := def.Step.Params[plan.ParamDataset]
		var files []kit.DatasetFile
		for _, in := range def.Inputs {
			if dest, ok := strings.CutPrefix(in.Name, ds+"/"); ok && in.Kind == plan.KindFile {
				files = append(files, kit.DatasetFile{Path: dest, Size: in.Size, SHA256: digest.Hex(in.Digest)})
			}
		}
		// A key not known to be a development key may prove one once
		// decrypted, when that is permitted: the kit build decides then.
		if _, err := kit.DatasetNameHash(h, kit.DatasetHash(files), l.dev || allowed); err != nil {
			return nil, nil, fmt.Errorf("dataset %s: %w", ds, err)
		}
	}
	if l.dev {
		x.warn(fmt.Sprintf("release %s is signed with a DEVELOPMENT key (%s, %s=1): offline-kit.json and verify.sh say so; do not ship it", def.Target.Name, source, sign.EnvAllowDevKey))
	}
	ref := &signerRef{Dev: l.dev, AllowDev: allowed && !l.dev}
	if l.given != nil {
		ref.Key = l.given.TextDigest()
	} else {
		ref.Key = l.loc.TextDigest()
	}
	return ref, l, nil
}

// source names where the key came from.
func (l *located) source() string {
	if l.given != nil {
		return l.given.Source()
	}
	return l.loc.Source
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
func (x *execution) fileOf(ctx context.Context, in plan.Input, dest string, mode int64) (assemble.FileInput, error) {
	h, err := hash(in.Digest)
	if err != nil {
		return assemble.FileInput{}, fmt.Errorf("%s: %w", in.Key(), err)
	}
	if ok, err := x.holds(ctx, h, in.Size); err != nil {
		return assemble.FileInput{}, fmt.Errorf("%s: %w", in.Key(), err)
	} else if !ok {
		rc, size, err := x.src.OpenFile(ctx, in)
		if err != nil {
			return assemble.FileInput{}, err
		}
		defer rc.Close()
		if size >= 0 && size != in.Size {
			return assemble.FileInput{}, fmt.Errorf("%s is %d bytes, the plan says %d", in.Key(), size, in.Size)
		}
		if err := x.store.Put(ctx, h, in.Size, rc); err != nil {
			return assemble.FileInput{}, fmt.Errorf("%s: %w", in.Key(), err)
		}
	}
	src := in.Source.Path
	if src == "" {
		src = in.Source.URL
	}
	return assemble.FileInput{Dest: dest, Mode: mode, Source: src, SHA256: h.Hex, Size: in.Size, Open: x.blobOpener(ctx, h, in.Size)}, nil
}

// streamedFile is a dataset file read from the Source as the tarball is
// written, checked against its planned digest and size by the reader.
func (x *execution) streamedFile(ctx context.Context, in plan.Input, dest string, mode int64) assemble.FileInput {
	src := in.Source.Path
	if src == "" {
		src = in.Source.URL
	}
	return assemble.FileInput{Dest: dest, Mode: mode, Source: src, SHA256: digest.Hex(in.Digest), Size: in.Size,
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
		if got := digest.Prefix + hex.EncodeToString(c.h.Sum(nil)); c.n != c.size || got != c.want {
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

// doRelease builds a release's offline kit with assemble.Kit from the step's
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
	in := assemble.Input{
		Release:        n.def.Target.Name,
		Name:           p[plan.ParamKit],
		Time:           n.def.mtime,
		PlanID:         n.def.Plan.ID,
		SpecDigest:     n.def.Plan.SpecDigest,
		Tool:           "bale-" + ver,
		BuilderVersion: map[string]string{"bale": ver},
		Key:            key,
		Runner: assemble.Runner{
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
		in.Dataset = &assemble.Dataset{Name: dataset, Hash: p[plan.ParamDatasetHash], BuilderID: p[plan.ParamBuilderID], BuildType: p[plan.ParamBuildType]}
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
			in.Runner.Files = append(in.Runner.Files, assemble.FileInput{Dest: dest, Mode: 0o755, Source: "go-build " + d.step.ID, SHA256: o.Digest.Hex, Size: o.Size, Open: x.blobOpener(ctx, o.Digest, o.Size)})
			g := d.def.Inputs[0]
			deps = append(deps, provenance.Dependency{Name: g.Key(), URI: g.Source.Path, Digest: provenance.Digest{SHA256: digest.Hex(g.Digest)}})
		}
	}
	sortFiles := func(fs []assemble.FileInput) {
		slices.SortFunc(fs, func(a, b assemble.FileInput) int { return strings.Compare(a.Dest, b.Dest) })
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
	if _, err := assemble.Kit(ctx, tmp, in); err != nil {
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
	// Anything else assemble.Kit wrote is a file the plan does not declare.
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

// decrypt starts decrypting the located key l. A key that proves to be a
// development key once open is refused without COSIGN_ALLOW_DEV_KEY=1.
func (x *execution) decrypt(l *located) *keyLoad {
	kl := &keyLoad{done: make(chan struct{})}
	if l.given != nil {
		kl.key = l.given
		close(kl.done)
		return kl
	}
	password := []byte(x.getenv(sign.EnvPassword))
	allowed := x.getenv(sign.EnvAllowDevKey) == "1"
	go func() {
		defer close(kl.done)
		kl.key, kl.err = l.loc.Open(password, l.devPub)
		if kl.err == nil && kl.key.Dev() && !allowed {
			kl.key, kl.err = nil, errDevKey(l.loc.Source)
		}
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

// kits describes the offline kit of every release step, in target order,
// each with its manifest read from the store (a cached step's too).
func (x *execution) kits(ctx context.Context) ([]Kit, error) {
	var out []Kit
	for _, tg := range x.targets {
		for _, n := range x.nodes {
			if n.target != tg || n.step.Action != plan.ActionRelease || n.signer == nil {
				continue
			}
			m, err := x.kitManifest(ctx, n)
			if err != nil {
				return nil, fmt.Errorf("release %s: %w", tg.t.Name, err)
			}
			out = append(out, Kit{
				Target:     tg.t.Name,
				Name:       n.step.Params[plan.ParamKit],
				Archive:    m.Archive,
				SigningKey: n.signer.how,
				Manifest:   m,
			})
		}
	}
	return out, nil
}

// kitManifest reads release node n's offline-kit.json from the store.
func (x *execution) kitManifest(ctx context.Context, n *node) (*kit.Manifest, error) {
	for _, o := range n.result.Outputs {
		if o.Path != kit.ManifestName {
			continue
		}
		rc, _, err := x.store.Open(ctx, o.Digest)
		if err != nil {
			return nil, blobMissing(fmt.Errorf("%s: %w", kit.ManifestName, err))
		}
		defer rc.Close()
		data, err := capread.ReadAll(rc, kit.MaxSmallFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kit.ManifestName, err)
		}
		return kit.ParseManifest(data)
	}
	return nil, fmt.Errorf("no %s among the release step's outputs", kit.ManifestName)
}

// blobOpener opens blob h of size bytes from the store, for the kit
// assembler: the reader fails at its end unless the bytes are h.
func (x *execution) blobOpener(ctx context.Context, h v1.Hash, size int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, n, err := x.store.Open(ctx, h)
		if err != nil {
			return nil, blobMissing(err)
		}
		if n != size {
			rc.Close()
			return nil, fmt.Errorf("%w: blob %s is %d bytes, the result records %d", cas.ErrCorrupt, h, n, size)
		}
		return rc, nil
	}
}
