package kit

import (
	"archive/tar"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/provenance"
	"github.com/bale-build/bale/sbom"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/verify"
)

// Checks Verify runs, as they appear in a verify.Failure.
const (
	CheckFiles           = "files"            // the directory holds exactly the kit's files
	CheckPublicKey       = "public-key"       // cosign.pub parses (and is the trusted key, if given)
	CheckSumsSignature   = "sums-signature"   // SHA256SUMS.cosign.bundle signs SHA256SUMS
	CheckSums            = "sums"             // SHA256SUMS lists exactly the kit, each file matches
	CheckManifest        = "manifest"         // offline-kit.json parses; sizes and digests match
	CheckSignature       = "signature"        // a cosign blob bundle verifies its artifact
	CheckDSSE            = "dsse"             // a provenance envelope verifies over its PAE
	CheckProvenance      = "provenance"       // the statement's subject digest is the artifact's
	CheckSBOM            = "sbom"             // the SBOM's file checksums are the bundle's files
	CheckDatasetManifest = "dataset-manifest" // the dataset manifest is the dataset tarball's files
	CheckArchive         = "archive"          // the kit archive matches its .sha256
)

// newReport starts the report of verifying the kit at path.
func newReport(path string) *verify.Report {
	return &verify.Report{Path: path, KitFacts: &verify.KitFacts{Kind: ManifestKind}, Checks: []string{}, Failures: []verify.Failure{}}
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// TrustedKey, when set, is the PEM public key the kit must be signed
	// with; the shipped cosign.pub must be this key. Without it the kit is
	// checked against its own cosign.pub, which proves integrity, not origin.
	TrustedKey []byte
	// Limits bound the tarballs read; zero fields take archive.DefaultLimits.
	Limits archive.Limits
}

// maxSmallFile bounds the kit's JSON, key and checksum files read whole.
const maxSmallFile = 64 << 20

// Verify checks the offline kit in dir, offline and in process: the file
// set, SHA256SUMS and its signature, offline-kit.json, every signature
// bundle, every DSSE envelope (PAE) and provenance subject digest, the
// SBOM's file checksums against the runner tarball, the dataset manifest
// against the dataset tarball, and the kit archive's .sha256 when present.
// The error is for a kit that cannot be read at all (cancelled context,
// missing directory); everything wrong with the kit is in the report.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*verify.Report, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("verify kit: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("verify kit %s: not a directory", dir)
	}
	v := &verifier{ctx: ctx, dir: dir, opts: opts, r: newReport(dir), sums: map[string]string{}}
	v.run()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify kit %s: %w", dir, err)
	}
	return v.r, nil
}

type verifier struct {
	ctx  context.Context
	dir  string
	opts VerifyOptions
	r    *verify.Report
	m    *Manifest
	key  *sign.Verifier
	sums map[string]string // file → actual sha256 hex, for files hashed
}

func (v *verifier) ran(check string) { v.r.Ran(check) }

func (v *verifier) fail(file, check, format string, args ...any) {
	v.r.Ran(check)
	v.r.Fail(file, check, fmt.Sprintf(format, args...))
}

