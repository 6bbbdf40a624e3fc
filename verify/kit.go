package verify

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
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/internal/sums"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/provenance"
	"github.com/bale-build/bale/sbom"
	"github.com/bale-build/bale/sign"
)

// Checks of an offline kit, as they appear in a Failure. CheckArchive is
// the kit archive's: its structure, its .sha256, and, beside a kit
// directory, that it holds the directory's files.
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
)

// Options tune Path and Kit.
type Options struct {
	// TrustedKey, when set, is the PEM public key an offline kit must be
	// signed with; the shipped cosign.pub must be this key. Without it a
	// kit is checked against its own cosign.pub, which proves integrity,
	// not origin. A bootstrap pack is not signed: Path refuses it there.
	TrustedKey []byte
	// Limits bound the tar streams read; zero fields take
	// archive.DefaultLimits.
	Limits archive.Limits
}

// Kinds of artifact Detect tells apart.
const (
	KindPack       = "bootstrap-pack"
	KindKitDir     = "offline-kit"
	KindKitArchive = "offline-kit-archive"
)

// Detect says what path is, once, for bale verify and bale inspect: a
// directory is an offline kit; a file is a kit archive when it is one gzip
// member with no extra field (as kit/assemble writes it), else a bootstrap
// pack, whose gzip members carry bale's "BL" extra field (anything else is
// a pack that Pack then reports as broken). Special files are refused
// without being opened for reading.
func Detect(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return KindKitDir, nil
	}
	f, err := capread.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var head [gzipHeadMax]byte
	n, _ := io.ReadFull(f, head[:])
	if hasExtra, isGzip := gzipExtra(head[:n]); isGzip && !hasExtra {
		return KindKitArchive, nil
	}
	return KindPack, nil
}

// gzipHeadMax is enough of a file for its gzip header's flags.
const gzipHeadMax = 10

// gzipExtra reads a gzip header's FEXTRA flag (RFC 1952 2.3.1).
func gzipExtra(b []byte) (hasExtra, isGzip bool) {
	if len(b) < 10 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
		return false, false
	}
	return b[3]&0x04 != 0, true
}

// Path verifies what path is (Detect): a bootstrap pack (Pack, with
// opts.Limits), an offline kit directory (Kit) or a kit archive
// (KitArchive). A trusted key with a pack is an error: a pack is not
// signed.
func Path(ctx context.Context, path string, opts Options) (*Report, error) {
	kind, err := Detect(path)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	switch kind {
	case KindKitDir:
		return Kit(ctx, path, opts)
	case KindKitArchive:
		return KitArchive(ctx, path, opts)
	}
	if opts.TrustedKey != nil {
		return nil, fmt.Errorf("verify %s: a trusted key applies to offline kits; a bootstrap pack is not signed", path)
	}
	lim := opts.Limits
	if lim == (archive.Limits{}) {
		lim = archive.DefaultLimits()
	}
	return PackLimits(ctx, path, lim)
}

// newKitReport starts the report of verifying the kit at path.
func newKitReport(path string) *Report {
	return &Report{Path: path, KitFacts: &KitFacts{Kind: kit.ManifestKind}, Checks: []string{}, Failures: []Failure{}}
}

