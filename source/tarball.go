package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// MaxTarballEntries bounds the entries of a docker-save tarball.
const MaxTarballEntries = 10_000

// maxTarballLinks bounds the symbolic links followed to reach one entry.
const maxTarballLinks = 16

// tarMember is what scanDockerTar keeps of one tarball entry.
type tarMember struct {
	symlink bool
	size    int64
	link    string
}

// scanDockerTar reads the headers of a docker-save tarball (seeking over
// bodies when r can seek) and its manifest.json, and checks everything
// go-containerregistry's tarball loader will later read, before it reads
// any of it: go-containerregistry reads a config, and manifest.json, into
// memory whole at whatever size the tar header declares, so a 10 KiB
// tarball whose config is a sparse 2 GiB entry made it allocate gigabytes.
// scanDockerTar refuses, naming the entry:
//
//   - more than MaxTarballEntries entries; names archive.CleanName refuses;
//     duplicate names (the loader takes the first; another tool may not);
//   - sparse entries, hard links, devices, FIFOs and global headers (docker
//     writes none of them; a sparse entry is how a small file declares a
//     huge body); symbolic links are kept, as docker writes them for
//     repeated layers, and resolved inside the archive as the loader does;
//   - any entry declaring more than MaxBlobSize bytes;
//   - a manifest.json past pack.MaxManifestSize, or listing more than
//     MaxIndexEntries images or pack.MaxLayers layers for one image;
//   - a config or layer named by manifest.json that is missing, is not a
//     regular file once links are resolved, or is larger than
//     MaxConfigSize (configs) or MaxBlobSize (layers).
func scanDockerTar(ctx context.Context, r io.Reader) (tarball.Manifest, error) {
	tr := tar.NewReader(r)
	entries := make(map[string]tarMember)
	var raw []byte
	found := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("read tarball: %w: %w", archive.ErrTruncated, err)
			}
			return nil, fmt.Errorf("read tarball: %w", err)
		}
		if len(entries) >= MaxTarballEntries {
			return nil, fmt.Errorf("tarball has more than %d entries", MaxTarballEntries)
		}
		e, err := checkTarHeader(hdr)
		if err != nil {
			return nil, fmt.Errorf("tarball entry %q: %w", hdr.Name, err)
		}
		if e == nil {
			continue // a directory: the loader never reads one
		}
		n, _ := archive.CleanName(hdr.Name) // checkTarHeader checked it
		if _, dup := entries[n]; dup {
			return nil, fmt.Errorf("tarball entry %q: %w: duplicate name", hdr.Name, archive.ErrUnsafeEntry)
		}
		entries[n] = *e
		if n == "manifest.json" {
			if e.symlink {
				return nil, errors.New("tarball entry manifest.json is a symbolic link")
			}
			if e.size > pack.MaxManifestSize {
				return nil, fmt.Errorf("tarball entry manifest.json declares %d bytes, more than the %d-byte limit", e.size, pack.MaxManifestSize)
			}
			if raw, err = readLimited(tr, pack.MaxManifestSize, "tarball entry manifest.json"); err != nil {
				return nil, err
			}
			found = true
		}
	}
	if !found {
		return nil, errors.New("tarball has no manifest.json: not a docker-save tarball")
	}
	var m tarball.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("tarball manifest.json: %w", err)
	}
	if len(m) > MaxIndexEntries {
		return nil, fmt.Errorf("tarball manifest.json lists %d images, more than the limit of %d", len(m), MaxIndexEntries)
	}
	for i, d := range m {
		if len(d.Layers) > pack.MaxLayers {
			return nil, fmt.Errorf("tarball manifest.json image %d has %d layers, more than the limit of %d", i, len(d.Layers), pack.MaxLayers)
		}
		if err := checkTarRef(entries, d.Config, MaxConfigSize); err != nil {
			return nil, fmt.Errorf("tarball manifest.json image %d config: %w", i, err)
		}
		for j, l := range d.Layers {
			if err := checkTarRef(entries, l, MaxBlobSize); err != nil {
				return nil, fmt.Errorf("tarball manifest.json image %d layer %d: %w", i, j, err)
			}
		}
	}
	return m, nil
}

