// Package verify checks a bale bootstrap pack offline: `bale verify`.
//
// Pack reads the pack once, through pack.Scan's hostile reader (entry,
// size and decompression limits; no links, devices or escaping names; the
// gzip members in turn), and checks everything a pack promises: the fixed
// gzip header, uniform tar metadata, sorted entries with explicit
// directories, every entry against the pack index, every OCI blob against
// its digest, the OCI index.json against the docker-save manifest.json,
// the bytes against bale's own re-encoding of the entries, and the
// NAME.sha256 file beside the pack. It reports every failure it finds, each
// naming the entry and the check, rather than stopping at the first, so one
// run tells what is wrong with a pack. PackAt also returns what the scan
// read (every entry's place, size and sha256; the documents), so a caller
// such as `bale push` reads the verified pack again only for the entries
// it needs.
package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/sums"
	"github.com/bale-build/bale/pack"
)

// Checks, as named in a Report.
const (
	CheckGzip      = "gzip-header" // the gzip header is bale's fixed one
	CheckArchive   = "archive"     // gzip and tar structure, limits, entry types and names
	CheckMetadata  = "metadata"    // uid/gid 0, no user/group names, 0644/0755, no extra times or records
	CheckMtime     = "mtime"       // every mtime equals the pack index's sourceDateEpoch
	CheckOrder     = "order"       // entries sorted by path
	CheckDirs      = "dirs"        // every parent directory listed, before its children
	CheckIndex     = "pack-index"  // the pack index is present, valid and canonical
	CheckEntries   = "entries"     // every entry against the pack index: none missing, none extra, sizes, sha256
	CheckBlobs     = "blobs"       // every OCI blob against its digest and the sizes that reference it
	CheckOCILayout = "oci-layout"  // oci-layout, index.json, manifest.json: present, valid, consistent
	CheckChecksum  = "checksum"    // the NAME.sha256 file beside the pack
	CheckCanonical = "canonical"   // re-encoding the entries with bale's rules gives the pack's exact bytes
	CheckCharts    = "charts"      // every charts/*.tgz is in bale's canonical chart form for the pack's timestamp
)

// maxChecksumSize bounds the NAME.sha256 file read.
const maxChecksumSize = 4096

// Pack verifies the bootstrap pack at path with archive.DefaultLimits.
// The error is for a pack that cannot be read at all (missing file,
// cancelled context); everything wrong with the pack itself is in the
// report's Failures.
func Pack(ctx context.Context, path string) (*Report, error) {
	return PackLimits(ctx, path, archive.DefaultLimits())
}

// PackLimits is Pack with explicit archive limits.
func PackLimits(ctx context.Context, path string, lim archive.Limits) (*Report, error) {
	f, size, err := pack.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("verify pack: %w", err)
	}
	defer f.Close()
	rep, _, err := PackAt(ctx, f, size, path, lim)
	return rep, err
}