// Kit checks the offline kit in directory dir, offline and in process: the
// file set, SHA256SUMS and its signature, offline-kit.json, every
// signature bundle, every DSSE envelope (PAE) and provenance subject
// digest, the SBOM's file checksums against the runner tarball, the
// dataset manifest against the dataset tarball, and the kit archive beside
// it when present: its .sha256, and that it holds exactly the directory's
// files. Only regular files are read, each checked before it is opened.
// The error is for a kit that cannot be read at all (cancelled context,
// missing directory); everything wrong with the kit is in the report.
func Kit(ctx context.Context, dir string, opts Options) (*Report, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("verify kit: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("verify kit %s: not a directory", dir)
	}
	v := &kitVerifier{ctx: ctx, opts: opts, r: newKitReport(dir), files: &dirFiles{ctx: ctx, dir: dir, sums: map[string]string{}, lim: opts.Limits}}
	v.run()
	if m := v.m; m != nil && m.Archive != "" {
		v.checkArchiveBeside(dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify kit %s: %w", dir, err)
	}
	return v.r, nil
}

// KitArchive checks a kit carried as its archive (K.tar.gz, as
// kit/assemble writes it beside the kit): one top directory named after
// the kit holding plain files only, each checked as Kit checks a
// directory's. The archive is read once, as a stream, and nothing is
// written to disk: each file is hashed as it passes, the small ones
// (JSON, keys, signatures, SHA256SUMS; kit.MaxSmallFile each, a quarter
// GiB in all) are kept in memory, and the tarballs' files are listed with
// their digests on the way. The report's SHA256 is the archive file's.
func KitArchive(ctx context.Context, path string, opts Options) (*Report, error) {
	a, err := scanKitArchive(ctx, path, opts.Limits, true)
	if err != nil {
		return nil, err
	}
	r := newKitReport(path)
	r.SHA256 = a.fileSHA256
	if a.bad != nil {
		r.Ran(CheckFiles)
		r.Failures = append(r.Failures, *a.bad)
		return r, nil
	}
	v := &kitVerifier{ctx: ctx, opts: opts, r: r, files: a}
	v.run()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify kit archive %s: %w", path, err)
	}
	if r.Name != "" && a.top != r.Name {
		r.Fail(a.top+"/", CheckFiles, fmt.Sprintf("top directory is not the kit's name %q", r.Name))
	}
	return r, nil
}

// kitFiles is what the kit checks read of a kit: a directory's files, or
// an archive's, read once.
type kitFiles interface {
	// list returns the kit's file names, each with whether it is a
	// regular file.
	list() (map[string]fs.FileMode, error)
	// digest returns a file's hex sha256 and size.
	digest(name string) (string, int64, error)
	// read returns a small file's bytes, at most kit.MaxSmallFile.
	read(name string) ([]byte, error)
	// tarball returns the regular files of the tar.gz file name.
	tarball(name string) ([]tarFile, error)
}

// tarFile is one regular file of a kit tarball.
type tarFile struct {
	path         string
	size         int64
	sha1, sha256 string
}

type kitVerifier struct {
	ctx   context.Context
	opts  Options
	r     *Report
	files kitFiles
	m     *kit.Manifest
	key   *sign.Verifier
}

func (v *kitVerifier) ran(check string) { v.r.Ran(check) }

func (v *kitVerifier) fail(file, check, format string, args ...any) {
	v.r.Ran(check)
	v.r.Fail(file, check, fmt.Sprintf(format, args...))
}