// checkTarHeader checks one tarball header; it returns nil, nil for a
// directory.
func checkTarHeader(hdr *tar.Header) (*tarMember, error) {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, fmt.Errorf("%w: sparse entries are not allowed", archive.ErrUnsafeEntry)
		}
	}
	e := &tarMember{}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return nil, nil
	case tar.TypeReg:
	case tar.TypeSymlink:
		e.symlink, e.link = true, hdr.Linkname
	case tar.TypeGNUSparse:
		return nil, fmt.Errorf("%w: sparse entries are not allowed", archive.ErrUnsafeEntry)
	case tar.TypeLink:
		return nil, fmt.Errorf("%w: hard link entries are not allowed", archive.ErrUnsafeEntry)
	default:
		return nil, fmt.Errorf("%w: entry type %q is not allowed", archive.ErrUnsafeEntry, hdr.Typeflag)
	}
	if _, err := archive.CleanName(hdr.Name); err != nil {
		return nil, err
	}
	if hdr.Size < 0 || hdr.Size > MaxBlobSize {
		return nil, fmt.Errorf("%w: declares %d bytes, more than the %d-byte limit", archive.ErrLimit, hdr.Size, MaxBlobSize)
	}
	e.size = hdr.Size
	return e, nil
}

// checkTarRef resolves a name from manifest.json the way
// go-containerregistry's loader does (clean it, follow symbolic links
// relative to the linking entry's directory) and checks that it ends at a
// regular entry of at most max bytes.
func checkTarRef(entries map[string]tarMember, ref string, max int64) error {
	p := path.Clean(ref)
	for range maxTarballLinks {
		e, ok := entries[p]
		if !ok {
			return fmt.Errorf("%q is not in the tarball", ref)
		}
		if !e.symlink {
			if e.size > max {
				return fmt.Errorf("%q declares %d bytes, more than the %d-byte limit", ref, e.size, max)
			}
			return nil
		}
		p = path.Join(path.Dir(p), path.Clean(e.link))
	}
	return fmt.Errorf("%q: more than %d symbolic links, or a cycle", ref, maxTarballLinks)
}

// tarballSource reads an image from a docker-save tarball through
// go-containerregistry, which computes its manifest, once scanDockerTar
// has checked the tarball. For a tarball whose layers are stored
// uncompressed, that manifest names layers go-containerregistry
// compresses on the fly, so its digest depends on its gzip output.
type tarballSource struct {
	img v1.Image
}

func (s *tarballSource) manifest(_ context.Context, d string, size int64) ([]byte, string, error) {
	raw, err := s.img.RawManifest()
	if err != nil {
		return nil, "", err
	}
	if err := checkManifestBytes(raw, d, size); err != nil {
		return nil, "", err
	}
	mt, err := s.img.MediaType()
	return raw, string(mt), err
}

func (s *tarballSource) blob(_ context.Context, d string) (io.ReadCloser, error) {
	if !plan.ValidDigest(d) {
		return nil, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", d)
	}
	h, err := v1.NewHash(d)
	if err != nil {
		return nil, err
	}
	if cn, err := s.img.ConfigName(); err == nil && cn == h {
		b, err := s.img.RawConfigFile()
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	l, err := s.img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// openTarball opens the image selected by tag (or the only one) in the
// docker-save tarball rel, and returns the tags the tarball lists for it.
// The tarball is scanned first (scanDockerTar); every later open by
// go-containerregistry goes through os.Root again and must find the same
// file, unchanged in size and modification time, so what was scanned is
// what is loaded.
func (r *Resolver) openTarball(ctx context.Context, rel, tag string) (*tarballSource, []string, error) {
	f, fi, err := r.openLocal(rel, singleLink)
	if err != nil {
		return nil, nil, err
	}
	m, err := scanDockerTar(ctx, f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", rel, err)
	}
	opener := func() (io.ReadCloser, error) {
		f, st, err := r.openLocal(rel, singleLink)
		if err != nil {
			return nil, err
		}
		if !os.SameFile(fi, st) || st.Size() != fi.Size() || !st.ModTime().Equal(fi.ModTime()) {
			f.Close()
			return nil, fmt.Errorf("%s changed while bale read it", rel)
		}
		return f, nil
	}
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return nil, nil, err
		}
		t = &nt
	}
	img, err := tarball.Image(opener, t)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", rel, err)
	}
	var tags []string
	if t != nil {
		tags = []string{tag}
	} else if len(m) == 1 {
		tags = append(tags, m[0].RepoTags...)
	}
	return &tarballSource{img: img}, tags, nil
}

// imageTarball pins an image from a docker-save tarball.
func (r *Resolver) imageTarball(ctx context.Context, specDir string, img spec.Image) (plan.Input, error) {
	rel, err := r.local(specDir, img.Tarball.Path)
	if err != nil {
		return plan.Input{}, err
	}
	src, tags, err := r.openTarball(ctx, rel, img.Tarball.Tag)
	if err != nil {
		return plan.Input{}, err
	}
	raw, err := src.img.RawManifest()
	if err != nil {
		return plan.Input{}, err
	}
	mt, err := src.img.MediaType()
	if err != nil {
		return plan.Input{}, err
	}
	return r.finishImage(ctx, img, src, raw, string(mt), tags,
		plan.Source{Type: plan.SourceTarball, Path: rel, Select: img.Tarball.Tag})
}