// PackAt verifies the pack in r, size bytes, as Pack does; path names it
// in the report, and NAME.sha256 is looked for beside it. It returns the
// scanned pack too, good or not, for reading entries again through r: a
// caller must not use it unless the report is OK.
func PackAt(ctx context.Context, r io.ReaderAt, size int64, path string, lim archive.Limits) (*Report, *pack.Reader, error) {
	v := &verifier{
		ctx:    ctx,
		rep:    &Report{Path: path, PackFacts: &PackFacts{}, Checks: []string{}, Failures: []Failure{}},
		dirs:   map[string]bool{},
		charts: map[string]chartResult{},
		cmp:    &comparer{diff: -1},
	}
	pr, err := pack.Scan(ctx, r, size, pack.ScanOptions{
		Limits:    lim,
		Raw:       io.MultiWriter(&v.head, v.cmp.packSide()),
		GzipExtra: v.startCanonical,
		Entry:     v.entry,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("verify pack %s: %w", path, err)
	}
	v.pr = pr
	v.rep.SHA256 = pr.SHA256()
	v.ran(CheckArchive, CheckMetadata, CheckOrder, CheckDirs)
	walkErr := pr.Err()
	if walkErr != nil {
		v.fail("", CheckArchive, "%v", walkErr)
	}
	if !pr.Gzip() {
		v.canonFail("", "not a gzip stream: bale writes a pack as gzip members (%s)", archive.MemberLayout)
	}
	v.finishCanonical(walkErr)
	v.finishCharts()
	v.checkTooLarge()
	ix := v.checkIndex()
	v.checkGzip(v.head.b, ix)
	v.checkMtime(ix)
	if walkErr == nil {
		v.checkEntries(ix)
		v.checkBlobs()
		v.checkLayout(ix)
	}
	v.checkChecksum(path)
	return v.rep, pr, nil
}

// headBytes keeps the first bytes of the pack: the gzip header's fixed
// part.
type headBytes struct{ b []byte }

func (h *headBytes) Write(p []byte) (int, error) {
	if k := 10 - len(h.b); k > 0 {
		h.b = append(h.b, p[:min(k, len(p))]...)
	}
	return len(p), nil
}

// startCanonical reads the member parameters from the first member's gzip
// header; the encoder itself starts at the first entry, whose mtime it
// takes (the mtime check compares it with the pack index).
func (v *verifier) startCanonical(extra []byte) {
	v.ran(CheckCanonical)
	p, err := archive.ParseMemberExtra(extra)
	switch {
	case err != nil:
		v.canonFail("", "first gzip member: %v: not a pack in bale's member layout %s", err, archive.MemberLayout)
	case p.Layout != archive.MemberLayout:
		v.canonFail("", "member layout %q: this bale writes and checks %q", p.Layout, archive.MemberLayout)
	case p.Compressor != archive.Compressor:
		v.canonFail("", "compressed by %s: this bale re-encodes with %s, so it cannot check the bytes", p.Compressor, archive.Compressor)
	default:
		v.params = &p
	}
}

// canonFail records a canonical-form failure and stops re-encoding: after
// the first difference, every later byte would differ too.
func (v *verifier) canonFail(entry, format string, args ...any) {
	v.ran(CheckCanonical)
	if v.canonDone {
		return
	}
	v.canonDone = true
	v.params = nil
	v.fail(entry, CheckCanonical, format, args...)
}

// segment streams one entry's body through the re-encoder: its tar segment
// goes, compressed as members, to the comparer, and body bytes to sink.
func (v *verifier) segment(h *tar.Header, body io.Reader, sink io.Writer) error {
	if v.enc == nil && !v.canonDone {
		enc, err := archive.NewMemberEncoder(v.levelOr(0), h.ModTime)
		if err != nil {
			v.canonFail(h.Name, "%v", err)
		} else {
			v.enc = enc
		}
	}
	e := archive.Entry{Name: h.Name, Mode: h.Mode, Size: h.Size, Dir: h.Typeflag == tar.TypeDir}
	if v.enc == nil || !validMode(e) {
		if !v.canonDone {
			v.canonFail(h.Name, "mode %#o: bale writes 0644 or 0755", h.Mode)
		}
		_, err := io.Copy(sink, body)
		return err
	}
	var member io.WriteCloser
	var seg io.Writer = io.Discard
	if v.params != nil {
		member = v.enc.Members(v.cmp)
		seg = member
	}
	if !e.Dir {
		tee := io.TeeReader(body, sink)
		e.Open = func() (io.ReadCloser, error) { return io.NopCloser(tee), nil }
	}
	if err := v.enc.Segment(v.ctx, seg, e); err != nil {
		return err
	}
	if member != nil {
		if err := member.Close(); err != nil {
			return err
		}
	}
	if v.params != nil {
		v.checkCompared(h.Name)
	}
	return nil
}

// checkCompared fails the canonical check at the first difference the
// comparer found.
func (v *verifier) checkCompared(name string) {
	switch {
	case v.cmp.diff >= 0:
		v.canonFail(name, "the pack's bytes differ from bale's encoding of this entry at pack offset %d: not the bytes bale writes for these entries", v.cmp.diff)
	case v.cmp.lagged:
		v.canonFail(name, "the pack's bytes run more than %d bytes ahead of bale's encoding of its entries: not the gzip members bale writes", maxLag)
	}
}

func (v *verifier) levelOr(def int) int {
	if v.params == nil {
		return def
	}
	return v.params.Level
}

func validMode(e archive.Entry) bool {
	if e.Dir {
		return e.Mode == 0o755
	}
	return e.Mode == 0o644 || e.Mode == 0o755
}

// finishCanonical re-encodes the end-of-archive member and checks the pack
// ends with it.
func (v *verifier) finishCanonical(walkErr error) {
	if v.params == nil || v.enc == nil {
		if walkErr == nil && v.enc == nil && !v.canonDone {
			v.canonFail("", "the pack has no entries")
		}
		return
	}
	if walkErr != nil {
		// The archive check reports why; the bytes cannot be bale's.
		v.canonFail("", "not checked: the archive could not be read")
		return
	}
	if err := v.enc.End(v.cmp); err != nil {
		v.canonFail("", "re-encode the end-of-archive member: %v", err)
		return
	}
	switch ahead := v.cmp.ahead(); {
	case v.cmp.diff >= 0:
		v.canonFail("", "the end-of-archive member differs from bale's at pack offset %d", v.cmp.diff)
	case v.cmp.lagged:
		v.canonFail("", "more than %d bytes after the end-of-archive member at pack offset %d: bale writes nothing after it", maxLag, v.cmp.off)
	case ahead > 0:
		v.canonFail("", "data after the end-of-archive member at pack offset %d: bale writes nothing after it", v.cmp.off)
	case ahead < 0:
		v.canonFail("", "the end-of-archive member differs from bale's at pack offset %d: the pack ends there", v.cmp.off)
	}
}

// maxLag bounds how far the pack's bytes, as the scan reads them, may run
// ahead of bale's encoding of the entries read (or the encoding ahead of
// the pack). For bale's own packs the lag is about one member and the
// scan's read-ahead; a stream of gzip members that decompress to little
// or nothing would otherwise be held in memory.
const maxLag = 8 * archive.MemberChunk

// comparer compares two streams from the pack's first byte: the pack's
// bytes, fed by the scan as it reads them (packSide), and bale's encoding
// of the entries, written by the encoder (Write). Whichever runs ahead is
// held until the other catches up. diff is the pack offset of the first
// difference, or -1.
type comparer struct {
	buf      []byte // bytes of the side that is ahead, from start
	start    int
	packLead bool  // buf holds pack bytes (else encoded bytes)
	off      int64 // bytes compared so far: the offset of buf[start]
	diff     int64
	lagged   bool
}

// packSide returns the writer the scan feeds the pack's bytes to.
func (c *comparer) packSide() io.Writer { return packWriter{c} }

type packWriter struct{ c *comparer }

func (w packWriter) Write(p []byte) (int, error) {
	w.c.feed(p, true)
	return len(p), nil
}

// Write takes bale's encoding of the entries.
func (c *comparer) Write(p []byte) (int, error) {
	c.feed(p, false)
	return len(p), nil
}

func (c *comparer) feed(p []byte, fromPack bool) {
	if c.diff >= 0 || c.lagged {
		return
	}
	if pending := c.buf[c.start:]; len(pending) > 0 && c.packLead != fromPack {
		k := min(len(p), len(pending))
		if !bytes.Equal(p[:k], pending[:k]) {
			i := 0
			for p[i] == pending[i] {
				i++
			}
			c.diff = c.off + int64(i)
			return
		}
		c.off += int64(k)
		c.start += k
		p = p[k:]
		if c.start == len(c.buf) {
			c.buf, c.start = c.buf[:0], 0
		}
		if len(p) == 0 {
			return
		}
	}
	c.packLead = fromPack
	if c.start > 0 && c.start >= len(c.buf)/2 {
		// Move what is left to the front rather than grow without end.
		c.buf = append(c.buf[:0], c.buf[c.start:]...)
		c.start = 0
	}
	if len(c.buf)-c.start+len(p) > maxLag {
		c.lagged = true
		c.buf, c.start = nil, 0
		return
	}
	c.buf = append(c.buf, p...)
}

// ahead says which side is ahead once both ended: > 0 the pack has bytes
// the encoding has not, < 0 the encoding has bytes the pack has not.
func (c *comparer) ahead() int {
	n := len(c.buf) - c.start
	if n == 0 || c.packLead {
		return n
	}
	return -n
}

// verifier accumulates state across one pack.
type verifier struct {
	ctx context.Context
	rep *Report
	pr  *pack.Reader // the scan, once it is done
	// dirs holds the directories listed so far, for the dirs check.
	dirs     map[string]bool
	last     string
	mtime    time.Time
	mtimeSet bool
	head     headBytes
	// charts holds each chart's check, finished once the scan has the
	// chart's digest.
	charts map[string]chartResult

	// The canonical re-encoding: the member parameters from the first
	// gzip header (nil once a difference is found or if they are not
	// this bale's), the encoder, and the comparer with the pack's bytes.
	params    *archive.MemberParams
	enc       *archive.MemberEncoder
	cmp       *comparer
	canonDone bool
}

func (v *verifier) ran(checks ...string) { v.rep.Ran(checks...) }

func (v *verifier) fail(entry, check, format string, args ...any) {
	v.rep.Fail(entry, check, fmt.Sprintf(format, args...))
}

// entry checks one tar entry as the scan streams it.
func (v *verifier) entry(h *tar.Header, body io.Reader) error {
	v.rep.Entries++
	name := h.Name
	v.checkHeader(h)
	if v.last != "" && name <= v.last {
		v.fail(name, CheckOrder, "comes after %q: entries must be sorted by path", v.last)
	}
	v.last = name
	if dir := path.Dir(name); dir != "." && !v.dirs[dir] {
		v.fail(name, CheckDirs, "parent directory %s is not listed before it", dir)
	}
	if h.Typeflag == tar.TypeDir {
		v.dirs[name] = true
		return v.segment(h, noBody{}, io.Discard)
	}
	if !isChart(name) {
		return v.segment(h, body, io.Discard)
	}
	chart := v.startChart(name, h.ModTime)
	err := v.segment(h, body, chart)
	v.charts[name] = chart.wait()
	return err
}

// file returns the scan's record of a file entry read whole.
func (v *verifier) file(name string) (*pack.File, bool) {
	f, ok := v.pr.File(name)
	if !ok || f.Dir {
		return nil, false
	}
	return f, true
}

// checkTooLarge fails the pack's own JSON files the scan could not keep.
func (v *verifier) checkTooLarge() {
	for _, name := range []string{pack.IndexPath, pack.OCILayoutPath, pack.OCIIndexPath, pack.DockerManifestPath} {
		if f, ok := v.file(name); ok {
			if _, kept := v.pr.Doc(name); !kept {
				v.fail(name, CheckArchive, "%d bytes: too large to check", f.Size)
			}
		}
	}
}

// noBody is a directory's empty body.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }

// checkHeader checks the metadata bale writes uniformly.
func (v *verifier) checkHeader(h *tar.Header) {
	name := h.Name
	if h.Uid != 0 || h.Gid != 0 {
		v.fail(name, CheckMetadata, "owner %d/%d, want 0/0", h.Uid, h.Gid)
	}
	if h.Uname != "" || h.Gname != "" {
		v.fail(name, CheckMetadata, "user/group names %q/%q, want empty", h.Uname, h.Gname)
	}
	switch {
	case h.Typeflag == tar.TypeDir && h.Mode != 0o755:
		v.fail(name, CheckMetadata, "directory mode %#o, want 0755", h.Mode)
	case h.Typeflag == tar.TypeReg && h.Mode != 0o644 && h.Mode != 0o755:
		v.fail(name, CheckMetadata, "file mode %#o, want 0644 or 0755", h.Mode)
	}
	if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
		v.fail(name, CheckMetadata, "has access or change times")
	}
	if h.Format != tar.FormatUSTAR && h.Format != tar.FormatPAX {
		v.fail(name, CheckMetadata, "tar format %v, want USTAR or PAX", h.Format)
	}
	for k := range h.PAXRecords {
		if k != "path" && k != "size" {
			v.fail(name, CheckMetadata, "PAX record %q: bale writes only path and size", k)
		}
	}
	if !v.mtimeSet {
		v.mtime, v.mtimeSet = h.ModTime, true
	} else if !h.ModTime.Equal(v.mtime) {
		v.fail(name, CheckMtime, "mtime %s differs from the first entry's %s", h.ModTime.UTC().Format(time.RFC3339), v.mtime.UTC().Format(time.RFC3339))
	}
}

