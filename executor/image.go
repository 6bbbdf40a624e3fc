package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// doImage fetches every blob of an image into the store: the index (if
// any), the chosen manifests, their configs and layers; and, when the plan
// chose only some of an index's manifests, writes the filtered index the
// plan records in its place (see topIndex). Manifests are read back and compared with the plan before any
// config or layer is fetched, so a manifest naming other blobs, or 100,000
// layers, fails early.
//
// Outputs: "PACK:images/blobs/sha256/HEX" for each path pack.ImageEntries
// returns.
func (x *execution) doImage(ctx context.Context, n *node) (outputs, error) {
	in, err := x.input(n, plan.KindImage)
	if err != nil {
		return nil, err
	}
	img := in.Image
	if img == nil || len(img.Manifests) == 0 {
		return nil, fmt.Errorf("image %s: no manifests in the plan", in.Name)
	}
	// The same rule the planner uses to declare the outputs; checked
	// first so a plan the executor cannot honour fails before any fetch.
	want, err := plan.ImageEntries(in)
	if err != nil {
		return nil, err
	}
	out := outputs{}
	if img.Index {
		h, err := x.fetch(ctx, in, in.Digest, in.Size, pack.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		raw, err := x.readBlob(ctx, h, pack.MaxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", in.Name, err)
		}
		fh, fsize, err := x.topIndex(ctx, in, raw)
		if err != nil {
			return nil, err
		}
		if img.Filtered == nil {
			fh, fsize = h, in.Size
		}
		if err := out.add(n.entry(pack.BlobPath(fh.String())), fh, fsize); err != nil {
			return nil, err
		}
	}
	for _, m := range img.Manifests {
		if len(m.Layers) > pack.MaxLayers {
			return nil, fmt.Errorf("image %s: manifest %s has %d layers, more than %d", in.Name, m.Digest, len(m.Layers), pack.MaxLayers)
		}
		h, err := x.fetch(ctx, in, m.Digest, m.Size, pack.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		raw, err := x.readBlob(ctx, h, pack.MaxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", in.Name, err)
		}
		if err := checkManifest(in, m, raw); err != nil {
			return nil, err
		}
		if err := out.add(n.entry(pack.BlobPath(m.Digest)), h, m.Size); err != nil {
			return nil, err
		}
		for _, b := range append([]plan.Blob{m.Config}, m.Layers...) {
			bh, err := x.fetch(ctx, in, b.Digest, b.Size, -1)
			if err != nil {
				return nil, err
			}
			if err := out.add(n.entry(pack.BlobPath(b.Digest)), bh, b.Size); err != nil {
				return nil, err
			}
		}
	}
	if len(want) != len(out) {
		return nil, fmt.Errorf("image %s: wrote %d blobs, pack.ImageEntries lists %d", in.Name, len(out), len(want))
	}
	return out, nil
}

// RawBlobOpener is implemented by a Source that can open an image blob
// without hashing it on the way (source.Resolver). The executor
// prefers it, since its store verifies every byte it writes, digest and
// size, before the blob appears: each fetched byte is hashed once.
type RawBlobOpener interface {
	// OpenRawBlob is Source.OpenBlob without verification.
	OpenRawBlob(ctx context.Context, in plan.Input, digest string) (io.ReadCloser, int64, error)
}

// fetch puts blob digest of image input in into the store unless it is
// there already. max, if not negative, bounds the size the plan may claim
// (manifests and indexes, which are parsed).
func (x *execution) fetch(ctx context.Context, in plan.Input, digest string, size, max int64) (v1.Hash, error) {
	h, err := hash(digest)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image %s: %w", in.Name, err)
	}
	if size < 0 || (max >= 0 && size > max) {
		return v1.Hash{}, fmt.Errorf("image %s: blob %s: size %d outside 0..%d", in.Name, digest, size, max)
	}
	if ok, err := x.holds(ctx, h, size); ok || err != nil {
		return h, err
	}
	if bf, ok := x.src.(BlobFiler); ok {
		fp, canPutFile := x.store.(cas.FilePutter)
		if path, ok := bf.BlobFile(ctx, in, digest); ok && canPutFile {
			// A reflink or a copy, hashed as it is made: the store never
			// shares an inode with the user's layout.
			if err := fp.PutFile(ctx, h, size, path); err != nil {
				return v1.Hash{}, fmt.Errorf("image %s: %w", in.Name, err)
			}
			return h, nil
		}
	}
	if ra, ok := x.src.(RangeBlobOpener); ok && size >= resumeMin {
		err := x.fetchResumable(ctx, ra, in, digest, h, size)
		if errors.Is(err, errNoResume) {
			err = cas.ErrBusy
		}
		if !errors.Is(err, cas.ErrBusy) {
			return h, err
		}
		// Another build is fetching this blob: fetch it whole.
	}
	open := x.src.OpenBlob
	if ro, ok := x.src.(RawBlobOpener); ok {
		// Put hashes what it writes: a second hash on the way would
		// double the CPU cost of every fetched byte.
		open = ro.OpenRawBlob
	}
	rc, n, err := open(ctx, in, digest)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image %s: open blob %s: %w", in.Name, digest, err)
	}
	defer rc.Close()
	if n >= 0 && n != size {
		return v1.Hash{}, fmt.Errorf("image %s: blob %s is %d bytes, the plan says %d", in.Name, digest, n, size)
	}
	if err := x.store.Put(ctx, h, size, x.counting(in.Name, rc)); err != nil {
		return v1.Hash{}, fmt.Errorf("image %s: %w", in.Name, err)
	}
	return h, nil
}