// open opens a kit file, refusing anything but a regular file directly in
// the kit directory.
func (v *verifier) open(name string) (*os.File, int64, error) {
	if !ValidName(name) {
		return nil, 0, fmt.Errorf("%q is not a plain file name", name)
	}
	p := filepath.Join(v.dir, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (v *verifier) readSmall(name string) ([]byte, error) {
	f, size, err := v.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxSmallFile {
		return nil, fmt.Errorf("%d bytes, more than %d", size, maxSmallFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	v.sums[name] = hex.EncodeToString(sum[:])
	return b, nil
}

// digest returns a kit file's sha256 and size, hashing it once.
func (v *verifier) digest(name string) (string, int64, error) {
	f, size, err := v.open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if s, ok := v.sums[name]; ok {
		return s, size, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, readerCtx{v.ctx, f}); err != nil {
		return "", 0, err
	}
	s := hex.EncodeToString(h.Sum(nil))
	v.sums[name] = s
	return s, size, nil
}

func (v *verifier) run() {
	// offline-kit.json first: it names everything else.
	data, err := v.readSmall(ManifestName)
	if err != nil {
		v.fail(ManifestName, CheckManifest, "%v", err)
		return
	}
	m, err := ParseManifest(data)
	if err != nil {
		v.fail(ManifestName, CheckManifest, "%v", err)
		return
	}
	v.ran(CheckManifest)
	v.m = m
	v.r.Name, v.r.DevKey = m.Name, m.DevKey

	v.checkFiles()
	v.checkPublicKey()
	if v.key == nil {
		return
	}
	v.checkSums()
	for _, a := range m.Artifacts {
		if v.ctx.Err() != nil {
			return
		}
		v.checkArtifact(a)
	}
	v.checkArchive()
}

// checkFiles: the directory holds exactly the kit's files (plus the kit
// archive and its .sha256 beside them).
func (v *verifier) checkFiles() {
	v.ran(CheckFiles)
	want := map[string]bool{ManifestName: true, SumsName: true, SumsSignatureName: true}
	for _, a := range v.m.Artifacts {
		want[a.Name] = true
	}
	allowed := map[string]bool{}
	if v.m.Archive != "" {
		allowed[v.m.Archive], allowed[v.m.Archive+".sha256"] = true, true
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		v.fail("", CheckFiles, "list %s: %v", v.dir, err)
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		seen[name] = true
		switch {
		case want[name] && e.Type().IsRegular():
		case allowed[name] && e.Type().IsRegular():
		case want[name] || allowed[name]:
			v.fail(name, CheckFiles, "not a regular file (%s)", e.Type())
		default:
			v.fail(name, CheckFiles, "not part of the kit (offline-kit.json does not list it)")
		}
	}
	for _, name := range sortedKeys(want) {
		if !seen[name] {
			v.fail(name, CheckFiles, "missing")
		}
	}
}

func (v *verifier) checkPublicKey() {
	v.ran(CheckPublicKey)
	if v.m.PublicKey != PublicKeyName {
		v.fail(ManifestName, CheckPublicKey, "publicKey %q, want %q", v.m.PublicKey, PublicKeyName)
		return
	}
	data, err := v.readSmall(PublicKeyName)
	if err != nil {
		v.fail(PublicKeyName, CheckPublicKey, "%v", err)
		return
	}
	key, err := sign.ParsePublicKey(data)
	if err != nil {
		v.fail(PublicKeyName, CheckPublicKey, "%v", err)
		return
	}
	if v.opts.TrustedKey != nil {
		trusted, err := sign.ParsePublicKey(v.opts.TrustedKey)
		if err != nil {
			v.fail("", CheckPublicKey, "trusted key: %v", err)
			return
		}
		if !trusted.Equal(key) {
			v.fail(PublicKeyName, CheckPublicKey, "is not the trusted key")
			return
		}
	}
	v.key = key
}

func (v *verifier) checkSums() {
	v.ran(CheckSums)
	v.ran(CheckSumsSignature)
	data, err := v.readSmall(SumsName)
	if err != nil {
		v.fail(SumsName, CheckSums, "%v", err)
		return
	}
	bundle, err := v.readSmall(SumsSignatureName)
	if err != nil {
		v.fail(SumsSignatureName, CheckSumsSignature, "%v", err)
	} else if err := v.key.VerifyBlob(bundle, sha256.Sum256(data)); err != nil {
		v.fail(SumsName, CheckSumsSignature, "%s does not verify it with %s: %v", SumsSignatureName, PublicKeyName, err)
	}
	sums, err := ParseSums(data)
	if err != nil {
		v.fail(SumsName, CheckSums, "%v", err)
		return
	}
	want := map[string]bool{ManifestName: true}
	for _, a := range v.m.Artifacts {
		want[a.Name] = true
	}
	for _, s := range sums {
		if !want[s.Name] {
			v.fail(SumsName, CheckSums, "lists %s, which is not part of the kit", s.Name)
			continue
		}
		delete(want, s.Name)
		got, _, err := v.digest(s.Name)
		switch {
		case err != nil:
			v.fail(s.Name, CheckSums, "%v", err)
		case got != s.SHA256:
			v.fail(s.Name, CheckSums, "sha256 %s, SHA256SUMS says %s", got, s.SHA256)
		}
	}
	for _, name := range sortedKeys(want) {
		v.fail(SumsName, CheckSums, "does not list %s", name)
	}
}

func (v *verifier) checkArtifact(a Artifact) {
	got, size, err := v.digest(a.Name)
	if err != nil {
		v.fail(a.Name, CheckManifest, "%v", err)
		return
	}
	if got != a.SHA256 || size != a.Size {
		v.fail(a.Name, CheckManifest, "sha256 %s size %d, offline-kit.json says %s size %d", got, size, a.SHA256, a.Size)
	}
	switch a.Kind {
	case KindSignature:
		v.checkBlobSignature(a)
	case KindProvenance:
		v.checkProvenance(a)
	case KindSBOM:
		v.checkSBOM(a)
	case KindDatasetManifest:
		v.checkDatasetManifest(a)
	case KindRunner, KindDataset:
		signer, ok := v.m.Artifact(a.SignedBy)
		if !ok || signer.Signs != a.Name {
			v.fail(a.Name, CheckSignature, "no signature in the kit signs it (signedBy %q)", a.SignedBy)
		}
	case KindPublicKey, KindScript:
	default:
		v.fail(a.Name, CheckManifest, "unknown kind %q", a.Kind)
	}
}

// target returns the artifact a signature, SBOM or manifest refers to, with
// its actual digest.
func (v *verifier) target(a Artifact, ref, check string) (Artifact, [sha256.Size]byte, bool) {
	t, ok := v.m.Artifact(ref)
	if !ok {
		v.fail(a.Name, check, "refers to %q, which the kit does not list", ref)
		return Artifact{}, [sha256.Size]byte{}, false
	}
	s, _, err := v.digest(t.Name)
	if err != nil {
		v.fail(t.Name, check, "%v", err)
		return Artifact{}, [sha256.Size]byte{}, false
	}
	var d [sha256.Size]byte
	hex.Decode(d[:], []byte(s))
	return t, d, true
}

func (v *verifier) checkBlobSignature(a Artifact) {
	v.ran(CheckSignature)
	t, d, ok := v.target(a, a.Signs, CheckSignature)
	if !ok {
		return
	}
	if t.SignedBy != a.Name {
		v.fail(t.Name, CheckSignature, "offline-kit.json says %s signs it but it names %q as its signer", a.Name, t.SignedBy)
	}
	data, err := v.readSmall(a.Name)
	if err != nil {
		v.fail(a.Name, CheckSignature, "%v", err)
		return
	}
	if err := v.key.VerifyBlob(data, d); err != nil {
		v.fail(t.Name, CheckSignature, "%s does not verify it with %s: %v", a.Name, PublicKeyName, err)
	}
}

func (v *verifier) checkProvenance(a Artifact) {
	v.ran(CheckDSSE)
	v.ran(CheckProvenance)
	t, d, ok := v.target(a, a.Signs, CheckProvenance)
	if !ok {
		return
	}
	if t.SignedBy != a.Name {
		v.fail(t.Name, CheckProvenance, "offline-kit.json says %s signs it but it names %q as its signer", a.Name, t.SignedBy)
	}
	data, err := v.readSmall(a.Name)
	if err != nil {
		v.fail(a.Name, CheckDSSE, "%v", err)
		return
	}
	payload, err := v.key.VerifyDSSE(data, sign.InTotoPayloadType)
	if err != nil {
		v.fail(a.Name, CheckDSSE, "%v", err)
		return
	}
	st, err := provenance.Parse(payload)
	if err != nil {
		v.fail(a.Name, CheckProvenance, "%v", err)
		return
	}
	got, ok := st.SubjectDigest(t.Name)
	switch {
	case !ok:
		v.fail(a.Name, CheckProvenance, "no subject named %s", t.Name)
	case got != hex.EncodeToString(d[:]):
		v.fail(t.Name, CheckProvenance, "sha256 %x, provenance subject says %s", d, got)
	}
}

// walkTar streams a kit tarball, calling fn for each regular file with its
// SHA1 and SHA256.
func (v *verifier) walkTar(name string, fn func(path string, size int64, sha1Hex, sha256Hex string)) error {
	f, _, err := v.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	lim := v.opts.Limits
	return archive.Walk(v.ctx, f, lim, func(h *tar.Header, body io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		h1, h256 := sha1.New(), sha256.New()
		if _, err := io.Copy(io.MultiWriter(h1, h256), body); err != nil {
			return err
		}
		fn(h.Name, h.Size, hex.EncodeToString(h1.Sum(nil)), hex.EncodeToString(h256.Sum(nil)))
		return nil
	})
}

func (v *verifier) checkSBOM(a Artifact) {
	v.ran(CheckSBOM)
	t, d, ok := v.target(a, a.Describes, CheckSBOM)
	if !ok {
		return
	}
	data, err := v.readSmall(a.Name)
	if err != nil {
		v.fail(a.Name, CheckSBOM, "%v", err)
		return
	}
	doc, err := sbom.Parse(data)
	if err != nil {
		v.fail(a.Name, CheckSBOM, "%v", err)
		return
	}
	want, err := doc.FileChecksums()
	if err != nil {
		v.fail(a.Name, CheckSBOM, "%v", err)
		return
	}
	if len(doc.Packages) == 0 || len(doc.Packages[0].Checksums) != 1 || doc.Packages[0].Checksums[0].Value != hex.EncodeToString(d[:]) {
		v.fail(a.Name, CheckSBOM, "root package does not record %s's sha256 %x", t.Name, d)
	}
	err = v.walkTar(t.Name, func(path string, _ int64, s1, s256 string) {
		w, ok := want[path]
		switch {
		case !ok:
			v.fail(a.Name, CheckSBOM, "does not list %s, which %s contains", path, t.Name)
		case w["SHA1"] != s1 || w["SHA256"] != s256:
			v.fail(a.Name, CheckSBOM, "%s: checksums SHA1 %s SHA256 %s, %s has SHA1 %s SHA256 %s", path, w["SHA1"], w["SHA256"], t.Name, s1, s256)
		}
		delete(want, path)
	})
	if err != nil {
		v.fail(t.Name, CheckSBOM, "read: %v", err)
		return
	}
	for _, p := range sortedKeys(want) {
		v.fail(a.Name, CheckSBOM, "lists %s, which %s does not contain", p, t.Name)
	}
}

func (v *verifier) checkDatasetManifest(a Artifact) {
	v.ran(CheckDatasetManifest)
	t, d, ok := v.target(a, a.Describes, CheckDatasetManifest)
	if !ok {
		return
	}
	data, err := v.readSmall(a.Name)
	if err != nil {
		v.fail(a.Name, CheckDatasetManifest, "%v", err)
		return
	}
	dm, err := ParseDatasetManifest(data)
	if err != nil {
		v.fail(a.Name, CheckDatasetManifest, "%v", err)
		return
	}
	if dm.Archive.Name != t.Name || dm.Archive.SHA256 != hex.EncodeToString(d[:]) || dm.Archive.Size != t.Size {
		v.fail(a.Name, CheckDatasetManifest, "archive %s sha256 %s size %d, the kit has %s sha256 %x size %d",
			dm.Archive.Name, dm.Archive.SHA256, dm.Archive.Size, t.Name, d, t.Size)
	}
	if c := DatasetHash(dm.Files); c != dm.ContentHash {
		v.fail(a.Name, CheckDatasetManifest, "contentHash %s, its files hash to %s", dm.ContentHash, c)
	}
	if dm.Hash != dm.ContentHash && !v.m.DevKey {
		v.fail(a.Name, CheckDatasetManifest, "hash %q is not the content hash %s (placeholders only in development kits)", dm.Hash, dm.ContentHash)
	}
	want := map[string]DatasetFile{}
	for _, f := range dm.Files {
		want[f.Path] = f
	}
	err = v.walkTar(t.Name, func(path string, size int64, _, s256 string) {
		w, ok := want[path]
		switch {
		case !ok:
			v.fail(a.Name, CheckDatasetManifest, "does not list %s, which %s contains", path, t.Name)
		case w.SHA256 != s256 || w.Size != size:
			v.fail(a.Name, CheckDatasetManifest, "%s: sha256 %s size %d, %s has sha256 %s size %d", path, w.SHA256, w.Size, t.Name, s256, size)
		}
		delete(want, path)
	})
	if err != nil {
		v.fail(t.Name, CheckDatasetManifest, "read: %v", err)
		return
	}
	for _, p := range sortedKeys(want) {
		v.fail(a.Name, CheckDatasetManifest, "lists %s, which %s does not contain", p, t.Name)
	}
}

func (v *verifier) checkArchive() {
	if v.m.Archive == "" {
		return
	}
	sumName := v.m.Archive + ".sha256"
	data, err := v.readSmall(sumName)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	v.ran(CheckArchive)
	if err != nil {
		v.fail(sumName, CheckArchive, "%v", err)
		return
	}
	got, _, err := v.digest(v.m.Archive)
	if err != nil {
		v.fail(v.m.Archive, CheckArchive, "%v", err)
		return
	}
	if want := string(ChecksumLine(got, v.m.Archive)); string(data) != want {
		v.fail(v.m.Archive, CheckArchive, "sha256 %s does not match %s", got, sumName)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// readerCtx stops a long read when ctx is cancelled.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
