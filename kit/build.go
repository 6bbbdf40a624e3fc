package kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/provenance"
	"github.com/bale-build/bale/sbom"
	"github.com/bale-build/bale/sign"
)

// FileInput is one file of a bundle: where its bytes are now, where it goes
// in the bundle, and its mode there.
type FileInput struct {
	// Path is a local file holding the bytes (e.g. a content-store blob).
	Path string
	// Dest is the file's path inside the bundle.
	Dest string
	// Mode is 0o644 (or 0) or 0o755.
	Mode int64
	// Source names where the file came from (the spec's path or URL); the
	// dataset's provenance records it as the dependency's uri.
	Source string
	// SHA256 and Size, when SHA256 is set, are the file's known hex sha256
	// and size (a content-store blob's), so Build need not hash it again.
	SHA256 string
	Size   int64
	// Open, with SHA256 and Size set, opens a dataset file's bytes instead
	// of Path: a reader that fails at its end unless the bytes are SHA256
	// (the executor's planned-input reader), so a large dataset is read
	// once, straight into the tarball. Runner files are always read from
	// Path, which the SBOM reads too.
	Open func() (io.ReadCloser, error)
}

// Runner is the runner bundle of a release.
type Runner struct {
	Name, Version     string
	Supplier, License string // for the SBOM
	Files             []FileInput
}

// Dataset is the dataset bundle of a release.
type Dataset struct {
	Name string
	// Hash is the spec's pinned hash: "" (computed), DatasetHash of the
	// files, or, only in a development kit, a non-digest placeholder.
	Hash  string
	Files []FileInput
	// Dependencies are recorded in the provenance besides the dataset's
	// files (e.g. the runner bundle); may be empty.
	Dependencies []provenance.Dependency
	// BuilderID and BuildType override the provenance's defaults.
	BuilderID, BuildType string
}

// Input is everything Build needs; all of it comes from the plan.
type Input struct {
	Release    string // release name
	Name       string // offlineKit.name; the kit archive is Name+".tar.gz"
	Time       time.Time
	PlanID     string
	SpecDigest string
	// Tool is "bale-VERSION", the SBOM's creator; BuilderVersion goes into
	// the provenance's builder.version.
	Tool           string
	BuilderVersion map[string]string
	Key            *sign.Key
	Runner         Runner
	Dataset        *Dataset
	// GzipLevel is the bundles' and kit archive's gzip level, 1 to 9; 0
	// means gzip.BestCompression.
	GzipLevel int
}

// Names are the file names Build writes for a release.
type Names struct {
	Runner, SBOM, RunnerSignature                 string
	Dataset, DatasetManifest, Provenance, Archive string
}

// NamesFor returns the kit's file names given the dataset's hash.
func NamesFor(runner, dataset, hash, kit string) Names {
	n := Names{
		Runner:          runner + ".tar.gz",
		SBOM:            runner + ".sbom.json",
		RunnerSignature: runner + ".dsse.json",
		Archive:         kit + ".tar.gz",
	}
	if dataset != "" {
		base := dataset + "-" + hash
		n.Dataset, n.DatasetManifest, n.Provenance = base+".tar.gz", base+".manifest.json", base+".provenance.json"
	}
	return n
}

// gzipLevel is the kit's compression level: bundles are small and built
// once per release; the archives' bytes depend on it.
const gzipLevel = gzip.BestCompression

// Build writes the release's offline kit into dir (created if missing) and
// returns its manifest. Every file is a pure function of in: the same input
// writes the same bytes, signatures included. Files appear under their final
// names only when complete.
func Build(ctx context.Context, dir string, in Input) (*Manifest, error) {
	switch {
	case in.Key == nil:
		return nil, errors.New("build kit: no signing key")
	case !ValidName(in.Name) || !ValidName(in.Runner.Name):
		return nil, fmt.Errorf("build kit: kit name %q or runner name %q is not a plain file name", in.Name, in.Runner.Name)
	case in.Time.IsZero():
		return nil, errors.New("build kit: no build timestamp")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build kit: %w", err)
	}
	b := &builder{ctx: ctx, dir: dir, in: in, m: &Manifest{
		FormatVersion:      FormatVersion,
		Kind:               ManifestKind,
		Name:               in.Name,
		Release:            in.Release,
		SourceDateEpoch:    in.Time.UTC().Format(time.RFC3339),
		PlanID:             in.PlanID,
		SpecDigest:         in.SpecDigest,
		DevKey:             in.Key.Dev(),
		PublicKey:          PublicKeyName,
		Checksums:          SumsName,
		ChecksumsSignature: SumsSignatureName,
		Archive:            in.Name + ".tar.gz",
	}}
	if err := b.build(); err != nil {
		return nil, fmt.Errorf("build kit %s: %w", in.Name, err)
	}
	return b.m, nil
}