func (v *kitVerifier) run() {
	// offline-kit.json first: it names everything else.
	data, err := v.files.read(kit.ManifestName)
	if err != nil {
		v.fail(kit.ManifestName, CheckManifest, "%v", err)
		return
	}
	m, err := kit.ParseManifest(data)
	if err != nil {
		v.fail(kit.ManifestName, CheckManifest, "%v", err)
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
}

// checkFiles: the kit holds exactly the kit's files (plus, in a
// directory, the kit archive and its .sha256 beside them).
func (v *kitVerifier) checkFiles() {
	v.ran(CheckFiles)
	want := map[string]bool{kit.ManifestName: true, kit.SumsName: true, kit.SumsSignatureName: true}
	for _, a := range v.m.Artifacts {
		want[a.Name] = true
	}
	allowed := map[string]bool{}
	if _, isDir := v.files.(*dirFiles); isDir && v.m.Archive != "" {
		allowed[v.m.Archive], allowed[kit.ArchiveChecksumName(v.m.Archive)] = true, true
	}
	names, err := v.files.list()
	if err != nil {
		v.fail("", CheckFiles, "list the kit: %v", err)
		return
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		mode := names[name]
		switch {
		case (want[name] || allowed[name]) && mode.IsRegular():
		case want[name] || allowed[name]:
			v.fail(name, CheckFiles, "not a regular file (%s)", mode.Type())
		default:
			v.fail(name, CheckFiles, "not part of the kit (offline-kit.json does not list it)")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := names[name]; !ok {
			v.fail(name, CheckFiles, "missing")
		}
	}
}

func (v *kitVerifier) checkPublicKey() {
	v.ran(CheckPublicKey)
	if v.m.PublicKey != kit.PublicKeyName {
		v.fail(kit.ManifestName, CheckPublicKey, "publicKey %q, want %q", v.m.PublicKey, kit.PublicKeyName)
		return
	}
	data, err := v.files.read(kit.PublicKeyName)
	if err != nil {
		v.fail(kit.PublicKeyName, CheckPublicKey, "%v", err)
		return
	}
	key, err := sign.ParsePublicKey(data)
	if err != nil {
		v.fail(kit.PublicKeyName, CheckPublicKey, "%v", err)
		return
	}
	if v.opts.TrustedKey != nil {
		trusted, err := sign.ParsePublicKey(v.opts.TrustedKey)
		if err != nil {
			v.fail("", CheckPublicKey, "trusted key: %v", err)
			return
		}
		if !trusted.Equal(key) {
			v.fail(kit.PublicKeyName, CheckPublicKey, "is not the trusted key")
			return
		}
	}
	// The repository's development key is one whatever offline-kit.json
	// says: its private half is public.
	if key.Dev() {
		v.r.DevKey = true
	}
	v.key = key
}

func (v *kitVerifier) checkSums() {
	v.ran(CheckSums)
	v.ran(CheckSumsSignature)
	data, err := v.files.read(kit.SumsName)
	if err != nil {
		v.fail(kit.SumsName, CheckSums, "%v", err)
		return
	}
	bundle, err := v.files.read(kit.SumsSignatureName)
	if err != nil {
		v.fail(kit.SumsSignatureName, CheckSumsSignature, "%v", err)
	} else if err := v.key.VerifyBlob(bundle, sha256.Sum256(data)); err != nil {
		v.fail(kit.SumsName, CheckSumsSignature, "%s does not verify it with %s: %v", kit.SumsSignatureName, kit.PublicKeyName, err)
	}
	list, err := kit.ParseSums(data)
	if err != nil {
		v.fail(kit.SumsName, CheckSums, "%v", err)
		return
	}
	want := map[string]bool{kit.ManifestName: true}
	for _, a := range v.m.Artifacts {
		want[a.Name] = true
	}
	for _, s := range list {
		if !want[s.Name] {
			v.fail(kit.SumsName, CheckSums, "lists %s, which is not part of the kit", s.Name)
			continue
		}
		delete(want, s.Name)
		got, _, err := v.files.digest(s.Name)
		switch {
		case err != nil:
			v.fail(s.Name, CheckSums, "%v", err)
		case got != s.SHA256:
			v.fail(s.Name, CheckSums, "sha256 %s, SHA256SUMS says %s", got, s.SHA256)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		v.fail(kit.SumsName, CheckSums, "does not list %s", name)
	}
}

func (v *kitVerifier) checkArtifact(a kit.Artifact) {
	got, size, err := v.files.digest(a.Name)
	if err != nil {
		v.fail(a.Name, CheckManifest, "%v", err)
		return
	}
	if got != a.SHA256 || size != a.Size {
		v.fail(a.Name, CheckManifest, "sha256 %s size %d, offline-kit.json says %s size %d", got, size, a.SHA256, a.Size)
	}
	switch a.Kind {
	case kit.KindSignature:
		v.checkBlobSignature(a)
	case kit.KindProvenance:
		v.checkProvenance(a)
	case kit.KindSBOM:
		v.checkSBOM(a)
	case kit.KindDatasetManifest:
		v.checkDatasetManifest(a)
	case kit.KindRunner, kit.KindDataset:
		signer, ok := v.m.Artifact(a.SignedBy)
		if !ok || signer.Signs != a.Name {
			v.fail(a.Name, CheckSignature, "no signature in the kit signs it (signedBy %q)", a.SignedBy)
		}
	case kit.KindPublicKey, kit.KindScript:
	default:
		v.fail(a.Name, CheckManifest, "unknown kind %q", a.Kind)
	}
}

// target returns the artifact a signature, SBOM or manifest refers to, with
// its actual digest.
func (v *kitVerifier) target(a kit.Artifact, ref, check string) (kit.Artifact, [sha256.Size]byte, bool) {
	t, ok := v.m.Artifact(ref)
	if !ok {
		v.fail(a.Name, check, "refers to %q, which the kit does not list", ref)
		return kit.Artifact{}, [sha256.Size]byte{}, false
	}
	s, _, err := v.files.digest(t.Name)
	if err != nil {
		v.fail(t.Name, check, "%v", err)
		return kit.Artifact{}, [sha256.Size]byte{}, false
	}
	var d [sha256.Size]byte
	hex.Decode(d[:], []byte(s))
	return t, d, true
}

func (v *kitVerifier) checkBlobSignature(a kit.Artifact) {
	v.ran(CheckSignature)
	t, d, ok := v.target(a, a.Signs, CheckSignature)
	if !ok {
		return
	}
	if t.SignedBy != a.Name {
		v.fail(t.Name, CheckSignature, "offline-kit.json says %s signs it but it names %q as its signer", a.Name, t.SignedBy)
	}
	data, err := v.files.read(a.Name)
	if err != nil {
		v.fail(a.Name, CheckSignature, "%v", err)
		return
	}
	if err := v.key.VerifyBlob(data, d); err != nil {
		v.fail(t.Name, CheckSignature, "%s does not verify it with %s: %v", a.Name, kit.PublicKeyName, err)
	}
}

func (v *kitVerifier) checkProvenance(a kit.Artifact) {
	v.ran(CheckDSSE)
	v.ran(CheckProvenance)
	t, d, ok := v.target(a, a.Signs, CheckProvenance)
	if !ok {
		return
	}
	if t.SignedBy != a.Name {
		v.fail(t.Name, CheckProvenance, "offline-kit.json says %s signs it but it names %q as its signer", a.Name, t.SignedBy)
	}
	data, err := v.files.read(a.Name)
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

func (v *kitVerifier) checkSBOM(a kit.Artifact) {
	v.ran(CheckSBOM)
	t, d, ok := v.target(a, a.Describes, CheckSBOM)
	if !ok {
		return
	}
	data, err := v.files.read(a.Name)
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
	files, err := v.files.tarball(t.Name)
	if err != nil {
		v.fail(t.Name, CheckSBOM, "read: %v", err)
		return
	}
	for _, f := range files {
		w, ok := want[f.path]
		switch {
		case !ok:
			v.fail(a.Name, CheckSBOM, "does not list %s, which %s contains", f.path, t.Name)
		case w["SHA1"] != f.sha1 || w["SHA256"] != f.sha256:
			v.fail(a.Name, CheckSBOM, "%s: checksums SHA1 %s SHA256 %s, %s has SHA1 %s SHA256 %s", f.path, w["SHA1"], w["SHA256"], t.Name, f.sha1, f.sha256)
		}
		delete(want, f.path)
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		v.fail(a.Name, CheckSBOM, "lists %s, which %s does not contain", p, t.Name)
	}
}

func (v *kitVerifier) checkDatasetManifest(a kit.Artifact) {
	v.ran(CheckDatasetManifest)
	t, d, ok := v.target(a, a.Describes, CheckDatasetManifest)
	if !ok {
		return
	}
	data, err := v.files.read(a.Name)
	if err != nil {
		v.fail(a.Name, CheckDatasetManifest, "%v", err)
		return
	}
	dm, err := kit.ParseDatasetManifest(data)
	if err != nil {
		v.fail(a.Name, CheckDatasetManifest, "%v", err)
		return
	}
	if dm.Archive.Name != t.Name || dm.Archive.SHA256 != hex.EncodeToString(d[:]) || dm.Archive.Size != t.Size {
		v.fail(a.Name, CheckDatasetManifest, "archive %s sha256 %s size %d, the kit has %s sha256 %x size %d",
			dm.Archive.Name, dm.Archive.SHA256, dm.Archive.Size, t.Name, d, t.Size)
	}
	if c := kit.DatasetHash(dm.Files); c != dm.ContentHash {
		v.fail(a.Name, CheckDatasetManifest, "contentHash %s, its files hash to %s", dm.ContentHash, c)
	}
	// The hash names the files: the content hash, or in a development
	// kit a placeholder (kit.DatasetNameHash, the rule the build applied).
	if _, err := kit.DatasetNameHash(dm.Hash, dm.ContentHash, v.r.DevKey); err != nil || dm.Hash == "" {
		v.fail(a.Name, CheckDatasetManifest, "hash %q is not the content hash %s (placeholders only in development kits)", dm.Hash, dm.ContentHash)
	} else if want := kit.NamesFor("", dm.Name, dm.Hash, "").Dataset; t.Name != want {
		v.fail(a.Name, CheckDatasetManifest, "describes %s, but dataset %s with hash %s is named %s", t.Name, dm.Name, dm.Hash, want)
	}
	want := map[string]kit.DatasetFile{}
	for _, f := range dm.Files {
		want[f.Path] = f
	}
	files, err := v.files.tarball(t.Name)
	if err != nil {
		v.fail(t.Name, CheckDatasetManifest, "read: %v", err)
		return
	}
	for _, f := range files {
		w, ok := want[f.path]
		switch {
		case !ok:
			v.fail(a.Name, CheckDatasetManifest, "does not list %s, which %s contains", f.path, t.Name)
		case w.SHA256 != f.sha256 || w.Size != f.size:
			v.fail(a.Name, CheckDatasetManifest, "%s: sha256 %s size %d, %s has sha256 %s size %d", f.path, w.SHA256, w.Size, t.Name, f.sha256, f.size)
		}
		delete(want, f.path)
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		v.fail(a.Name, CheckDatasetManifest, "lists %s, which %s does not contain", p, t.Name)
	}
}

// checkArchiveBeside checks the kit archive beside kit directory dir, when
// its .sha256 is there: the archive matches it, and the archive holds
// exactly the directory's kit files, byte for byte, under a top directory
// named after the kit. What the directory passed, the archive then passes
// too: a kit archive of another kit (another key's) beside a good
// directory fails here.
func (v *kitVerifier) checkArchiveBeside(dir string) {
	archiveName := v.m.Archive
	sumName := kit.ArchiveChecksumName(archiveName)
	data, err := v.files.read(sumName)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	v.ran(CheckArchive)
	if err != nil {
		v.fail(sumName, CheckArchive, "%v", err)
		return
	}
	got, _, err := v.files.digest(archiveName)
	if err != nil {
		v.fail(archiveName, CheckArchive, "%v", err)
		return
	}
	if line, err := sums.ParseLine(data); err != nil || line.Name != archiveName || line.SHA256 != got {
		v.fail(archiveName, CheckArchive, "sha256 %s does not match %s", got, sumName)
	}
	a, err := scanKitArchive(v.ctx, filepath.Join(dir, archiveName), v.opts.Limits, false)
	if err != nil {
		v.fail(archiveName, CheckArchive, "%v", err)
		return
	}
	if a.bad != nil {
		v.fail(archiveName, CheckArchive, "%s: %s", a.bad.Entry, a.bad.Detail)
		return
	}
	if a.top != v.m.Name {
		v.fail(archiveName, CheckArchive, "top directory %q is not the kit's name %q", a.top, v.m.Name)
	}
	want := []string{kit.ManifestName, kit.SumsName, kit.SumsSignatureName}
	for _, art := range v.m.Artifacts {
		want = append(want, art.Name)
	}
	for _, name := range want {
		inDir, _, err := v.files.digest(name)
		if err != nil {
			continue // the directory's own checks name it
		}
		switch inArchive, ok := a.sums[name]; {
		case !ok:
			v.fail(archiveName, CheckArchive, "does not hold %s, which the kit directory does", name)
		case inArchive != inDir:
			v.fail(archiveName, CheckArchive, "holds %s with sha256 %s, the kit directory's is %s: the archive is another kit", name, inArchive, inDir)
		}
		delete(a.sums, name)
	}
	for _, name := range slices.Sorted(maps.Keys(a.sums)) {
		v.fail(archiveName, CheckArchive, "holds %s, which is not part of the kit", name)
	}
}

// dirFiles are the files of a kit directory. Only regular files are read,
// each checked before it is opened (capread.Open), so a FIFO or device in
// a hostile kit cannot block or feed the verifier.
type dirFiles struct {
	ctx  context.Context
	dir  string
	lim  archive.Limits
	sums map[string]string // file → sha256 hex, for files hashed
}

func (d *dirFiles) list() (map[string]fs.FileMode, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]fs.FileMode, len(entries))
	for _, e := range entries {
		out[e.Name()] = e.Type()
	}
	return out, nil
}

// open opens a kit file, refusing anything but a regular file directly in
// the kit directory: a link is refused as it is, before it is followed.
func (d *dirFiles) open(name string) (*os.File, int64, error) {
	if !kit.ValidName(name) {
		return nil, 0, fmt.Errorf("%q is not a plain file name", name)
	}
	p := filepath.Join(d.dir, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return pack.OpenFile(p)
}

func (d *dirFiles) read(name string) ([]byte, error) {
	f, size, err := d.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > kit.MaxSmallFile {
		return nil, fmt.Errorf("%d bytes, more than %d", size, kit.MaxSmallFile)
	}
	b, err := capread.ReadAll(f, kit.MaxSmallFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	d.sums[name] = hex.EncodeToString(sum[:])
	return b, nil
}

// digest returns a kit file's sha256 and size, hashing it once.
func (d *dirFiles) digest(name string) (string, int64, error) {
	f, size, err := d.open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if s, ok := d.sums[name]; ok {
		return s, size, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(d.ctx, f))
	if err != nil {
		return "", 0, err
	}
	s := hex.EncodeToString(h.Sum(nil))
	d.sums[name] = s
	return s, n, nil
}

func (d *dirFiles) tarball(name string) ([]tarFile, error) {
	f, _, err := d.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return listTarball(d.ctx, f, d.lim)
}

// listTarball lists the regular files of a tar stream with their SHA1
// and SHA256.
func listTarball(ctx context.Context, r io.Reader, lim archive.Limits) ([]tarFile, error) {
	var out []tarFile
	h1, h256 := sha1.New(), sha256.New()
	err := archive.Walk(ctx, r, lim, func(h *tar.Header, body io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		h1.Reset()
		h256.Reset()
		if _, err := io.Copy(io.MultiWriter(h1, h256), body); err != nil {
			return err
		}
		out = append(out, tarFile{path: h.Name, size: h.Size, sha1: hex.EncodeToString(h1.Sum(nil)), sha256: hex.EncodeToString(h256.Sum(nil))})
		return nil
	})
	return out, err
}

// maxBuffered bounds the small files a kit archive's scan keeps in memory
// in all, and maxTarballs the tarballs it lists (a kit has two, the
// runner's and the dataset's; each listing is bounded by the archive
// limits' MaxEntries): a hostile archive cannot make verification hold
// more.
const (
	maxBuffered = 4 * kit.MaxSmallFile
	maxTarballs = 2
)

// archiveFiles are a kit archive's files, as one streaming pass over it
// found them.
type archiveFiles struct {
	top        string
	fileSHA256 string
	// bad is the first structural failure: an entry outside the top
	// directory, a subdirectory, a name that is not a plain file name.
	bad   *Failure
	modes map[string]fs.FileMode
	sums  map[string]string
	sizes map[string]int64
	// data holds the small files' bytes, tarballs their listings, and
	// errs why a file could not be kept or listed.
	data     map[string][]byte
	tarballs map[string][]tarFile
	errs     map[string]error
	// buffered counts the bytes in data; listed the tarballs read.
	buffered int64
	listed   int
}

// scanKitArchive reads the kit archive at path once: every file hashed,
// and, when full, the small files kept (up to maxBuffered in all) and
// every .tar.gz file listed. Nothing is written to disk.
func scanKitArchive(ctx context.Context, path string, lim archive.Limits, full bool) (*archiveFiles, error) {
	f, err := capread.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify kit archive: %w", err)
	}
	defer f.Close()
	a := &archiveFiles{modes: map[string]fs.FileMode{}, sums: map[string]string{}, sizes: map[string]int64{},
		data: map[string][]byte{}, tarballs: map[string][]tarFile{}, errs: map[string]error{}}
	fileHash := sha256.New()
	src := io.TeeReader(ctxio.Reader(ctx, f), fileHash)
	walkErr := archive.Walk(ctx, src, lim, func(h *tar.Header, body io.Reader) error {
		dir, name, nested := strings.Cut(h.Name, "/")
		switch {
		case a.top == "":
			a.top = dir
		case dir != a.top:
			a.bad = &Failure{Entry: h.Name, Check: CheckFiles, Detail: fmt.Sprintf("outside the kit's top directory %s", a.top)}
			return errStop
		}
		if h.Typeflag == tar.TypeDir {
			if nested && name != "" {
				a.bad = &Failure{Entry: h.Name, Check: CheckFiles, Detail: "a kit has no subdirectories"}
				return errStop
			}
			return nil
		}
		if !nested || !kit.ValidName(name) {
			a.bad = &Failure{Entry: h.Name, Check: CheckFiles, Detail: "not a plain file in the kit's top directory"}
			return errStop
		}
		a.modes[name] = 0
		a.sizes[name] = h.Size
		sum, err := a.scanFile(ctx, name, h.Size, body, lim, full)
		if err != nil {
			return err
		}
		a.sums[name] = sum
		return nil
	})
	if a.bad != nil {
		return a, nil
	}
	if walkErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("verify kit archive %s: %w", path, ctx.Err())
		}
		a.bad = &Failure{Check: CheckFiles, Detail: fmt.Sprintf("read archive: %v", walkErr)}
		return a, nil
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, fmt.Errorf("verify kit archive %s: %w", path, err)
	}
	a.fileSHA256 = hex.EncodeToString(fileHash.Sum(nil))
	return a, nil
}

// scanFile hashes one file of the archive, keeping it if it is small and
// listing it if it is a tarball (when full).
func (a *archiveFiles) scanFile(ctx context.Context, name string, size int64, body io.Reader, lim archive.Limits, full bool) (string, error) {
	h := sha256.New()
	r := io.TeeReader(body, h)
	isTarball := strings.HasSuffix(name, ".tar.gz")
	switch {
	case !full:
	case isTarball && a.listed == maxTarballs:
		a.errs[name] = fmt.Errorf("a kit has %d tarballs; this is one more", maxTarballs)
	case isTarball:
		a.listed++
		// A tarball's files are listed as it passes; a tarball that does
		// not read is the SBOM's or dataset manifest's failure to report.
		files, err := listTarball(ctx, r, lim)
		if err != nil {
			a.errs[name] = err
		} else {
			a.tarballs[name] = files
		}
	case size > kit.MaxSmallFile:
		a.errs[name] = fmt.Errorf("%d bytes, more than %d", size, kit.MaxSmallFile)
	case a.buffered+size > maxBuffered:
		a.errs[name] = fmt.Errorf("the archive's small files hold more than %d bytes", maxBuffered)
	default:
		b, err := capread.ReadAll(r, size)
		if err != nil {
			return "", err
		}
		a.buffered += int64(len(b))
		a.data[name] = b
	}
	if _, err := io.Copy(h, body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (a *archiveFiles) list() (map[string]fs.FileMode, error) { return a.modes, nil }

func (a *archiveFiles) digest(name string) (string, int64, error) {
	s, ok := a.sums[name]
	if !ok {
		return "", 0, fs.ErrNotExist
	}
	return s, a.sizes[name], nil
}

func (a *archiveFiles) read(name string) ([]byte, error) {
	if b, ok := a.data[name]; ok {
		return b, nil
	}
	if err := a.errs[name]; err != nil {
		return nil, err
	}
	if _, ok := a.sums[name]; ok {
		return nil, fmt.Errorf("%s is not a small file of the kit", name)
	}
	return nil, fs.ErrNotExist
}

func (a *archiveFiles) tarball(name string) ([]tarFile, error) {
	if files, ok := a.tarballs[name]; ok {
		return files, nil
	}
	if err := a.errs[name]; err != nil {
		return nil, err
	}
	if _, ok := a.sums[name]; ok {
		return nil, fmt.Errorf("%s is not a .tar.gz file", name)
	}
	return nil, fs.ErrNotExist
}

// errStop ends an archive walk once a failure is recorded.
var errStop = errors.New("stop")
