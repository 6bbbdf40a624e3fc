package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// ErrLimit is wrapped by errors about archives past their Limits.
var ErrLimit = errors.New("archive limit exceeded")

// ErrTruncated is wrapped by errors about archives that end early: a cut
// gzip or tar stream, or a tar stream without its end-of-archive marker.
var ErrTruncated = errors.New("truncated archive")

// Limits bounds what Walk accepts. A zero field takes its value from
// DefaultLimits; a negative one is an error.
type Limits struct {
	// MaxEntries bounds both the number of headers and the number of
	// distinct paths, counting directories that entries imply without
	// listing: that is what an extraction would create, and it bounds the
	// memory Walk uses to detect duplicates.
	MaxEntries int
	// MaxEntrySize bounds one file's size as declared in its header; a
	// larger declaration is refused before any of its body is read.
	MaxEntrySize int64
	// MaxTotalSize bounds the uncompressed tar stream, headers and padding
	// included, so a small gzip member that inflates without end (a gzip
	// bomb) is cut off there. Declared sizes are also summed against it, so
	// an archive that claims too much is refused at the header.
	MaxTotalSize int64
	// GzipMembers accepts a gzip stream of several members, as a bale pack
	// is written (see WriteMembers). Without it, bytes after the first
	// member are an error: a chart, a kit or a bundle is one member.
	GzipMembers bool
}

// DefaultLimits returns limits for bale's own artifacts (bootstrap packs,
// bundles): room for multi-gigabyte image layers, not for unbounded input.
func DefaultLimits() Limits {
	return Limits{
		MaxEntries:   10_000,
		MaxEntrySize: 8 << 30,
		MaxTotalSize: 64 << 30,
	}
}

// ChartLimits returns limits for Helm chart archives. The sizes are Helm's
// own loader defaults (5 MiB a file, 100 MiB decompressed), so bale refuses
// no chart Helm would load and accepts none Helm would refuse for size.
func ChartLimits() Limits {
	return Limits{
		MaxEntries:   10_000,
		MaxEntrySize: 5 << 20,
		MaxTotalSize: 100 << 20,
	}
}

// resolve fills zero fields from DefaultLimits and rejects negative ones.
func (l Limits) resolve() (Limits, error) {
	if l.MaxEntries < 0 || l.MaxEntrySize < 0 || l.MaxTotalSize < 0 {
		return l, fmt.Errorf("invalid archive limits %+v: negative", l)
	}
	def := DefaultLimits()
	if l.MaxEntries == 0 {
		l.MaxEntries = def.MaxEntries
	}
	if l.MaxEntrySize == 0 {
		l.MaxEntrySize = def.MaxEntrySize
	}
	if l.MaxTotalSize == 0 {
		l.MaxTotalSize = def.MaxTotalSize
	}
	// Cap sizes far beyond any disk so offset arithmetic cannot overflow.
	l.MaxEntrySize = min(l.MaxEntrySize, maxLimit)
	l.MaxTotalSize = min(l.MaxTotalSize, maxLimit)
	return l, nil
}

// maxLimit caps size limits (4 EiB).
const maxLimit = 1 << 62

// Tar stream layout, in bytes.
const (
	blockSize = 512
	endMarker = 2 * blockSize
)

// Walk reads a tar stream from r, gzip-compressed or not (detected from its
// first bytes), and calls fn for each regular file and directory in archive
// order. Walk treats r as hostile and fails, naming the entry, on anything
// bale would not write or could not extract safely:
//
//   - names CleanName refuses (absolute, "..", backslash, NUL, too long);
//   - duplicate names after cleaning, and a path that is both a file and a
//     parent directory;
//   - link entries (symbolic or hard), devices, FIFOs, sparse files, global
//     PAX headers and any other type but regular file and directory;
//   - more than lim.MaxEntries entries, a file larger than lim.MaxEntrySize,
//     and declared or decompressed totals past lim.MaxTotalSize;
//   - a truncated gzip or tar stream (ErrTruncated), including one that ends
//     without the two-block end-of-archive marker;
//   - non-zero bytes after the end-of-archive marker, and any bytes after the
//     gzip member;
//   - a gzip checksum mismatch, and zstd, xz or bzip2 input.
//
// fn receives a copy of the header whose Name is the clean name (no trailing
// slash for directories), and the body, valid only until fn returns; it need
// not read all of it. A directory entry naming the root ("./") is skipped.
// Because the gzip checksum and the end of the stream are only checked after
// the last entry, fn sees data before the archive as a whole is known to be
// intact: whatever fn stores must be discarded if Walk returns an error.
//
// An error returned by fn stops the walk and is returned wrapped with the
// entry name. Walk checks ctx between entries and during body reads.
func Walk(ctx context.Context, r io.Reader, lim Limits, fn func(h *tar.Header, body io.Reader) error) error {
	lim, err := lim.resolve()
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	// Peek errors just mean a short input; tar reports it below.
	magic, _ := br.Peek(6)
	var zr *gzip.Reader
	var stream io.Reader = br
	gzipped, err := Sniff(magic)
	if err != nil {
		return err
	}
	if gzipped {
		zr, err = gzip.NewReader(br)
		if err != nil {
			return streamErr("read gzip header", err)
		}
		// One member unless asked: a second would let bytes appended after
		// a signed archive join the tar stream. A pack is many; bytes
		// after its end-of-archive marker must still be zeros, and only
		// within the limits.
		zr.Multistream(lim.GzipMembers)
		stream = zr
	}
	err = walkTar(ctx, stream, lim, func(h *tar.Header, _ Position, body io.Reader) error { return fn(h, body) })
	if err != nil {
		return err
	}
	if zr != nil {
		// Reaching the member's end verified its checksum; anything after
		// it is not part of the archive.
		if _, err := br.ReadByte(); err == nil {
			return errors.New("read archive: trailing data after gzip stream")
		} else if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read archive: %w", err)
		}
	}
	return nil
}