type builder struct {
	ctx context.Context
	dir string
	in  Input
	m   *Manifest
}

func (b *builder) build() error {
	in := b.in
	hash := ""
	var dsFiles []DatasetFile
	if in.Dataset != nil {
		var err error
		if dsFiles, err = datasetFiles(in.Dataset.Files); err != nil {
			return err
		}
		content := DatasetHash(dsFiles)
		hash, err = datasetName(in.Dataset.Hash, content, in.Key.Dev())
		if err != nil {
			return fmt.Errorf("dataset %s: %w", in.Dataset.Name, err)
		}
	}
	datasetName := ""
	if in.Dataset != nil {
		datasetName = in.Dataset.Name
	}
	n := NamesFor(in.Runner.Name, datasetName, hash, in.Name)
	for _, name := range []string{n.Runner, n.Dataset} {
		if name != "" && !ValidName(name) {
			return fmt.Errorf("file name %q is not a plain file name", name)
		}
	}

	// Runner bundle, its SBOM and signature.
	runnerSum, runnerSize, err := b.writeTar(n.Runner, in.Runner.Files)
	if err != nil {
		return err
	}
	b.add(Artifact{Name: n.Runner, Kind: KindRunner, Size: runnerSize, SHA256: hex.EncodeToString(runnerSum[:]), SignedBy: n.RunnerSignature})
	var sbomFiles []sbom.File
	for _, f := range in.Runner.Files {
		sf, err := sbomFile(f)
		if err != nil {
			return err
		}
		sbomFiles = append(sbomFiles, sf)
	}
	sbomJSON, err := sbom.Marshal(sbom.Input{
		Name: in.Runner.Name, Version: in.Runner.Version, Supplier: in.Runner.Supplier, License: in.Runner.License,
		Tool: in.Tool, Created: in.Time, ArchiveName: n.Runner, ArchiveSHA256: hex.EncodeToString(runnerSum[:]),
		Files: sbomFiles,
	})
	if err != nil {
		return err
	}
	if err := b.writeArtifact(n.SBOM, sbomJSON, Artifact{Kind: KindSBOM, Describes: n.Runner}); err != nil {
		return err
	}
	sig, err := in.Key.SignBlob(runnerSum)
	if err != nil {
		return fmt.Errorf("sign %s: %w", n.Runner, err)
	}
	if err := b.writeArtifact(n.RunnerSignature, sig, Artifact{Kind: KindSignature, Signs: n.Runner}); err != nil {
		return err
	}

	// Dataset bundle, manifest and provenance.
	if in.Dataset != nil {
		sum, size, err := b.writeTar(n.Dataset, in.Dataset.Files)
		if err != nil {
			return err
		}
		hexSum := hex.EncodeToString(sum[:])
		b.add(Artifact{Name: n.Dataset, Kind: KindDataset, Size: size, SHA256: hexSum, SignedBy: n.Provenance})
		dm, err := MarshalDatasetManifest(&DatasetManifest{
			FormatVersion: FormatVersion, Kind: DatasetManifestKnd, Name: in.Dataset.Name,
			Hash: hash, ContentHash: DatasetHash(dsFiles),
			Archive: DatasetArchive{Name: n.Dataset, Size: size, SHA256: hexSum},
			Files:   dsFiles,
		})
		if err != nil {
			return err
		}
		if err := b.writeArtifact(n.DatasetManifest, dm, Artifact{Kind: KindDatasetManifest, Describes: n.Dataset}); err != nil {
			return err
		}
		deps := append([]provenance.Dependency(nil), in.Dataset.Dependencies...)
		for i, f := range in.Dataset.Files {
			deps = append(deps, provenance.Dependency{Name: f.Dest, URI: f.Source, Digest: provenance.Digest{SHA256: dsFiles[i].SHA256}})
		}
		st, err := provenance.Marshal(provenance.Input{
			Subjects:       []provenance.Subject{{Name: n.Dataset, Digest: provenance.Digest{SHA256: hexSum}}},
			SpecDigest:     in.SpecDigest,
			PlanID:         in.PlanID,
			Target:         in.Release,
			Dependencies:   deps,
			BuilderVersion: in.BuilderVersion,
			Time:           in.Time,
			BuilderID:      in.Dataset.BuilderID,
			BuildType:      in.Dataset.BuildType,
		})
		if err != nil {
			return err
		}
		env, err := in.Key.SignDSSE(sign.InTotoPayloadType, st)
		if err != nil {
			return fmt.Errorf("sign provenance of %s: %w", n.Dataset, err)
		}
		if err := b.writeArtifact(n.Provenance, env, Artifact{Kind: KindProvenance, Signs: n.Dataset}); err != nil {
			return err
		}
	}

	// Public key, verify script, manifest, sums and their signature.
	if err := b.writeArtifact(PublicKeyName, in.Key.PublicKeyPEM(), Artifact{Kind: KindPublicKey}); err != nil {
		return err
	}
	// The script lists every artifact, itself included, so add its entry
	// first (size and digest are filled in once it is rendered).
	b.add(Artifact{Name: ScriptName, Kind: KindScript})
	script, err := Script(b.m)
	if err != nil {
		return err
	}
	b.m.Artifacts = b.m.Artifacts[:len(b.m.Artifacts)-1]
	if err := b.writeArtifact(ScriptName, script, Artifact{Kind: KindScript}); err != nil {
		return err
	}
	manifest, err := MarshalManifest(b.m)
	if err != nil {
		return err
	}
	if err := b.write(ManifestName, manifest); err != nil {
		return err
	}
	mSum := sha256.Sum256(manifest)
	sums := []Sum{{Name: ManifestName, SHA256: hex.EncodeToString(mSum[:])}}
	for _, a := range b.m.Artifacts {
		sums = append(sums, Sum{Name: a.Name, SHA256: a.SHA256})
	}
	sumsText, err := Sums(sums)
	if err != nil {
		return err
	}
	if err := b.write(SumsName, sumsText); err != nil {
		return err
	}
	sumsSig, err := in.Key.SignBlob(sha256.Sum256(sumsText))
	if err != nil {
		return fmt.Errorf("sign %s: %w", SumsName, err)
	}
	if err := b.write(SumsSignatureName, sumsSig); err != nil {
		return err
	}

	// The kit as one archive, beside it.
	return b.writeArchive(n.Archive, map[string][]byte{
		ManifestName: manifest, SumsName: sumsText, SumsSignatureName: sumsSig,
	})
}

