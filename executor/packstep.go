package executor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
)

// maxIndexSize bounds the pack index read back by the pack step. It lists
// at most archive.DefaultLimits().MaxEntries entries of a few hundred bytes.
const maxIndexSize = 64 << 20

// doPackIndex writes pack-index.json from the outputs of every step it
// needs (see package pack for the format). Its bytes embed the plan id, so
// its cache key includes the plan id.
//
// Output: "PACK:pack-index.json".
func (x *execution) doPackIndex(ctx context.Context, n *node) (outputs, error) {
	entries, err := packEntries(n)
	if err != nil {
		return nil, err
	}
	ix := &pack.Index{
		FormatVersion:   pack.FormatVersion,
		Kind:            pack.Kind,
		Name:            n.target.t.Name,
		PlanID:          n.def.Plan.ID,
		SpecDigest:      n.def.Plan.SpecDigest,
		SourceDateEpoch: n.def.mtime.Format(time.RFC3339),
	}
	for _, e := range entries {
		if e.Path == pack.IndexPath {
			return nil, fmt.Errorf("a needed step writes %s, which is the pack index's own path", e.Path)
		}
		ix.Entries = append(ix.Entries, pack.Entry{Path: e.Path, Size: e.Size, SHA256: e.Digest.Hex})
	}
	for _, d := range needOfAction(n, plan.ActionImage) {
		for _, in := range d.def.Inputs {
			if in.Image == nil {
				return nil, fmt.Errorf("image step input %s: not an image input", in.Key())
			}
			top, err := pack.Top(in)
			if err != nil {
				return nil, err
			}
			ix.Images = append(ix.Images, pack.Image{
				Name:         in.Name,
				Digest:       in.Digest,
				LayoutDigest: top.Digest,
				Tags:         append([]string{}, in.Image.Tags...),
				Platforms:    append([]string{}, in.Image.Platforms...),
			})
		}
	}
	slices.SortFunc(ix.Images, func(a, b pack.Image) int { return strings.Compare(a.Name, b.Name) })
	bundles, err := x.bundles(n)
	if err != nil {
		return nil, err
	}
	ix.Bundles = bundles
	data, err := pack.MarshalIndex(ix)
	if err != nil {
		return nil, err
	}
	h, size, err := x.putBytes(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("store pack index: %w", err)
	}
	out := outputs{}
	return out, out.add(n.entry(pack.IndexPath), h, size)
}