// checkIndex parses the pack index and checks it is canonical.
func (v *verifier) checkIndex() *pack.Index {
	v.ran(CheckIndex)
	data, ok := v.pr.Doc(pack.IndexPath)
	if !ok {
		if _, listed := v.file(pack.IndexPath); !listed {
			v.fail(pack.IndexPath, CheckIndex, "missing")
		}
		return nil
	}
	v.rep.RootHash = pack.RootHash(data)
	ix, err := pack.ParseIndex(data)
	if err != nil {
		v.fail(pack.IndexPath, CheckIndex, "%v", err)
		return nil
	}
	if canon, err := pack.MarshalIndex(ix); err != nil || !bytes.Equal(canon, data) {
		v.fail(pack.IndexPath, CheckIndex, "not in canonical form (bale's encoding: fixed field order, two-space indent, trailing newline)")
	}
	if _, err := time.Parse(time.RFC3339, ix.SourceDateEpoch); err != nil {
		v.fail(pack.IndexPath, CheckIndex, "sourceDateEpoch %q: %v", ix.SourceDateEpoch, err)
	}
	return ix
}

// checkGzip checks the first member's gzip header: only the extra field
// bale writes (no name or comment), OS byte 255, mtime the build
// timestamp. The canonical check covers every later member's.
func (v *verifier) checkGzip(head []byte, ix *pack.Index) {
	v.ran(CheckGzip)
	if len(head) < 10 || head[0] != 0x1f || head[1] != 0x8b || head[2] != 8 {
		v.fail("", CheckGzip, "not a gzip stream")
		return
	}
	if head[3] != 0x04 {
		v.fail("", CheckGzip, "flags %#x: want only FEXTRA (bale's member parameters; no name, comment or header CRC)", head[3])
	}
	if head[9] != 255 {
		v.fail("", CheckGzip, "OS byte %d, want 255", head[9])
	}
	if ix == nil {
		return
	}
	mtime := int64(head[4]) | int64(head[5])<<8 | int64(head[6])<<16 | int64(head[7])<<24
	if t, err := time.Parse(time.RFC3339, ix.SourceDateEpoch); err == nil && t.Unix() != mtime {
		v.fail("", CheckGzip, "header mtime %s, want sourceDateEpoch %s", time.Unix(mtime, 0).UTC().Format(time.RFC3339), ix.SourceDateEpoch)
	}
}