// datasetName decides the {hash} of the dataset's names: the content hash;
// a pinned digest must equal it; a non-digest placeholder is accepted only
// in a development kit.
func datasetName(pinned, content string, dev bool) (string, error) {
	switch {
	case pinned == "" || pinned == content:
		return content, nil
	case isHex64(pinned):
		return "", fmt.Errorf("spec pins hash %s but the files hash to %s", pinned, content)
	case !dev:
		return "", fmt.Errorf("hash %q is a placeholder, not the content hash %s; placeholders are accepted only with the development key (COSIGN_ALLOW_DEV_KEY=1)", pinned, content)
	case !ValidName(pinned):
		return "", fmt.Errorf("placeholder hash %q is not a plain file name", pinned)
	}
	return pinned, nil
}

// datasetFiles hashes the dataset's files.
func datasetFiles(files []FileInput) ([]DatasetFile, error) {
	out := make([]DatasetFile, 0, len(files))
	for _, f := range files {
		if f.SHA256 != "" {
			out = append(out, DatasetFile{Path: f.Dest, Size: f.Size, SHA256: f.SHA256})
			continue
		}
		sum, size, err := hashFile(f.Path)
		if err != nil {
			return nil, fmt.Errorf("dataset file %s: %w", f.Dest, err)
		}
		out = append(out, DatasetFile{Path: f.Dest, Size: size, SHA256: hex.EncodeToString(sum[:])})
	}
	return out, nil
}