// bundles returns the bundles a pack index lists: the bundle inputs the
// pack-index step names (plan.CheckSteps holds it to name every bundle of
// the plan). Each one's kind comes from the step's "bundleKind.NAME" param.
func (x *execution) bundles(n *node) ([]pack.Bundle, error) {
	var out []pack.Bundle
	for _, in := range n.def.Inputs {
		if in.Kind != plan.KindBundle {
			return nil, fmt.Errorf("input %s is not a bundle", in.Key())
		}
		kind, ok := n.step.Params[plan.ParamBundleKindPrefix+in.Name]
		if !ok || kind == "" {
			return nil, fmt.Errorf("bundle %s: no %q param giving its kind", in.Name, plan.ParamBundleKindPrefix+in.Name)
		}
		out = append(out, pack.Bundle{Name: in.Name, Kind: kind, Digest: in.Digest, URL: in.URL})
	}
	slices.SortFunc(out, func(a, b pack.Bundle) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// doPack streams every entry of the pack from the store into a gzip'd tar,
// itself streamed into the store: memory stays flat whatever the size. The
// entry set is checked against the pack index first, so the pack holds
// exactly what its index lists.
//
// Output: "PACK" (the artifact NAME.tar).
func (x *execution) doPack(ctx context.Context, n *node) (outputs, error) {
	level, err := x.level(n)
	if err != nil {
		return nil, err
	}
	entries, err := packEntries(n)
	if err != nil {
		return nil, err
	}
	if err := x.checkAgainstIndex(ctx, entries); err != nil {
		return nil, err
	}
	tarEntries := make([]archive.Entry, 0, len(entries))
	dirs := map[string]bool{}
	for _, e := range entries {
		name, err := archive.CleanName(e.Path)
		if err != nil || name != e.Path || !plan.ValidPath(e.Path) {
			return nil, fmt.Errorf("pack entry %q: not a clean path inside the pack", e.Path)
		}
		for d := name; strings.Contains(d, "/"); {
			d = d[:strings.LastIndexByte(d, '/')]
			dirs[d] = true
		}
		tarEntries = append(tarEntries, x.storeEntry(ctx, e))
	}
	// What is built must also pass `bale verify`, whose reader refuses
	// archives past its default entry limit.
	if total := len(tarEntries) + len(dirs); total > archive.DefaultLimits().MaxEntries {
		return nil, fmt.Errorf("pack has %d entries with directories, more than the %d a pack may hold", total, archive.DefaultLimits().MaxEntries)
	}
	w, err := x.store.Writer(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	// Large writes keep the store's hashing and file writes efficient;
	// gzip's output does not depend on how it is buffered. The store
	// writer hashes the pack as it is written: the pack's digest never
	// costs a read back.
	bw := bufio.NewWriterSize(w, 1<<20)
	opt := archive.MembersOptions{Level: level, Cache: memberCache{x.store}}
	if err := archive.WriteMembers(ctx, bw, tarEntries, n.def.mtime, opt); err != nil {
		return nil, fmt.Errorf("write pack %s: %w", n.target.packName, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("write pack %s: %w", n.target.packName, err)
	}
	h, size, err := w.Commit()
	if err != nil {
		return nil, err
	}
	out := outputs{}
	return out, out.add(n.target.packName, h, size)
}

// level returns the pack step's gzip level from its params, or from the
// target's compression when the params do not say.
func (x *execution) level(n *node) (int, error) {
	alg, lvl := n.target.t.Compression.Algorithm, strconv.Itoa(n.target.t.Compression.Level)
	if a, ok := n.step.Params[plan.ParamCompression]; ok {
		alg = a
	}
	if l, ok := n.step.Params[plan.ParamLevel]; ok {
		lvl = l
	}
	if alg != plan.CompressionGzip {
		return 0, fmt.Errorf("compression %q: only gzip is supported", alg)
	}
	level, err := strconv.Atoi(lvl)
	if err != nil || level < 0 || level > 9 {
		return 0, fmt.Errorf("compression level %q: want 0 to 9", lvl)
	}
	return level, nil
}

// storeEntry is a tar entry whose body streams from the store, verified as
// it is read: a corrupt blob fails the write instead of entering the pack.
func (x *execution) storeEntry(ctx context.Context, e cas.Output) archive.Entry {
	return archive.Entry{
		Name:   e.Path,
		Size:   e.Size,
		Digest: e.Digest.String(),
		Open: func() (io.ReadCloser, error) {
			rc, size, err := x.store.Open(ctx, e.Digest)
			if err != nil {
				return nil, blobMissing(err)
			}
			if size != e.Size {
				rc.Close()
				return nil, fmt.Errorf("%w: blob %s is %d bytes, the step recorded %d", cas.ErrCorrupt, e.Digest, size, e.Size)
			}
			return rc, nil
		},
	}
}

// memberCache keeps the pack's compressed gzip members in the store, each
// under an action-cache entry keyed by archive.MemberKey (a hash of
// everything that decides the member's bytes, domain-separated from step
// ids), so a rebuild copies every member whose entry is unchanged.
type memberCache struct{ store *cas.Store }

// memberOutput is the path a member's action-cache entry records.
const memberOutput = "member.gz"

func memberID(key string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: key} }

// Get opens the member cached under key. A missing or unreadable entry is
// a miss: the member is compressed again.
func (c memberCache) Get(ctx context.Context, key string) (io.ReadCloser, bool, error) {
	res, ok, err := c.store.GetAction(memberID(key))
	if err != nil || !ok || len(res.Outputs) != 1 || res.Outputs[0].Path != memberOutput {
		return nil, false, nil
	}
	o := res.Outputs[0]
	rc, size, err := c.store.Open(ctx, o.Digest)
	if err != nil {
		return nil, false, nil
	}
	if size != o.Size {
		rc.Close()
		return nil, false, nil
	}
	return rc, true, nil
}

// Put stores the member write writes and records it under key.
func (c memberCache) Put(ctx context.Context, key string, write func(io.Writer) error) (io.ReadCloser, error) {
	w, err := c.store.Writer(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := write(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	h, size, err := w.Commit()
	if err != nil {
		return nil, err
	}
	if err := c.store.PutAction(memberID(key), &cas.ActionResult{Outputs: []cas.Output{{Path: memberOutput, Digest: h, Size: size}}}); err != nil {
		return nil, err
	}
	rc, _, err := c.store.Open(ctx, h)
	return rc, err
}

// checkAgainstIndex checks that the pack's entries are exactly the pack
// index plus the index itself, with the same sizes and digests.
func (x *execution) checkAgainstIndex(ctx context.Context, entries []cas.Output) error {
	var ixOut *cas.Output
	for i := range entries {
		if entries[i].Path == pack.IndexPath {
			ixOut = &entries[i]
		}
	}
	if ixOut == nil {
		return fmt.Errorf("no needed step writes %s", pack.IndexPath)
	}
	data, err := x.readBlob(ctx, ixOut.Digest, maxIndexSize)
	if err != nil {
		return fmt.Errorf("read pack index: %w", err)
	}
	ix, err := pack.ParseIndex(data)
	if err != nil {
		return err
	}
	if len(ix.Entries) != len(entries)-1 {
		return fmt.Errorf("pack index lists %d entries, the pack step has %d besides the index: its needs differ from the pack-index step's", len(ix.Entries), len(entries)-1)
	}
	i := 0
	for _, e := range entries {
		if e.Path == pack.IndexPath {
			continue
		}
		want := ix.Entries[i]
		i++
		if want.Path != e.Path || want.Size != e.Size || want.SHA256 != e.Digest.Hex {
			return fmt.Errorf("pack entry %s (%d bytes, %s) differs from the pack index's %s (%d bytes, %s)", e.Path, e.Size, e.Digest.Hex, want.Path, want.Size, want.SHA256)
		}
	}
	return nil
}

// doChecksum writes NAME.tar.sha256 in sha256sum format. The pack's digest
// is its store key, so the pack is not read again.
//
// Output: "NAME.tar.sha256".
func (x *execution) doChecksum(ctx context.Context, n *node) (outputs, error) {
	var packOut *cas.Output
	for _, d := range n.needs {
		for i, o := range d.result.Outputs {
			if o.Path == n.target.packName {
				packOut = &d.result.Outputs[i]
			}
		}
	}
	if packOut == nil {
		return nil, fmt.Errorf("no needed step writes %s", n.target.packName)
	}
	h, size, err := x.putBytes(ctx, pack.ChecksumLine(packOut.Digest.Hex, n.target.packName))
	if err != nil {
		return nil, fmt.Errorf("store checksum: %w", err)
	}
	out := outputs{}
	return out, out.add(n.target.packName+".sha256", h, size)
}
