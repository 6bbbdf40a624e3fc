// Package verify checks a bale bootstrap pack offline: `bale verify`.
//
// Pack reads the pack once, as a stream, through archive.Walk's hostile
// reader (entry, size and decompression limits; no links, devices or
// escaping names), and checks everything a pack promises: the fixed gzip
// header, uniform tar metadata, sorted entries with explicit directories,
// every entry against the pack index, every OCI blob against its digest,
// the OCI index.json against the docker-save manifest.json, and the
// NAME.sha256 file beside the pack. It reports every failure it finds, each
// naming the entry and the check, rather than stopping at the first, so one
// run tells what is wrong with a pack.
package verify

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/ctxio"
	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
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

// Memory bounds for the JSON documents verify parses. Manifests and indexes
// follow pack.MaxManifestSize; the pack index lists at most MaxEntries
// entries of a few hundred bytes each.
const (
	maxIndexSize    = pack.MaxIndexSize
	maxJSONBlobs    = 256 << 20
	sniffSize       = 512
	maxChecksumSize = 4096
)

// Pack verifies the bootstrap pack at path with archive.DefaultLimits.
// The error is for a pack that cannot be read at all (missing file,
// cancelled context); everything wrong with the pack itself is in the
// report's Failures.
func Pack(ctx context.Context, path string) (*Report, error) {
	return PackLimits(ctx, path, archive.DefaultLimits())
}

// PackLimits is Pack with explicit archive limits.
func PackLimits(ctx context.Context, path string, lim archive.Limits) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify pack: %w", err)
	}
	defer f.Close()
	// A second reader of the same file is what the re-encoded pack is
	// compared with, byte for byte, as both streams advance: no copy of
	// the pack is held in memory.
	f2, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify pack: %w", err)
	}
	defer f2.Close()
	v := &verifier{
		ctx:   ctx,
		rep:   &Report{Path: path, PackFacts: &PackFacts{}, Checks: []string{}, Failures: []Failure{}},
		files: map[string]fileInfo{},
		dirs:  map[string]bool{},
		json:  map[string][]byte{},
		cmp:   &comparer{r: bufio.NewReaderSize(f2, 256<<10), diff: -1, buf: make([]byte, 32<<10)},
	}
	fileHash := sha256.New()
	var head [10]byte
	n, _ := io.ReadFull(f, head[:])
	fileHash.Write(head[:n])
	src := io.TeeReader(f, fileHash)
	walkErr := v.walk(io.MultiReader(bytes.NewReader(head[:n]), src), lim)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify pack %s: %w", path, err)
	}
	// Hash what the walk left unread, so the file digest covers the file
	// even when the archive is broken.
	if _, err := io.Copy(io.Discard, ctxio.Reader(ctx, src)); err != nil {
		return nil, fmt.Errorf("verify pack %s: %w", path, err)
	}
	v.rep.SHA256 = hex.EncodeToString(fileHash.Sum(nil))
	v.ran(CheckArchive, CheckMetadata, CheckOrder, CheckDirs)
	if walkErr != nil {
		v.fail("", CheckArchive, "%v", walkErr)
	}
	v.finishCanonical(walkErr)
	ix := v.checkIndex()
	v.checkGzip(head[:n], ix)
	v.checkMtime(ix)
	if walkErr == nil {
		v.checkEntries(ix)
		v.checkBlobs()
		v.checkLayout(ix)
	}
	v.checkChecksum(path)
	return v.rep, nil
}

// trailingSlack bounds how far the decompressed stream may run past the
// end of the entry being read (its header, PAX records and read-ahead
// included) and past the last entry: a pack ends with exactly the
// end-of-archive marker, so gigabytes of zeros after it are refused after
// this many bytes instead of being read to their end.
const trailingSlack = 2 << 20

// walk decompresses the pack (every gzip member, in order) and walks its
// tar stream, re-encoding each entry as it streams.
func (v *verifier) walk(r io.Reader, lim archive.Limits) error {
	br := bufio.NewReaderSize(r, 64<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		v.canonFail("", "not a gzip stream: %v", err)
		return fmt.Errorf("read gzip header: %w", err)
	}
	zr.Multistream(false)
	v.startCanonical(zr.Header.Extra)
	// The tar stream must not itself look compressed: archive.Walk would
	// decompress it a second time.
	tr := bufio.NewReaderSize(&capReader{r: &memberReader{br: br, zr: zr}, v: v}, 64<<10)
	if magic, _ := tr.Peek(4); len(magic) >= 2 && (magic[0] == 0x1f && magic[1] == 0x8b || bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) || string(magic[:3]) == "BZh") {
		return errors.New("read archive: the decompressed stream is compressed again")
	}
	return archive.Walk(v.ctx, tr, lim, v.entry)
}

