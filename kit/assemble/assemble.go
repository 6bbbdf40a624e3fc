// Package assemble builds a release's offline kit (the format package kit
// defines) from plain inputs: files on disk or streams with known digests,
// a decrypted signing key, names and times. Every byte it writes is a pure
// function of its Input, signatures included. It is the builder only: the
// planner needs the format, not this, and verify.Kit checks what it
// writes.
//
// The name says what it does to the kit's parts (bundles, SBOM, manifests,
// signatures, script, archive), as archive/tar's Writer writes: "build"
// would collide with go/build and bale build in every reader's head.
package assemble

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
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/internal/sums"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/provenance"
	"github.com/bale-build/bale/sbom"
	"github.com/bale-build/bale/sign"
)

// FileInput is one file of a bundle: where its bytes are now, where it goes
// in the bundle, and its mode there.
type FileInput struct {
	// Path is a local file holding the bytes, when Open is nil.
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
	// Open, with SHA256 and Size set, opens the file's bytes instead of
	// Path: a reader that fails at its end unless the bytes are SHA256
	// (a content store's reader, or the executor's planned-input reader),
	// so a file is read straight into its tarball. The SBOM reads a runner
	// file's Go build information at random, so Assemble copies a runner
	// file given this way into a temporary file beside the kit once.
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
	// Hash is the spec's pinned hash: "" (computed), kit.DatasetHash of the
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

// gzipLevel is the kit's compression level: bundles are small and built
// once per release; the archives' bytes depend on it.
const gzipLevel = gzip.BestCompression

// Kit writes the release's offline kit into dir (created if missing) and
// returns its manifest. Every file is a pure function of in: the same input
// writes the same bytes, signatures included. Files appear under their final
// names only when complete.
func Kit(ctx context.Context, dir string, in Input) (*kit.Manifest, error) {
	switch {
	case in.Key == nil:
		return nil, errors.New("build kit: no signing key")
	case !kit.ValidName(in.Name) || !kit.ValidName(in.Runner.Name):
		return nil, fmt.Errorf("build kit: kit name %q or runner name %q is not a plain file name", in.Name, in.Runner.Name)
	case in.Time.IsZero():
		return nil, errors.New("build kit: no build timestamp")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build kit: %w", err)
	}
	b := &builder{ctx: ctx, dir: dir, in: in, m: &kit.Manifest{
		FormatVersion:      kit.FormatVersion,
		Kind:               kit.ManifestKind,
		Name:               in.Name,
		Release:            in.Release,
		SourceDateEpoch:    in.Time.UTC().Format(time.RFC3339),
		PlanID:             in.PlanID,
		SpecDigest:         in.SpecDigest,
		DevKey:             in.Key.Dev(),
		PublicKey:          kit.PublicKeyName,
		Checksums:          kit.SumsName,
		ChecksumsSignature: kit.SumsSignatureName,
		Archive:            kit.NamesFor(in.Runner.Name, "", "", in.Name).Archive,
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
	m   *kit.Manifest
}

func (b *builder) build() error {
	in := b.in
	hash := ""
	var dsFiles []kit.DatasetFile
	if in.Dataset != nil {
		var err error
		if dsFiles, err = datasetFiles(in.Dataset.Files); err != nil {
			return err
		}
		hash, err = kit.DatasetNameHash(in.Dataset.Hash, kit.DatasetHash(dsFiles), in.Key.Dev())
		if err != nil {
			return fmt.Errorf("dataset %s: %w", in.Dataset.Name, err)
		}
	}
	datasetName := ""
	if in.Dataset != nil {
		datasetName = in.Dataset.Name
	}
	n := kit.NamesFor(in.Runner.Name, datasetName, hash, in.Name)
	for _, name := range []string{n.Runner, n.Dataset} {
		if name != "" && !kit.ValidName(name) {
			return fmt.Errorf("file name %q is not a plain file name", name)
		}
	}

	// Runner bundle, its SBOM and signature.
	runnerSum, runnerSize, err := b.writeTar(n.Runner, in.Runner.Files)
	if err != nil {
		return err
	}
	b.add(kit.Artifact{Name: n.Runner, Kind: kit.KindRunner, Size: runnerSize, SHA256: hex.EncodeToString(runnerSum[:]), SignedBy: n.RunnerSignature})
	var sbomFiles []sbom.File
	for _, f := range in.Runner.Files {
		sf, err := b.sbomFile(f)
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
	if err := b.writeArtifact(n.SBOM, sbomJSON, kit.Artifact{Kind: kit.KindSBOM, Describes: n.Runner}); err != nil {
		return err
	}
	sig, err := in.Key.SignBlob(runnerSum)
	if err != nil {
		return fmt.Errorf("sign %s: %w", n.Runner, err)
	}
	if err := b.writeArtifact(n.RunnerSignature, sig, kit.Artifact{Kind: kit.KindSignature, Signs: n.Runner}); err != nil {
		return err
	}

	// Dataset bundle, manifest and provenance.
	if in.Dataset != nil {
		sum, size, err := b.writeTar(n.Dataset, in.Dataset.Files)
		if err != nil {
			return err
		}
		hexSum := hex.EncodeToString(sum[:])
		b.add(kit.Artifact{Name: n.Dataset, Kind: kit.KindDataset, Size: size, SHA256: hexSum, SignedBy: n.Provenance})
		dm, err := kit.MarshalDatasetManifest(&kit.DatasetManifest{
			FormatVersion: kit.FormatVersion, Kind: kit.DatasetManifestKnd, Name: in.Dataset.Name,
			Hash: hash, ContentHash: kit.DatasetHash(dsFiles),
			Archive: kit.DatasetArchive{Name: n.Dataset, Size: size, SHA256: hexSum},
			Files:   dsFiles,
		})
		if err != nil {
			return err
		}
		if err := b.writeArtifact(n.DatasetManifest, dm, kit.Artifact{Kind: kit.KindDatasetManifest, Describes: n.Dataset}); err != nil {
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
		if err := b.writeArtifact(n.Provenance, env, kit.Artifact{Kind: kit.KindProvenance, Signs: n.Dataset}); err != nil {
			return err
		}
	}

	// Public key, verify script, manifest, sums and their signature.
	if err := b.writeArtifact(kit.PublicKeyName, in.Key.PublicKeyPEM(), kit.Artifact{Kind: kit.KindPublicKey}); err != nil {
		return err
	}
	// The script lists every artifact, itself included, so add its entry
	// first (size and digest are filled in once it is rendered).
	b.add(kit.Artifact{Name: kit.ScriptName, Kind: kit.KindScript})
	script, err := kit.Script(b.m)
	if err != nil {
		return err
	}
	b.m.Artifacts = b.m.Artifacts[:len(b.m.Artifacts)-1]
	if err := b.writeArtifact(kit.ScriptName, script, kit.Artifact{Kind: kit.KindScript}); err != nil {
		return err
	}
	manifest, err := kit.MarshalManifest(b.m)
	if err != nil {
		return err
	}
	if err := b.write(kit.ManifestName, manifest); err != nil {
		return err
	}
	mSum := sha256.Sum256(manifest)
	list := []sums.Sum{{Name: kit.ManifestName, SHA256: hex.EncodeToString(mSum[:])}}
	for _, a := range b.m.Artifacts {
		list = append(list, sums.Sum{Name: a.Name, SHA256: a.SHA256})
	}
	sumsText, err := kit.MarshalSums(list)
	if err != nil {
		return err
	}
	if err := b.write(kit.SumsName, sumsText); err != nil {
		return err
	}
	sumsSig, err := in.Key.SignBlob(sha256.Sum256(sumsText))
	if err != nil {
		return fmt.Errorf("sign %s: %w", kit.SumsName, err)
	}
	if err := b.write(kit.SumsSignatureName, sumsSig); err != nil {
		return err
	}

	// The kit as one archive, beside it.
	return b.writeArchive(n.Archive, map[string][]byte{
		kit.ManifestName: manifest, kit.SumsName: sumsText, kit.SumsSignatureName: sumsSig,
	})
}

// datasetFiles hashes the dataset's files.
func datasetFiles(files []FileInput) ([]kit.DatasetFile, error) {
	out := make([]kit.DatasetFile, 0, len(files))
	for _, f := range files {
		if f.SHA256 != "" {
			out = append(out, kit.DatasetFile{Path: f.Dest, Size: f.Size, SHA256: f.SHA256})
			continue
		}
		sum, size, err := hashFile(f.Path)
		if err != nil {
			return nil, fmt.Errorf("dataset file %s: %w", f.Dest, err)
		}
		out = append(out, kit.DatasetFile{Path: f.Dest, Size: size, SHA256: hex.EncodeToString(sum[:])})
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

// sbomFile describes runner file f for the SBOM. A file given by Open is
// copied through its verifying reader into a temporary file beside the
// kit, which the SBOM then reads at random (a Go binary's build
// information); the copy is removed after.
func (b *builder) sbomFile(f FileInput) (sbom.File, error) {
	if f.Open == nil {
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
	rc, err := f.Open()
	if err != nil {
		return sbom.File{}, fmt.Errorf("runner file %s: %w", f.Dest, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(b.dir, ".sbom-*")
	if err != nil {
		return sbom.File{}, fmt.Errorf("runner file %s: %w", f.Dest, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, ctxio.Reader(b.ctx, rc))
	if err != nil {
		return sbom.File{}, fmt.Errorf("runner file %s: %w", f.Dest, err)
	}
	if n != f.Size {
		return sbom.File{}, fmt.Errorf("runner file %s: %d bytes, want %d", f.Dest, n, f.Size)
	}
	return sbom.FileOf(f.Dest, tmp, n)
}

func (b *builder) add(a kit.Artifact) { b.m.Artifacts = append(b.m.Artifacts, a) }

// writeArtifact writes data as name and records it with a's kind and links.
func (b *builder) writeArtifact(name string, data []byte, a kit.Artifact) error {
	if err := b.write(name, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	a.Name, a.Size, a.SHA256 = name, int64(len(data)), hex.EncodeToString(sum[:])
	b.add(a)
	return nil
}

func (b *builder) write(name string, data []byte) error {
	return atomicfile.WriteFile(filepath.Join(b.dir, name), data)
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
		if a.Kind == kit.KindScript {
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
	return b.write(kit.ArchiveChecksumName(name), sums.Line(hex.EncodeToString(sum[:]), name))
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
