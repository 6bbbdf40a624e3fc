package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// verifier passes bytes through while hashing them. Where a plain reader
// would return io.EOF it returns an error instead if the bytes do not hash
// to want or are not size long (size < 0: any length), and it fails as
// soon as more than size bytes arrive.
type verifier struct {
	rc   io.ReadCloser
	h    hash.Hash
	want string
	size int64
	n    int64
	what string
	err  error
}

func newVerifier(rc io.ReadCloser, want string, size int64, what string) *verifier {
	return &verifier{rc: rc, h: sha256.New(), want: want, size: size, what: what}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%s %s: more than the planned %d bytes: the source changed since planning", v.what, v.want, v.size)
		return n, v.err
	}
	if errors.Is(err, io.EOF) {
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%s %s: %d bytes, not the planned %d: the source changed since planning", v.what, v.want, v.n, v.size)
			return n, v.err
		}
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.err = fmt.Errorf("%s: bytes hash to %s, not the planned %s: the source changed since planning", v.what, got, v.want)
			return n, v.err
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s %s: %w", v.what, v.want, err)
	}
	v.err = err
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// hashLocal streams the local file rel through sha256. The file must be a
// single-linked regular file reached without symbolic links (see local.go).
func (r *Resolver) hashLocal(rel string) (digest string, size int64, err error) {
	f, _, err := r.openLocal(rel, singleLink)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", rel, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// hashURL downloads url through sha256 without keeping the bytes.
func (r *Resolver) hashURL(ctx context.Context, url string) (digest string, size int64, err error) {
	if err := r.offline(url); err != nil {
		return "", 0, err
	}
	resp, err := r.get(ctx, url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return "", 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// File pins a file of a release (kind plan.KindFile) or a signing key file
// (plan.KindKey) under the given input name. A local file is hashed where
// it lies; a URL file must carry a digest in the spec, and is downloaded
// (streamed, not stored) to check it, so a plan never pins what bale has
// not seen. A key written as "env://VAR" is not an input: File returns an
// error wrapping ErrEnvKey, and callers check EnvKey first.
func (r *Resolver) File(ctx context.Context, specDir, kind, name string, f spec.File) (plan.Input, error) {
	what := f.Path
	if what == "" {
		what = f.URL
	}
	in, err := r.file(ctx, specDir, kind, name, f)
	if err != nil {
		k := kind
		if k == "" {
			k = "file"
		}
		return plan.Input{}, inputErr(k, name, what, err)
	}
	return in, nil
}

func (r *Resolver) file(ctx context.Context, specDir, kind, name string, f spec.File) (plan.Input, error) {
	if kind != plan.KindFile && kind != plan.KindKey && kind != plan.KindValues {
		return plan.Input{}, fmt.Errorf("kind %q: want %q, %q or %q", kind, plan.KindFile, plan.KindKey, plan.KindValues)
	}
	if f.Digest != "" && !plan.ValidDigest(f.Digest) {
		return plan.Input{}, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", f.Digest)
	}
	if _, ok := EnvKey(f.Path); ok || strings.HasPrefix(f.Path, "env://") {
		return plan.Input{}, ErrEnvKey
	}
	in := plan.Input{Kind: kind, Name: name}
	switch {
	case f.Path != "" && f.URL != "":
		return plan.Input{}, errors.New("set path or url, not both")
	case f.Path != "":
		rel, err := r.local(specDir, f.Path)
		if err != nil {
			return plan.Input{}, err
		}
		d, n, err := r.hashLocal(rel)
		if err != nil {
			return plan.Input{}, err
		}
		in.Source = plan.Source{Type: plan.SourceFile, Path: rel}
		in.Digest, in.Size = d, n
	case f.URL != "":
		if f.Digest == "" {
			return plan.Input{}, errors.New("a URL file must carry its digest in the spec")
		}
		d, n, err := r.hashURL(ctx, f.URL)
		if err != nil {
			return plan.Input{}, err
		}
		in.Source = plan.Source{Type: plan.SourceURL, URL: f.URL}
		in.Digest, in.Size = d, n
	default:
		return plan.Input{}, errors.New("set path or url")
	}
	if f.Digest != "" && f.Digest != in.Digest {
		return plan.Input{}, fmt.Errorf("spec pins %s but the content has %s", f.Digest, in.Digest)
	}
	return in, nil
}

// Signature pins DSSE or TUF metadata copied into a pack unchanged.
func (r *Resolver) Signature(ctx context.Context, specDir string, s spec.SignatureFile) (plan.Input, error) {
	if s.Digest != "" && !plan.ValidDigest(s.Digest) {
		return plan.Input{}, inputErr("signature", s.Name, s.Path, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", s.Digest))
	}
	rel, err := r.local(specDir, s.Path)
	if err == nil {
		var in plan.Input
		in.Digest, in.Size, err = r.hashLocal(rel)
		if err == nil {
			if s.Digest != "" && s.Digest != in.Digest {
				err = fmt.Errorf("spec pins %s but the content has %s", s.Digest, in.Digest)
			} else {
				in.Kind, in.Name = plan.KindSignature, s.Name
				in.Source = plan.Source{Type: plan.SourceFile, Path: rel}
				return in, nil
			}
		}
	}
	return plan.Input{}, inputErr("signature", s.Name, s.Path, err)
}

// Bundle records a referenced evidence or mirror bundle by the digest and
// URL the spec gives; bale does not download it. A local copy, when the
// spec names one, must hash to that digest, and gives the input its size
// (0 without a local copy: unknown).
func (r *Resolver) Bundle(ctx context.Context, specDir string, b spec.BundleRef) (plan.Input, error) {
	what := b.URL
	if b.Path != "" {
		what = b.Path
	}
	fail := func(err error) (plan.Input, error) {
		return plan.Input{}, inputErr("bundle", b.Name, what, err)
	}
	if !plan.ValidDigest(b.Digest) {
		return fail(fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", b.Digest))
	}
	if b.URL == "" {
		return fail(errors.New("no url"))
	}
	in := plan.Input{
		Kind:   plan.KindBundle,
		Name:   b.Name,
		Source: plan.Source{Type: plan.SourceURL, URL: b.URL},
		Digest: b.Digest,
		URL:    b.URL,
	}
	if b.Path != "" {
		rel, err := r.local(specDir, b.Path)
		if err != nil {
			return fail(err)
		}
		d, n, err := r.hashLocal(rel)
		if err != nil {
			return fail(err)
		}
		if d != b.Digest {
			return fail(fmt.Errorf("bundle %s: local copy %s has %s but the spec says %s", b.Name, b.Path, d, b.Digest))
		}
		in.Source = plan.Source{Type: plan.SourceFile, Path: rel, URL: b.URL}
		in.Size = n
	}
	return in, nil
}

// OpenFile opens the bytes of a file, key, signature or bundle input from
// its source. The reader fails at its end, instead of returning io.EOF,
// when the bytes are not the planned ones. The returned size is the planned
// size, or -1 for a bundle planned without a local copy.
func (r *Resolver) OpenFile(ctx context.Context, in plan.Input) (io.ReadCloser, int64, error) {
	rc, n, err := r.openFile(ctx, in)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s %s (%s): %w", in.Kind, in.Name, sourceString(in.Source), err)
	}
	return rc, n, nil
}

func (r *Resolver) openFile(ctx context.Context, in plan.Input) (io.ReadCloser, int64, error) {
	switch in.Kind {
	case plan.KindFile, plan.KindKey, plan.KindSignature, plan.KindBundle, plan.KindValues:
	default:
		return nil, 0, fmt.Errorf("input %s is not a file", in.Key())
	}
	if !plan.ValidDigest(in.Digest) {
		return nil, 0, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", in.Digest)
	}
	size := in.Size
	if in.Kind == plan.KindBundle && in.Source.Type == plan.SourceURL && size == 0 {
		size = -1
	}
	switch in.Source.Type {
	case plan.SourceFile:
		f, fi, err := r.openLocal(in.Source.Path, singleLink)
		if err != nil {
			return nil, 0, err
		}
		if fi.Size() != size {
			f.Close()
			return nil, 0, fmt.Errorf("%s is %d bytes, not the planned %d: the file changed since planning", in.Source.Path, fi.Size(), size)
		}
		return newVerifier(f, in.Digest, size, in.Kind), size, nil
	case plan.SourceURL:
		if err := r.offline(in.Source.URL); err != nil {
			return nil, 0, err
		}
		resp, err := r.get(ctx, in.Source.URL)
		if err != nil {
			return nil, 0, err
		}
		if size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != size {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: %d bytes, not the planned %d: the file changed since planning", in.Source.URL, resp.ContentLength, size)
		}
		return newVerifier(resp.Body, in.Digest, size, in.Kind), size, nil
	case plan.SourceEnv:
		return nil, 0, ErrEnvKey
	default:
		return nil, 0, fmt.Errorf("source type %q is not a file source", in.Source.Type)
	}
}