// memberReader decompresses a sequence of gzip members, one at a time,
// so that what follows the last one is named for what it is.
type memberReader struct {
	br      *bufio.Reader
	zr      *gzip.Reader
	members int
}

func (m *memberReader) Read(p []byte) (int, error) {
	for {
		n, err := m.zr.Read(p)
		if !errors.Is(err, io.EOF) {
			return n, err
		}
		m.members++
		// The member ended and its checksum matched.
		if _, perr := m.br.Peek(1); errors.Is(perr, io.EOF) {
			return n, io.EOF
		}
		if magic, _ := m.br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
			return n, fmt.Errorf("read archive: trailing data after gzip member %d", m.members)
		}
		if err := m.zr.Reset(m.br); err != nil {
			return n, fmt.Errorf("read gzip member %d header: %w", m.members+1, err)
		}
		m.zr.Multistream(false)
		if n > 0 {
			return n, nil
		}
	}
}

// capReader fails once the decompressed stream runs trailingSlack bytes
// past what the entries read so far account for.
type capReader struct {
	r io.Reader
	n int64
	v *verifier
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.v.limit+c.v.cur+trailingSlack {
		return n, fmt.Errorf("read archive: %w: more than %d bytes of tar stream past the end of the entries (bale writes only the %d-byte end-of-archive marker)", archive.ErrLimit, trailingSlack, archive.EndOfArchiveSize)
	}
	return n, err
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
func (v *verifier) segment(h *tar.Header, body io.Reader, sink io.Writer) (int64, error) {
	if v.enc == nil && !v.canonDone {
		enc, err := archive.NewMemberEncoder(v.levelOr(0), h.ModTime)
		if err != nil {
			v.canonFail(h.Name, "%v", err)
		} else {
			v.enc = enc
		}
	}
	e := archive.Entry{Name: h.Name, Mode: h.Mode, Size: h.Size, Dir: h.Typeflag == tar.TypeDir}
	v.cur = h.Size + blockPad(h.Size)
	defer func() { v.cur = 0 }()
	if v.enc == nil || !validMode(e) {
		if !v.canonDone {
			v.canonFail(h.Name, "mode %#o: bale writes 0644 or 0755", h.Mode)
		}
		n, err := io.Copy(sink, body)
		v.limit += h.Size + blockPad(h.Size) + 512
		return n, err
	}
	counted := &countWriter{}
	var member io.WriteCloser
	if v.params != nil {
		member = v.enc.Members(v.cmp)
	}
	var seg io.Writer = counted
	if member != nil {
		seg = io.MultiWriter(counted, member)
	}
	var n int64
	if !e.Dir {
		body = &countReader{r: io.TeeReader(body, sink), n: &n}
		e.Open = func() (io.ReadCloser, error) { return io.NopCloser(body), nil }
	}
	if err := v.enc.Segment(v.ctx, seg, e); err != nil {
		return n, err
	}
	if member != nil {
		if err := member.Close(); err != nil {
			return n, err
		}
	}
	v.limit += counted.n
	if v.params != nil && v.cmp.diff >= 0 {
		v.canonFail(h.Name, "the pack's bytes differ from bale's encoding of this entry at pack offset %d: not the bytes bale writes for these entries", v.cmp.diff)
	}
	return n, nil
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

func blockPad(n int64) int64 { return (512 - n%512) % 512 }

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
	if v.cmp.diff >= 0 {
		v.canonFail("", "the end-of-archive member differs from bale's at pack offset %d", v.cmp.diff)
		return
	}
	if _, err := v.cmp.r.ReadByte(); !errors.Is(err, io.EOF) {
		v.canonFail("", "data after the end-of-archive member at pack offset %d: bale writes nothing after it", v.cmp.off)
	}
}

// comparer checks what is written to it against the pack file read from
// the start; diff is the offset of the first difference, or -1.
type comparer struct {
	r    *bufio.Reader
	off  int64
	diff int64
	buf  []byte
}

func (c *comparer) Write(p []byte) (int, error) {
	if c.diff >= 0 {
		return len(p), nil
	}
	for rest := p; len(rest) > 0; {
		chunk := rest[:min(len(rest), len(c.buf))]
		n, _ := io.ReadFull(c.r, c.buf[:len(chunk)])
		for i := range n {
			if c.buf[i] != chunk[i] {
				c.diff = c.off + int64(i)
				return len(p), nil
			}
		}
		c.off += int64(n)
		if n < len(chunk) {
			c.diff = c.off
			return len(p), nil
		}
		rest = rest[len(chunk):]
	}
	return len(p), nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type countReader struct {
	r io.Reader
	n *int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// fileInfo is what verify keeps of one file entry.
type fileInfo struct {
	size   int64
	sha256 string
}

// verifier accumulates state across one pack.
type verifier struct {
	ctx   context.Context
	rep   *Report
	files map[string]fileInfo
	dirs  map[string]bool
	// json holds the bodies of the documents checked after the walk: the
	// pack's own JSON files and blobs that look like JSON.
	json      map[string][]byte
	jsonBytes int64
	last      string
	mtime     time.Time
	mtimeSet  bool

	// The canonical re-encoding: the member parameters from the first
	// gzip header (nil once a difference is found or if they are not
	// this bale's), the encoder, and the comparer with the pack's bytes.
	params    *archive.MemberParams
	enc       *archive.MemberEncoder
	cmp       *comparer
	canonDone bool
	// limit is the end of the tar stream the entries read so far account
	// for, and cur the padded size of the entry being read (see
	// capReader).
	limit, cur int64
}

func (v *verifier) ran(checks ...string) { v.rep.Ran(checks...) }

func (v *verifier) fail(entry, check, format string, args ...any) {
	v.rep.Fail(entry, check, fmt.Sprintf(format, args...))
}

// entry checks one tar entry as archive.Walk streams it.
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
		_, err := v.segment(h, noBody{}, io.Discard)
		return err
	}
	keep := isPackJSON(name)
	sum := sha256.New()
	var buf *bytes.Buffer
	br := bufio.NewReaderSize(body, sniffSize)
	if !keep && strings.HasPrefix(name, pack.BlobsDir+"/") && h.Size <= pack.MaxManifestSize {
		// Index and manifest blobs are parsed after the walk; layers are
		// not kept. JSON starts with '{' (after optional space).
		peek, _ := br.Peek(sniffSize)
		t := bytes.TrimLeft(peek, " \t\r\n")
		keep = len(t) > 0 && t[0] == '{'
	}
	limit := int64(pack.MaxManifestSize)
	if name == pack.IndexPath {
		limit = maxIndexSize
	}
	if keep && h.Size <= limit && v.jsonBytes+h.Size <= maxJSONBlobs {
		buf = bytes.NewBuffer(make([]byte, 0, h.Size))
		v.jsonBytes += h.Size
	}
	sinks := []io.Writer{sum}
	if buf != nil {
		sinks = append(sinks, buf)
	}
	var chart *chartCheck
	if isChart(name) {
		chart = v.startChart(name, h.ModTime)
		sinks = append(sinks, chart)
	}
	n, err := v.segment(h, br, io.MultiWriter(sinks...))
	digest := hex.EncodeToString(sum.Sum(nil))
	if chart != nil {
		chart.finish(v, digest)
	}
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("body is %d bytes, header says %d", n, h.Size)
	}
	v.files[name] = fileInfo{size: n, sha256: digest}
	if buf != nil {
		v.json[name] = buf.Bytes()
	} else if keep && isPackJSON(name) {
		v.fail(name, CheckArchive, "%d bytes: too large to check", h.Size)
	}
	return nil
}