// checkMtime compares the (uniform) entry mtime with the index.
func (v *verifier) checkMtime(ix *pack.Index) {
	v.ran(CheckMtime)
	if ix == nil || !v.mtimeSet {
		return
	}
	t, err := time.Parse(time.RFC3339, ix.SourceDateEpoch)
	if err == nil && !v.mtime.Equal(t) {
		v.fail("", CheckMtime, "entries have mtime %s, the pack index says sourceDateEpoch %s", v.mtime.UTC().Format(time.RFC3339), ix.SourceDateEpoch)
	}
}

// checkEntries compares the files with the pack index.
func (v *verifier) checkEntries(ix *pack.Index) {
	v.ran(CheckEntries)
	if ix == nil {
		return
	}
	listed := map[string]bool{pack.IndexPath: true}
	for _, e := range ix.Entries {
		listed[e.Path] = true
		got, ok := v.file(e.Path)
		switch {
		case !ok:
			v.fail(e.Path, CheckEntries, "listed in the pack index but missing from the pack")
		case got.Size != e.Size:
			v.fail(e.Path, CheckEntries, "size %d, the pack index says %d", got.Size, e.Size)
		case got.SHA256 != e.SHA256:
			v.fail(e.Path, CheckEntries, "sha256 %s, the pack index says %s", got.SHA256, e.SHA256)
		}
	}
	implied := map[string]bool{}
	for _, p := range v.fileNames() {
		if !listed[p] {
			v.fail(p, CheckEntries, "in the pack but not listed in the pack index")
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			implied[d] = true
		}
	}
	for _, d := range slices.Sorted(maps.Keys(v.dirs)) {
		if !implied[d] {
			v.fail(d, CheckEntries, "directory holds no listed file")
		}
	}
}