// counting reports the bytes read from r as EventFetched events of image
// name, at most one per fetchReport bytes (and one at the end).
func (x *execution) counting(name string, r io.Reader) io.Reader {
	if x.progress == nil {
		return r
	}
	return &countingReader{x: x, name: name, r: r}
}

// fetchReport is how many fetched bytes make one progress event.
const fetchReport = 256 << 10

type countingReader struct {
	x       *execution
	name    string
	r       io.Reader
	pending int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pending += int64(n)
	if c.pending >= fetchReport || err != nil && c.pending > 0 {
		c.x.emit(Event{Kind: EventFetched, Action: plan.ActionImage, Subject: c.name, Bytes: c.pending})
		c.pending = 0
	}
	return n, err
}

// RangeBlobOpener is implemented by a Source that can open an image blob
// from a byte offset (source.Resolver, with HTTP Range requests),
// so an interrupted fetch resumes instead of starting over.
type RangeBlobOpener interface {
	// OpenRawBlobAt is RawBlobOpener.OpenRawBlob from byte offset on. It
	// returns where the reader starts (offset, or 0 when the source sends
	// the blob whole) and the blob's size.
	OpenRawBlobAt(ctx context.Context, in plan.Input, digest string, offset int64) (rc io.ReadCloser, start, size int64, err error)
}

// errNoResume says the store keeps no partial downloads: the blob is
// fetched whole.
var errNoResume = errors.New("the store keeps no partial downloads")

// resumeMin is the smallest blob fetched resumably: below it, a partial
// file and a Range request cost more than fetching again.
const resumeMin = 1 << 20

// fetchResumable fetches blob h of image in into the store through a
// partial download that survives an interrupted build: the bytes fetched
// so far are kept under the store's partial/ directory, the next run asks
// the source for the rest, and the store takes the blob only once every
// byte, old and new, hashes to its digest.
func (x *execution) fetchResumable(ctx context.Context, ra RangeBlobOpener, in plan.Input, digest string, h v1.Hash, size int64) error {
	rs, ok := x.store.(cas.Resumer)
	if !ok {
		return errNoResume
	}
	p, err := rs.Resume(ctx, h, size)
	if err != nil {
		return fmt.Errorf("image %s: %w", in.Name, err)
	}
	defer p.Close()
	if p.Offset() < size {
		rc, start, n, err := ra.OpenRawBlobAt(ctx, in, digest, p.Offset())
		if err != nil {
			return fmt.Errorf("image %s: open blob %s: %w", in.Name, digest, err)
		}
		defer rc.Close()
		if n >= 0 && n != size {
			return fmt.Errorf("image %s: blob %s is %d bytes, the plan says %d", in.Name, digest, n, size)
		}
		if start != p.Offset() {
			// The source sent it whole.
			if err := p.Restart(); err != nil {
				return fmt.Errorf("image %s: %w", in.Name, err)
			}
		}
		if _, err := p.ReadFrom(x.counting(in.Name, rc)); err != nil {
			if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
				// Kept for resuming, it would keep the disk full: the
				// failure could not even be recorded.
				p.Discard()
			}
			return fmt.Errorf("image %s: fetch blob %s: %w", in.Name, digest, err)
		}
	}
	if err := p.Commit(); err != nil {
		return fmt.Errorf("image %s: %w", in.Name, err)
	}
	return nil
}

// topIndex checks an index image's raw index against the plan and, when
// the plan records a filtered index, stores it and returns its digest and
// size. The plan must record one exactly when the index lists a manifest
// the plan does not choose: otherwise index.json would name a blob whose
// manifests are not all in the pack. The filtered bytes are
// plan.FilterIndex's, the function the planner pins them with.
func (x *execution) topIndex(ctx context.Context, in plan.Input, raw []byte) (v1.Hash, int64, error) {
	if err := checkIndex(in, raw); err != nil {
		return v1.Hash{}, 0, err
	}
	var ix struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &ix); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("image %s: parse index %s: %w", in.Name, in.Digest, err)
	}
	keep := map[string]bool{}
	for _, m := range in.Image.Manifests {
		keep[m.Digest] = true
	}
	dropped := 0
	for _, m := range ix.Manifests {
		if !keep[m.Digest] {
			dropped++
		}
	}
	f := in.Image.Filtered
	switch {
	case dropped == 0 && f == nil:
		return v1.Hash{}, 0, nil
	case dropped == 0:
		return v1.Hash{}, 0, fmt.Errorf("image %s: the plan records a filtered index %s, but every manifest of index %s is chosen", in.Name, f.Digest, in.Digest)
	case f == nil:
		return v1.Hash{}, 0, fmt.Errorf("image %s: the plan chooses %d of the %d manifests of index %s but records no filtered index (image.filtered)", in.Name, len(ix.Manifests)-dropped, len(ix.Manifests), in.Digest)
	}
	filtered, err := plan.FilterIndex(raw, keep)
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("image %s: %w", in.Name, err)
	}
	h, size, err := x.putBytes(ctx, filtered)
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("image %s: store filtered index: %w", in.Name, err)
	}
	if h.String() != f.Digest || size != f.Size {
		return v1.Hash{}, 0, fmt.Errorf("image %s: filtered index is %s (%d bytes), the plan records %s (%d bytes)", in.Name, h, size, f.Digest, f.Size)
	}
	return h, size, nil
}