func hashFile(p string) ([sha256.Size]byte, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	return [sha256.Size]byte(h.Sum(nil)), n, nil
}

func sbomFile(f FileInput) (sbom.File, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return sbom.File{}, fmt.Errorf("runner file %s: %w", f.Dest, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return sbom.File{}, fmt.Errorf("runner file %s: %w", f.Dest, err)
	}
	return sbom.FileOf(f.Dest, fh, st.Size())
}

func (b *builder) add(a Artifact) { b.m.Artifacts = append(b.m.Artifacts, a) }

// writeArtifact writes data as name and records it with a's kind and links.
func (b *builder) writeArtifact(name string, data []byte, a Artifact) error {
	if err := b.write(name, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	a.Name, a.Size, a.SHA256 = name, int64(len(data)), hex.EncodeToString(sum[:])
	b.add(a)
	return nil
}

func (b *builder) write(name string, data []byte) error {
	f, err := atomicfile.Create(filepath.Join(b.dir, name))
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.Commit()
}

// writeTar writes files as a byte-stable tar.gz named name and returns its
// sha256 and size.
func (b *builder) writeTar(name string, files []FileInput) ([sha256.Size]byte, int64, error) {
	entries := make([]archive.Entry, 0, len(files))
	for _, f := range files {
		if f.Open != nil && f.SHA256 != "" {
			entries = append(entries, archive.Entry{Name: f.Dest, Mode: f.Mode, Size: f.Size, Open: f.Open})
			continue
		}
		st, err := os.Stat(f.Path)
		if err != nil {
			return [sha256.Size]byte{}, 0, fmt.Errorf("%s: file %s: %w", name, f.Dest, err)
		}
		p := f.Path
		entries = append(entries, archive.Entry{Name: f.Dest, Mode: f.Mode, Size: st.Size(),
			Open: func() (io.ReadCloser, error) { return os.Open(p) }})
	}
	return b.writeEntries(name, entries)
}

func (b *builder) writeEntries(name string, entries []archive.Entry) ([sha256.Size]byte, int64, error) {
	f, err := atomicfile.Create(filepath.Join(b.dir, name))
	if err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	defer f.Abort()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	level := gzipLevel
	if b.in.GzipLevel > 0 && b.in.GzipLevel <= 9 {
		level = b.in.GzipLevel
	}
	zw, err := archive.NewGzipWriter(cw, level, b.in.Time)
	if err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	if err := archive.WriteTar(b.ctx, zw, entries, b.in.Time); err != nil {
		return [sha256.Size]byte{}, 0, fmt.Errorf("%s: %w", name, err)
	}
	if err := zw.Close(); err != nil {
		return [sha256.Size]byte{}, 0, fmt.Errorf("%s: %w", name, err)
	}
	if err := f.Commit(); err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	return [sha256.Size]byte(h.Sum(nil)), cw.n, nil
}

// writeArchive writes the kit directory's files as one tar.gz, under a
// top directory named after the kit, and its .sha256. Files already written
// are read back from dir; extra holds the ones just produced.
func (b *builder) writeArchive(name string, extra map[string][]byte) error {
	var entries []archive.Entry
	for _, a := range b.m.Artifacts {
		p := filepath.Join(b.dir, a.Name)
		mode := int64(0o644)
		if a.Kind == KindScript {
			mode = 0o755
		}
		entries = append(entries, archive.Entry{Name: b.in.Name + "/" + a.Name, Mode: mode, Size: a.Size,
			Open: func() (io.ReadCloser, error) { return os.Open(p) }})
	}
	for n, data := range extra {
		entries = append(entries, archive.Entry{Name: b.in.Name + "/" + n, Size: int64(len(data)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }})
	}
	sum, _, err := b.writeEntries(name, entries)
	if err != nil {
		return err
	}
	return b.write(name+".sha256", ChecksumLine(hex.EncodeToString(sum[:]), name))
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