// noBody is a directory's empty body.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }

func isPackJSON(name string) bool {
	switch name {
	case pack.IndexPath, pack.OCILayoutPath, pack.OCIIndexPath, pack.DockerManifestPath:
		return true
	}
	return false
}

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
	data, ok := v.json[pack.IndexPath]
	if !ok {
		if _, listed := v.files[pack.IndexPath]; !listed {
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
		got, ok := v.files[e.Path]
		switch {
		case !ok:
			v.fail(e.Path, CheckEntries, "listed in the pack index but missing from the pack")
		case got.size != e.Size:
			v.fail(e.Path, CheckEntries, "size %d, the pack index says %d", got.size, e.Size)
		case got.sha256 != e.SHA256:
			v.fail(e.Path, CheckEntries, "sha256 %s, the pack index says %s", got.sha256, e.SHA256)
		}
	}
	implied := map[string]bool{}
	for _, p := range sortedKeys(v.files) {
		if !listed[p] {
			v.fail(p, CheckEntries, "in the pack but not listed in the pack index")
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			implied[d] = true
		}
	}
	for _, d := range sortedKeys(v.dirs) {
		if !implied[d] {
			v.fail(d, CheckEntries, "directory holds no listed file")
		}
	}
}

// checkBlobs checks every file under images/blobs/sha256 against its name.
func (v *verifier) checkBlobs() {
	v.ran(CheckBlobs)
	for _, p := range sortedKeys(v.files) {
		hexName, ok := strings.CutPrefix(p, pack.BlobsDir+"/")
		if !ok {
			continue
		}
		if !plan.ValidDigest("sha256:" + hexName) {
			v.fail(p, CheckBlobs, "not named by a sha256 digest")
			continue
		}
		if got := v.files[p].sha256; got != hexName {
			v.fail(p, CheckBlobs, "content has sha256 %s, not the digest it is named by", got)
		}
	}
	for d := range v.dirs {
		if strings.HasPrefix(d, pack.BlobsDir+"/") {
			v.fail(d, CheckBlobs, "directory inside the blob store")
		}
	}
}