// Sniff tells from an archive's first bytes (six suffice) whether it is
// gzip-compressed, and refuses the compressions bale does not read (zstd,
// xz, bzip2); anything else is taken for an uncompressed tar stream.
func Sniff(magic []byte) (gzipped bool, err error) {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return true, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return false, errors.New("read archive: zstd compression is not supported")
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return false, errors.New("read archive: xz compression is not supported")
	case bytes.HasPrefix(magic, []byte("BZh")):
		return false, errors.New("read archive: bzip2 compression is not supported")
	}
	return false, nil
}

// Position is where an entry lies in an uncompressed tar stream.
type Position struct {
	// Header is the offset of the entry's first header block (its PAX or
	// GNU long-name header's, when it has one).
	Header int64
	// Body is the offset of the entry's first body byte: where its
	// header blocks end.
	Body int64
}

// End returns the offset just past the entry's body and padding, for an
// entry of size bytes: where the next entry's header, or the
// end-of-archive marker, starts.
func (p Position) End(size int64) int64 {
	return p.Body + (size+blockSize-1)/blockSize*blockSize
}

// WalkTar is Walk over a tar stream that is not compressed (a caller that
// decompresses the stream itself, as a pack's member reader does): it
// never looks for compression, and fn also receives the entry's Position
// in the stream, so the caller can find the entry again. Every rule of
// Walk holds, and r must end with the end-of-archive marker and nothing
// but zeros after it.
func WalkTar(ctx context.Context, r io.Reader, lim Limits, fn func(h *tar.Header, pos Position, body io.Reader) error) error {
	lim, err := lim.resolve()
	if err != nil {
		return err
	}
	return walkTar(ctx, r, lim, fn)
}

// walkTar walks the tar stream r with resolved limits.
func walkTar(ctx context.Context, r io.Reader, lim Limits, fn func(h *tar.Header, pos Position, body io.Reader) error) error {
	cr := &countReader{r: r, max: lim.MaxTotalSize}
	w := &walker{
		lim:    lim,
		seen:   make(map[string]bool),
		listed: make(map[string]bool),
	}
	tr := tar.NewReader(cr)
	// end is the stream offset just past the last entry's padded body.
	var end int64
	last := ""
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return streamErr("read tar header"+after(last), err)
		}
		name, skip, err := w.check(hdr)
		if err != nil {
			return fmt.Errorf("read tar entry %q: %w", hdr.Name, err)
		}
		last = name
		// archive/tar reads exactly the header blocks: what it has read
		// is where the body starts.
		pos := Position{Header: end, Body: cr.n}
		end = cr.n
		if hdr.Typeflag == tar.TypeReg {
			end = pos.End(hdr.Size)
		}
		if skip {
			continue
		}
		h := *hdr
		h.Name = name
		var body io.Reader = noBody{}
		if hdr.Typeflag == tar.TypeReg {
			body = &bodyReader{ctx: ctx, r: tr}
		}
		if err := fn(&h, pos, body); err != nil {
			return fmt.Errorf("walk tar entry %q: %w", name, err)
		}
	}
	// archive/tar also stops, without error, at the end of input or after
	// a single zero block; only the full marker proves nothing was cut.
	if cr.n-end != endMarker {
		return fmt.Errorf("read archive%s: %w: no end-of-archive marker", after(last), ErrTruncated)
	}
	return drainZeros(cr)
}

// drainZeros reads r to its end, accepting only zero bytes: tar writers pad
// archives to a record size with zeros, and anything else after the end
// marker is data some other reader might see.
func drainZeros(r io.Reader) error {
	buf := make([]byte, copyBufSize)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return errors.New("read archive: non-zero data after end-of-archive marker")
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return streamErr("read archive end", err)
		}
	}
}

// after describes a stream position for errors: after the named entry, or
// nothing before the first.
func after(last string) string {
	if last == "" {
		return ""
	}
	return fmt.Sprintf(" after %q", last)
}