// checkBlobs checks every file under images/blobs/sha256 against its name.
func (v *verifier) checkBlobs() {
	v.ran(CheckBlobs)
	for _, p := range v.fileNames() {
		hexName, ok := strings.CutPrefix(p, pack.BlobsDir+"/")
		if !ok {
			continue
		}
		if !digest.ValidHex(hexName) {
			v.fail(p, CheckBlobs, "not named by a sha256 digest")
			continue
		}
		if f, _ := v.file(p); f.SHA256 != hexName {
			v.fail(p, CheckBlobs, "content has sha256 %s, not the digest it is named by", f.SHA256)
		}
	}
	for d := range v.dirs {
		if strings.HasPrefix(d, pack.BlobsDir+"/") {
			v.fail(d, CheckBlobs, "directory inside the blob store")
		}
	}
}

// fileNames returns the files the scan read whole, sorted.
func (v *verifier) fileNames() []string {
	var names []string
	for _, f := range v.pr.Files() {
		if !f.Dir {
			names = append(names, f.Name)
		}
	}
	slices.Sort(names)
	return names
}

// image is one image manifest reachable from index.json.
type image struct {
	config string
	layers []string
}

// checkLayout checks the OCI layout files and the docker-save manifest
// against each other and the blobs.
func (v *verifier) checkLayout(ix *pack.Index) {
	v.ran(CheckOCILayout)
	if ix == nil || len(ix.Images) == 0 {
		if _, ok := v.file(pack.OCIIndexPath); !ok {
			return // a pack without images
		}
	}
	var layout pack.OCILayout
	if err := v.decode(pack.OCILayoutPath, &layout); err == nil && layout.ImageLayoutVersion != "1.0.0" {
		v.fail(pack.OCILayoutPath, CheckOCILayout, "imageLayoutVersion %q, want 1.0.0", layout.ImageLayoutVersion)
	}
	var index pack.ManifestOrIndex
	if err := v.decode(pack.OCIIndexPath, &index); err != nil {
		return
	}
	if index.SchemaVersion != 2 {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "schemaVersion %d, want 2", index.SchemaVersion)
	}
	// Each top-level descriptor's reachable manifests, walked by the one
	// walker inspect and push use too.
	w := pack.NewImageWalker(v.pr)
	tops := make([][]image, len(index.Manifests))
	for i, d := range index.Manifests {
		g, errs := w.Walk(pack.OCIIndexPath, d)
		for _, e := range errs {
			check := CheckOCILayout
			if e.Size {
				check = CheckBlobs
			}
			v.fail(e.Entry, check, "%s", e.Detail)
		}
		for _, m := range g.Manifests {
			img := image{config: m.Config.Digest}
			for _, l := range m.Layers {
				img.layers = append(img.layers, l.Digest)
			}
			tops[i] = append(tops[i], img)
		}
	}
	var docker []pack.DockerManifest
	if err := v.decode(pack.DockerManifestPath, &docker); err != nil {
		return
	}
	if len(docker) != len(index.Manifests) {
		v.fail(pack.DockerManifestPath, CheckOCILayout, "lists %d images, index.json lists %d", len(docker), len(index.Manifests))
	}
	for i := range min(len(docker), len(index.Manifests)) {
		dm, d := docker[i], index.Manifests[i]
		at := fmt.Sprintf("%s[%d]", pack.DockerManifestPath, i)
		if ref := d.Annotations[pack.AnnotationRefName]; ref != "" && (len(dm.RepoTags) == 0 || dm.RepoTags[0] != ref) {
			v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: RepoTags %q, index.json names %q", at, dm.RepoTags, ref)
		}
		var match *image
		for j := range tops[i] {
			if "blobs/sha256/"+strings.TrimPrefix(tops[i][j].config, "sha256:") == dm.Config {
				match = &tops[i][j]
			}
		}
		if match == nil {
			v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: config %s is not the config of image %s in index.json", at, dm.Config, d.Digest)
			continue
		}
		want := make([]string, len(match.layers))
		for j, l := range match.layers {
			want[j] = "blobs/sha256/" + strings.TrimPrefix(l, "sha256:")
		}
		if !slices.Equal(dm.Layers, want) {
			v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: layers differ from manifest's in index.json", at)
		}
	}
	if ix == nil {
		return
	}
	if len(ix.Images) != len(index.Manifests) {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "lists %d images, the pack index %d", len(index.Manifests), len(ix.Images))
		return
	}
	for i, im := range ix.Images {
		v.checkImage(i, im, index.Manifests[i], docker)
	}
}