// blob returns a blob's info by digest, failing the check if it is absent
// or its size differs from what refers to it.
func (v *verifier) blob(from, digest string, size int64) (fileInfo, bool) {
	p := pack.BlobPath(digest)
	if p == "" {
		v.fail(from, CheckOCILayout, "refers to invalid digest %q", digest)
		return fileInfo{}, false
	}
	fi, ok := v.files[p]
	if !ok {
		v.fail(from, CheckOCILayout, "refers to blob %s, which is not in the pack", digest)
		return fileInfo{}, false
	}
	if fi.size != size {
		v.fail(p, CheckBlobs, "%d bytes, %s says %d", fi.size, from, size)
		return fileInfo{}, false
	}
	return fi, true
}

// maxDepth bounds index nesting, so a cycle of indexes cannot loop.
const maxDepth = 4

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
		if _, ok := v.files[pack.OCIIndexPath]; !ok {
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
	// Each top-level descriptor's reachable manifests.
	tops := make([][]image, len(index.Manifests))
	for i, d := range index.Manifests {
		tops[i] = v.walkDescriptor(pack.OCIIndexPath, d, 0)
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

// walkDescriptor checks a descriptor's blob and, for an index or manifest,
// what it references; it returns the image manifests reached.
func (v *verifier) walkDescriptor(from string, d pack.Descriptor, depth int) []image {
	if _, ok := v.blob(from, d.Digest, d.Size); !ok {
		return nil
	}
	p := pack.BlobPath(d.Digest)
	var doc pack.ManifestOrIndex
	if err := v.decode(p, &doc); err != nil {
		return nil
	}
	switch {
	case doc.Manifests != nil:
		if depth >= maxDepth {
			v.fail(p, CheckOCILayout, "indexes nested deeper than %d", maxDepth)
			return nil
		}
		var out []image
		for _, c := range doc.Manifests {
			out = append(out, v.walkDescriptor(p, c, depth+1)...)
		}
		return out
	case doc.Config != nil:
		img := image{config: doc.Config.Digest}
		v.blob(p, doc.Config.Digest, doc.Config.Size)
		for _, l := range doc.Layers {
			v.blob(p, l.Digest, l.Size)
			img.layers = append(img.layers, l.Digest)
		}
		return []image{img}
	default:
		v.fail(p, CheckOCILayout, "neither an image index nor a manifest")
		return nil
	}
}

// decode parses a kept JSON document, failing the layout check if it is
// missing or malformed.
func (v *verifier) decode(p string, out any) error {
	data, ok := v.json[p]
	if !ok {
		err := errors.New("missing or too large to check")
		if _, present := v.files[p]; !present {
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

// checksumRE is a sha256sum line for one file, in text mode.
var checksumRE = regexp.MustCompile(`^([0-9a-f]{64})  ([^\n]+)\n$`)

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
	data, err := io.ReadAll(io.LimitReader(f, maxChecksumSize+1))
	if err != nil {
		v.fail(name, CheckChecksum, "%v", err)
		return
	}
	m := checksumRE.FindSubmatch(data)
	if len(data) > maxChecksumSize || m == nil {
		v.fail(name, CheckChecksum, "not one sha256sum line \"HEX  NAME\\n\"")
		return
	}
	if string(m[2]) != filepath.Base(packPath) {
		v.fail(name, CheckChecksum, "names %q, not %q", m[2], filepath.Base(packPath))
	}
	if string(m[1]) != v.rep.SHA256 {
		v.fail(name, CheckChecksum, "says %s, the pack's sha256 is %s", m[1], v.rep.SHA256)
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

// finish waits for the check and reports it; digest is the sha256 of the
// chart's bytes in the pack.
func (c *chartCheck) finish(v *verifier, digest string) {
	c.pw.Close()
	res := <-c.done
	for _, f := range res.failures {
		v.fail(c.name, CheckCharts, "%s", f)
	}
	if len(res.failures) == 0 && res.sha256 != digest {
		v.fail(c.name, CheckCharts, "not bale's chart archive for these entries: re-encoding them (gzip level %d, build timestamp, sorted, uid/gid 0) gives sha256 %s, the chart is %s", pack.ChartLevel, res.sha256, digest)
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