// checkIndex checks that an index lists every chosen manifest with the
// plan's size.
func checkIndex(in plan.Input, raw []byte) error {
	var ix v1.IndexManifest
	if err := json.Unmarshal(raw, &ix); err != nil {
		return fmt.Errorf("image %s: parse index %s: %w", in.Name, in.Digest, err)
	}
	listed := map[string]int64{}
	for _, d := range ix.Manifests {
		listed[d.Digest.String()] = d.Size
	}
	for _, m := range in.Image.Manifests {
		size, ok := listed[m.Digest]
		if !ok {
			return fmt.Errorf("image %s: index %s does not list manifest %s (%s) the plan chose", in.Name, in.Digest, m.Digest, m.Platform)
		}
		if size != m.Size {
			return fmt.Errorf("image %s: index %s lists manifest %s with size %d, the plan says %d", in.Name, in.Digest, m.Digest, size, m.Size)
		}
	}
	return nil
}

// checkManifest checks that a manifest names exactly the config and layers
// the plan lists, so the pack's manifest.json, built from the plan,
// describes the manifest in the pack.
func checkManifest(in plan.Input, m plan.Manifest, raw []byte) error {
	var mf struct {
		Config v1.Descriptor
		Layers []json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&mf); err != nil {
		return fmt.Errorf("image %s: parse manifest %s: %w", in.Name, m.Digest, err)
	}
	// Count before decoding descriptors: a hostile manifest with a huge
	// layer list is refused without building it.
	if len(mf.Layers) > pack.MaxLayers {
		return fmt.Errorf("image %s: manifest %s has %d layers, more than %d", in.Name, m.Digest, len(mf.Layers), pack.MaxLayers)
	}
	if mf.Config.Digest.String() != m.Config.Digest || mf.Config.Size != m.Config.Size {
		return fmt.Errorf("image %s: manifest %s names config %s (%d bytes), the plan says %s (%d bytes)", in.Name, m.Digest, mf.Config.Digest, mf.Config.Size, m.Config.Digest, m.Config.Size)
	}
	if len(mf.Layers) != len(m.Layers) {
		return fmt.Errorf("image %s: manifest %s has %d layers, the plan lists %d", in.Name, m.Digest, len(mf.Layers), len(m.Layers))
	}
	for i, l := range mf.Layers {
		var d v1.Descriptor
		if err := json.Unmarshal(l, &d); err != nil {
			return fmt.Errorf("image %s: manifest %s layer %d: %w", in.Name, m.Digest, i, err)
		}
		if d.Digest.String() != m.Layers[i].Digest || d.Size != m.Layers[i].Size {
			return fmt.Errorf("image %s: manifest %s layer %d is %s (%d bytes), the plan says %s (%d bytes)", in.Name, m.Digest, i, d.Digest, d.Size, m.Layers[i].Digest, m.Layers[i].Size)
		}
	}
	return nil
}

// doCopy stores a signature file's bytes unchanged: DSSE and TUF metadata
// are passed through, never re-signed.
//
// Output: "PACK:signatures/NAME", NAME the input's name.
func (x *execution) doCopy(ctx context.Context, n *node) (outputs, error) {
	in, err := x.input(n, plan.KindSignature)
	if err != nil {
		return nil, err
	}
	if err := safeName("signature name", in.Name); err != nil {
		return nil, err
	}
	h, err := hash(in.Digest)
	if err != nil {
		return nil, fmt.Errorf("signature %s: %w", in.Name, err)
	}
	if ok, err := x.holds(ctx, h, in.Size); err != nil {
		return nil, fmt.Errorf("signature %s: %w", in.Name, err)
	} else if !ok {
		rc, size, err := x.src.OpenFile(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("open signature %s: %w", in.Name, err)
		}
		defer rc.Close()
		if size >= 0 && size != in.Size {
			return nil, fmt.Errorf("signature %s is %d bytes, the plan says %d", in.Name, size, in.Size)
		}
		if err := x.store.Put(ctx, h, in.Size, rc); err != nil {
			return nil, fmt.Errorf("signature %s: %w", in.Name, err)
		}
	}
	out := outputs{}
	return out, out.add(n.entry(pack.SignaturePath(in.Name)), h, in.Size)
}