// checkImage ties pack-index.json's image i to images/index.json's and
// images/manifest.json's: name, digest and tags must agree.
func (v *verifier) checkImage(i int, im pack.Image, d pack.Descriptor, docker []pack.DockerManifest) {
	at := fmt.Sprintf("image %d (%s)", i, im.Name)
	if got := d.Annotations[pack.AnnotationImageName]; got != im.Name {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "image %d is %q, the pack index says %q", i, got, im.Name)
	}
	if d.Digest != im.LayoutDigest {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "%s: lists %s, the pack index's layoutDigest is %s", at, d.Digest, im.LayoutDigest)
	}
	var ref string
	if len(im.Tags) > 0 {
		ref = im.Tags[0]
	}
	if got := d.Annotations[pack.AnnotationRefName]; got != ref {
		v.fail(pack.OCIIndexPath, CheckOCILayout, "%s: ref name %q, the pack index's first tag is %q", at, got, ref)
	}
	if i < len(docker) && !slices.Equal(docker[i].RepoTags, im.Tags) && !(len(docker[i].RepoTags) == 0 && len(im.Tags) == 0) {
		v.fail(pack.DockerManifestPath, CheckOCILayout, "%s: RepoTags %q, the pack index's tags are %q", at, docker[i].RepoTags, im.Tags)
	}
	if im.LayoutDigest == im.Digest || d.Digest != im.LayoutDigest {
		return
	}
	// A filtered index stands in for the pinned one: it must be an index
	// of exactly the platforms the pack index says were chosen.
	var doc pack.ManifestOrIndex
	if err := v.decode(pack.BlobPath(d.Digest), &doc); err != nil {
		return
	}
	var got []string
	for _, m := range doc.Manifests {
		got = append(got, m.Platform.String())
	}
	want := slices.Clone(im.Platforms)
	slices.Sort(got)
	slices.Sort(want)
	if doc.Manifests == nil || !slices.Equal(got, want) {
		v.fail(pack.BlobPath(d.Digest), CheckOCILayout, "%s: stands in for pinned index %s, but lists platforms %q, not the chosen %q", at, im.Digest, got, want)
	}
}

