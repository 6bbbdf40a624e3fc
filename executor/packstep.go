package executor

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	gohash "hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/internal/sums"
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
			top, err := plan.ImageTop(in)
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
	if ix.Charts, err = charts(n, ix.Entries); err != nil {
		return nil, err
	}
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

// charts returns the charts section of a pack index from the chart and
// values steps n needs: each chart's upstream digest and source from its
// input, its re-archived file's digest from entries.
func charts(n *node, entries []pack.Entry) ([]pack.Chart, error) {
	sums := make(map[string]pack.Entry, len(entries))
	for _, e := range entries {
		sums[e.Path] = e
	}
	var out []pack.Chart
	byName := map[string]int{}
	for _, d := range needOfAction(n, plan.ActionChart) {
		in := d.def.Inputs[0]
		if in.Chart == nil {
			return nil, fmt.Errorf("chart step input %s: not a chart input", in.Key())
		}
		path := pack.ChartPath(in.Name, in.Chart.Version)
		e, ok := sums[path]
		if !ok {
			return nil, fmt.Errorf("chart %s: no entry %s", in.Name, path)
		}
		src := pack.ChartSource{Type: in.Source.Type, Path: in.Source.Path, URL: in.Source.URL, Ref: in.Source.Ref}
		byName[in.Name] = len(out)
		out = append(out, pack.Chart{Name: in.Name, Version: in.Chart.Version, Path: path, SHA256: e.SHA256, UpstreamDigest: in.Digest, Source: src})
	}
	for _, d := range needOfAction(n, plan.ActionValues) {
		name, version := d.step.Params[plan.ParamName], d.step.Params[plan.ParamVersion]
		i, ok := byName[name]
		if !ok || out[i].Version != version {
			return nil, fmt.Errorf("values for chart %s %s: the pack has no such chart", name, version)
		}
		e, ok := sums[pack.ValuesPath(name, version)]
		if !ok {
			return nil, fmt.Errorf("values for chart %s: no entry %s", name, pack.ValuesPath(name, version))
		}
		out[i].Values = &e
	}
	slices.SortFunc(out, func(a, b pack.Chart) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
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

// doPack writes the pack, streaming every entry from the store into a
// gzip'd tar: memory stays flat whatever the size. The entry set is checked
// against the pack index first, so the pack holds exactly what its index
// lists.
//
// The pack is not kept in the store: it is written straight to a
// temporary file in the output directory, hashed on its way, and published
// with the other artifacts (see writeArtifacts); its result records only
// its digest and size (a Derived output). Its pieces are in the store (the
// entries, and the compressed members worth keeping), so a later build
// that wants the pack elsewhere assembles it again, reusing those members,
// for about the cost of a copy.
//
// Output: "PACK" (the artifact NAME.tar).
func (x *execution) doPack(ctx context.Context, n *node) (outputs, error) {
	name := n.target.packName
	out := outputs{}
	if !slices.Contains(n.target.t.Artifacts, name) {
		h, size, err := x.writePack(ctx, n, io.Discard)
		if err != nil {
			return nil, err
		}
		return out, out.addDerived(name, h, size)
	}
	if err := os.MkdirAll(x.outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	f, err := atomicfile.Create(filepath.Join(x.outDir, name))
	if err != nil {
		return nil, fmt.Errorf("write pack %s: %w", name, err)
	}
	h, size, err := x.writePack(ctx, n, f)
	if err != nil {
		_ = f.Abort()
		return nil, err
	}
	// writeArtifacts publishes it, or the attempt's end drops it.
	x.stagePack(name, f, cas.Output{Path: name, Digest: h, Size: size, Derived: true})
	return out, out.addDerived(name, h, size)
}

// writePack writes n's pack to w and returns its digest and size, hashed
// as it is written.
func (x *execution) writePack(ctx context.Context, n *node, w io.Writer) (v1.Hash, int64, error) {
	level, err := x.level(n)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	entries, err := packEntries(n)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	if err := x.checkAgainstIndex(ctx, entries); err != nil {
		return v1.Hash{}, 0, err
	}
	tarEntries := make([]archive.Entry, 0, len(entries))
	dirs := map[string]bool{}
	for _, e := range entries {
		name, err := archive.CleanName(e.Path)
		if err != nil || name != e.Path || !plan.ValidPath(e.Path) {
			return v1.Hash{}, 0, fmt.Errorf("pack entry %q: not a clean path inside the pack", e.Path)
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
		return v1.Hash{}, 0, fmt.Errorf("pack has %d entries with directories, more than the %d a pack may hold", total, archive.DefaultLimits().MaxEntries)
	}
	// Large writes keep hashing and file writes efficient; gzip's output
	// does not depend on how it is buffered.
	hw := &hashWriter{w: w, h: sha256.New()}
	bw := bufio.NewWriterSize(hw, 1<<20)
	// Every directory's segment is one header block.
	total := 512 * int64(len(dirs))
	for _, e := range entries {
		total += archive.SegmentSize(e.Size)
	}
	pn := n
	opt := archive.MembersOptions{Level: level, Cache: memberCache{x.store}, Progress: func(b int64) {
		x.emit(Event{Kind: EventPacked, StepID: pn.step.ID, Action: pn.step.Action, Subject: pn.target.packName, Bytes: b, Total: total})
	}}
	if err := archive.WriteMembers(ctx, bw, tarEntries, n.def.mtime, opt); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("write pack %s: %w", n.target.packName, err)
	}
	if err := bw.Flush(); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("write pack %s: %w", n.target.packName, err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(hw.h.Sum(nil))}, hw.n, nil
}

// checkPieces re-hashes, whatever their stamps say, every blob n's pack is
// made from (its entries and its cached members) and drops the corrupt
// ones. The error wraps cas.ErrCorrupt if it found any.
func (x *execution) checkPieces(ctx context.Context, n *node) error {
	level, err := x.level(n)
	if err != nil {
		return err
	}
	entries, err := packEntries(n)
	if err != nil {
		return err
	}
	var errs []error
	check := func(h v1.Hash) {
		if err := cas.Verify(ctx, x.store, h); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, e := range entries {
		check(e.Digest)
		key, ok := archive.MemberKey(x.storeEntry(ctx, e), level, n.def.mtime)
		if !ok {
			continue
		}
		if res, hit, _ := x.store.GetAction(ctx, memberID(key)); hit && len(res.Outputs) == 1 && !res.Outputs[0].Derived {
			check(res.Outputs[0].Digest)
		}
	}
	return errors.Join(errs...)
}

// hashWriter hashes and counts what it writes to w.
type hashWriter struct {
	w io.Writer
	h gohash.Hash
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
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

// memberCache keeps the pack's compressed gzip members in the store, an
// entry's members as one blob under an action-cache entry keyed by
// archive.MemberKey (a hash of everything that decides the members' bytes,
// domain-separated from step ids), so a rebuild copies the members of
// every unchanged entry. WriteMembers stores only members that compress
// well; the others are compressed again, which costs less than writing
// them and reading them back.
type memberCache struct{ store cas.Store }

// memberOutput is the path a member entry's action-cache result records.
const memberOutput = "members.gz"

func memberID(key string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: key} }

// Get opens the members cached under key. A missing or unreadable entry is
// a miss: the members are compressed again. The blob is verified as it is
// read, so a corrupt one fails the pack (and the build starts over without
// it) rather than entering it.
func (c memberCache) Get(ctx context.Context, key string) (io.ReadCloser, bool, error) {
	res, ok, err := c.store.GetAction(ctx, memberID(key))
	if err != nil || !ok || len(res.Outputs) != 1 || res.Outputs[0].Path != memberOutput || res.Outputs[0].Derived {
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

// Create starts storing members under key.
func (c memberCache) Create(ctx context.Context, key string) (archive.MemberWriter, error) {
	w, err := c.store.Writer(ctx)
	if err != nil {
		return nil, err
	}
	return &memberWriter{ctx: ctx, store: c.store, key: key, w: w}, nil
}

// memberWriter stores an entry's members as a blob and records it under
// the entry's key.
type memberWriter struct {
	ctx   context.Context
	store cas.Store
	key   string
	w     cas.BlobWriter
}

func (m *memberWriter) Write(p []byte) (int, error) { return m.w.Write(p) }

func (m *memberWriter) Commit() error {
	h, size, err := m.w.Commit()
	if err != nil {
		return err
	}
	return m.store.PutAction(m.ctx, memberID(m.key), &cas.ActionResult{Outputs: []cas.Output{{Path: memberOutput, Digest: h, Size: size}}})
}

func (m *memberWriter) Abort() { _ = m.w.Abort() }

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

// doChecksum writes NAME.tar.sha256 in sha256sum format from the digest
// the pack step recorded: the pack is not read again.
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
	h, size, err := x.putBytes(ctx, sums.Line(packOut.Digest.Hex, n.target.packName))
	if err != nil {
		return nil, fmt.Errorf("store checksum: %w", err)
	}
	out := outputs{}
	return out, out.add(n.target.packName+".sha256", h, size)
}