// streamErr wraps an error from the decompressor or tar reader, marking a
// premature end as ErrTruncated.
func streamErr(op string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w: %w", op, ErrTruncated, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// walker holds what Walk has seen so far.
type walker struct {
	lim     Limits
	headers int
	total   int64
	// seen maps every path listed or implied so far to whether it is a
	// directory.
	seen map[string]bool
	// listed holds paths that had their own entry, to tell a duplicate
	// from a directory listed after a child implied it.
	listed map[string]bool
}

// check validates one header and records its path. It returns the clean
// name, and skip for a root directory entry.
func (w *walker) check(hdr *tar.Header) (name string, skip bool, err error) {
	w.headers++
	if w.headers > w.lim.MaxEntries {
		return "", false, fmt.Errorf("%w: more than %d entries", ErrLimit, w.lim.MaxEntries)
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		if hdr.Size != 0 {
			return "", false, fmt.Errorf("%w: directory with size %d", ErrUnsafeEntry, hdr.Size)
		}
	case tar.TypeLink, tar.TypeSymlink:
		return "", false, fmt.Errorf("%w: link entries are not allowed", ErrUnsafeEntry)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return "", false, fmt.Errorf("%w: device and FIFO entries are not allowed", ErrUnsafeEntry)
	case tar.TypeGNUSparse:
		return "", false, fmt.Errorf("%w: sparse entries are not allowed", ErrUnsafeEntry)
	case tar.TypeXGlobalHeader:
		// Go ignores global records but GNU tar applies them to later
		// entries; refusing them avoids two readers seeing two archives.
		return "", false, fmt.Errorf("%w: global PAX headers are not allowed", ErrUnsafeEntry)
	default:
		return "", false, fmt.Errorf("%w: entry type %q is not allowed", ErrUnsafeEntry, hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "", false, fmt.Errorf("%w: sparse entries are not allowed", ErrUnsafeEntry)
		}
	}
	if hdr.Typeflag == tar.TypeDir && isRoot(hdr.Name) {
		return ".", true, nil
	}
	name, err = CleanName(hdr.Name)
	if err != nil {
		return "", false, err
	}
	if hdr.Size > w.lim.MaxEntrySize {
		return "", false, fmt.Errorf("%w: size %d exceeds the %d-byte entry limit", ErrLimit, hdr.Size, w.lim.MaxEntrySize)
	}
	// Compared before adding, so huge sizes cannot overflow the sum.
	if hdr.Size > w.lim.MaxTotalSize-w.total {
		return "", false, fmt.Errorf("%w: sizes total more than the %d-byte limit", ErrLimit, w.lim.MaxTotalSize)
	}
	w.total += hdr.Size
	if err := w.record(name, hdr.Typeflag == tar.TypeDir); err != nil {
		return "", false, err
	}
	return name, false, nil
}

// record adds a clean path and its implied parents to w.seen.
func (w *walker) record(name string, dir bool) error {
	if w.listed[name] {
		return fmt.Errorf("%w: duplicate name", ErrUnsafeEntry)
	}
	if wasDir, ok := w.seen[name]; ok && !(wasDir && dir) {
		// Implied as a parent of an earlier entry, now a file.
		return fmt.Errorf("%w: both a file and a directory", ErrUnsafeEntry)
	}
	var conflict string
	parentDirs(name, func(p string) bool {
		if d, ok := w.seen[p]; ok {
			if !d {
				conflict = p
			}
			// Its ancestors were recorded with it.
			return false
		}
		w.seen[p] = true
		return true
	})
	if conflict != "" {
		return fmt.Errorf("%w: parent %q is a file", ErrUnsafeEntry, conflict)
	}
	w.seen[name] = dir
	w.listed[name] = true
	if len(w.seen) > w.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d paths, counting implied directories", ErrLimit, w.lim.MaxEntries)
	}
	return nil
}

// isRoot reports whether a directory name denotes the archive root, as in
// "./", which `tar -C dir .` writes first.
func isRoot(name string) bool {
	if name == "" || name[0] == '/' {
		return false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg != "" && seg != "." {
			return false
		}
	}
	return true
}

// countReader counts bytes read and fails once more than max have been read.
type countReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, c.overErr()
	}
	// Read at most one byte past the limit: enough to know it was passed.
	if rem := c.max - c.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, c.overErr()
	}
	return n, err
}

func (c *countReader) overErr() error {
	return fmt.Errorf("%w: decompressed stream exceeds %d bytes", ErrLimit, c.max)
}

// bodyReader is the body Walk hands to fn: it honours ctx and marks a cut
// body as ErrTruncated. Walk names the entry when fn returns the error.
type bodyReader struct {
	ctx context.Context
	r   io.Reader
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = streamErr("read body", err)
	}
	return n, err
}

// noBody is the empty body of a directory.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