// decode parses a kept JSON document, failing the layout check if it is
// missing or malformed.
func (v *verifier) decode(p string, out any) error {
	data, ok := v.pr.Doc(p)
	if !ok {
		err := errors.New("missing or too large to check")
		if _, present := v.file(p); !present {
			err = errors.New("missing")
		}
		v.fail(p, CheckOCILayout, "%v", err)
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		v.fail(p, CheckOCILayout, "invalid JSON: %v", err)
		return err
	}
	return nil
}

// checkChecksum checks PATH.sha256 if present.
func (v *verifier) checkChecksum(packPath string) {
	sumPath := packPath + ".sha256"
	f, err := os.Open(sumPath)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	v.ran(CheckChecksum)
	name := filepath.Base(sumPath)
	if err != nil {
		v.fail(name, CheckChecksum, "%v", err)
		return
	}
	defer f.Close()
	data, err := capread.ReadAll(f, maxChecksumSize)
	if err != nil {
		v.fail(name, CheckChecksum, "%v", err)
		return
	}
	sum, err := sums.ParseLine(data)
	if err != nil {
		v.fail(name, CheckChecksum, "not one sha256sum line \"HEX  NAME\\n\"")
		return
	}
	if sum.Name != filepath.Base(packPath) {
		v.fail(name, CheckChecksum, "names %q, not %q", sum.Name, filepath.Base(packPath))
	}
	if sum.SHA256 != v.rep.SHA256 {
		v.fail(name, CheckChecksum, "says %s, the pack's sha256 is %s", sum.SHA256, v.rep.SHA256)
	}
}

// maxChartFailures bounds the failures reported for one chart archive.
const maxChartFailures = 10

func isChart(name string) bool {
	rest, ok := strings.CutPrefix(name, pack.ChartsDir+"/")
	return ok && strings.HasSuffix(rest, ".tgz") && !strings.Contains(rest, "/")
}

// chartCheck checks one chart archive as its bytes stream past, in a
// goroutine reading from a pipe, so no chart is held in memory.
type chartCheck struct {
	name string
	pw   *io.PipeWriter
	done chan chartResult
}

type chartResult struct {
	failures []string
	sha256   string // of bale's re-encoding of the chart's entries
}

// startChart starts checking the chart archive name against bale's chart
// rules for build timestamp mtime.
func (v *verifier) startChart(name string, mtime time.Time) *chartCheck {
	v.ran(CheckCharts)
	pr, pw := io.Pipe()
	c := &chartCheck{name: name, pw: pw, done: make(chan chartResult, 1)}
	go func() {
		res := checkChart(v.ctx, pr, mtime)
		// Let the pack's walk go on whatever the chart check read.
		_, _ = io.Copy(io.Discard, pr)
		c.done <- res
	}()
	return c
}

// Write feeds the chart's bytes to the check; a failed check never fails
// the pack's own read.
func (c *chartCheck) Write(p []byte) (int, error) {
	_, _ = c.pw.Write(p)
	return len(p), nil
}

// wait ends the chart's bytes and waits for the check.
func (c *chartCheck) wait() chartResult {
	c.pw.Close()
	return <-c.done
}

// finishCharts reports every chart's check, against the chart's digest
// as the scan read it.
func (v *verifier) finishCharts() {
	for _, name := range slices.Sorted(maps.Keys(v.charts)) {
		res := v.charts[name]
		for _, f := range res.failures {
			v.fail(name, CheckCharts, "%s", f)
		}
		f, ok := v.file(name)
		if ok && len(res.failures) == 0 && res.sha256 != f.SHA256 {
			v.fail(name, CheckCharts, "not bale's chart archive for these entries: re-encoding them (gzip level %d, build timestamp, sorted, uid/gid 0) gives sha256 %s, the chart is %s", pack.ChartLevel, res.sha256, f.SHA256)
		}
	}
}

// checkChart walks a chart archive with the chart limits, checks each
// header against bale's chart rules (mtime the pack's build timestamp,
// owners 0/0 without names, modes 0644/0755) and re-encodes the entries
// as bale writes a chart, hashing the result.
func checkChart(ctx context.Context, r io.Reader, mtime time.Time) chartResult {
	var res chartResult
	failf := func(format string, args ...any) {
		if len(res.failures) < maxChartFailures {
			res.failures = append(res.failures, fmt.Sprintf(format, args...))
		}
	}
	enc, err := archive.NewMemberEncoder(0, mtime)
	if err != nil {
		failf("%v", err)
		return res
	}
	sum := sha256.New()
	zw, err := archive.NewGzipWriter(sum, pack.ChartLevel, mtime)
	if err != nil {
		failf("%v", err)
		return res
	}
	err = archive.Walk(ctx, r, archive.ChartLimits(), func(h *tar.Header, body io.Reader) error {
		if !h.ModTime.Equal(mtime) {
			failf("entry %s: mtime %s, want the pack's build timestamp %s", h.Name, h.ModTime.UTC().Format(time.RFC3339), mtime.UTC().Format(time.RFC3339))
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			failf("entry %s: owner %d/%d %q/%q, want 0/0 without names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		e := archive.Entry{Name: h.Name, Mode: h.Mode, Size: h.Size, Dir: h.Typeflag == tar.TypeDir}
		if !validMode(e) {
			failf("entry %s: mode %#o, want 0644 or 0755", h.Name, h.Mode)
			return nil
		}
		if !e.Dir {
			e.Open = func() (io.ReadCloser, error) { return io.NopCloser(body), nil }
		}
		return enc.Segment(ctx, zw, e)
	})
	if err != nil {
		failf("read chart archive: %v", err)
		return res
	}
	if _, err := zw.Write(make([]byte, archive.EndOfArchiveSize)); err != nil {
		failf("%v", err)
	}
	if err := zw.Close(); err != nil {
		failf("%v", err)
	}
	res.sha256 = hex.EncodeToString(sum.Sum(nil))
	return res
}
