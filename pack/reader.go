package pack

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/internal/ctxio"
)

// The pack reader: one hostile read of a pack that every far-side command
// shares (verify, inspect, push; later delta and apply), as archive/zip
// reads a zip: over an io.ReaderAt and its size. Scan reads the pack once,
// through archive's hostile tar reader and gzip member reader, and keeps
// what is small (each entry's name, size, sha256 and place in the pack;
// the pack's JSON documents and every blob that looks like an image index
// or manifest, within fixed budgets); a File's Open then reads one entry
// again from where its gzip member starts, without reading the rest.

// Budgets for what Scan keeps in memory.
const (
	// MaxDocBytes bounds the JSON documents kept, all together: the pack
	// index and layout files, and the index and manifest blobs.
	MaxDocBytes = 256 << 20
	// TrailingSlack bounds how far the tar stream may run past the end
	// of the entries read so far (the next header, PAX records, the
	// end-of-archive marker and a tar tool's record padding included): a
	// pack ends with exactly the end-of-archive marker, so gigabytes of
	// zeros after it are refused after this many bytes instead of being
	// read to their end.
	TrailingSlack = 2 << 20
	// sniffSize is how much of a blob is looked at to tell JSON.
	sniffSize = 512
)

// ScanOptions configure Scan.
type ScanOptions struct {
	// Limits bound the archive; zero fields take archive.DefaultLimits'.
	// A pack is always read as a sequence of gzip members.
	Limits archive.Limits
	// Raw, if set, receives every byte of the pack file, in order, as
	// Scan reads it: the file's own bytes, not the tar stream.
	Raw io.Writer
	// GzipExtra, if set, is called with the first gzip member's extra
	// field before the first entry (not for a pack that is not gzip).
	GzipExtra func(extra []byte)
	// Entry, if set, is called for each entry in archive order, with a
	// copy of its header (Name clean) and its body, valid until Entry
	// returns; Entry need not read all of it. Scan hashes the body
	// whatever Entry reads. An error stops the scan and becomes Err.
	Entry func(h *tar.Header, body io.Reader) error
}

// Reader is a pack as Scan read it.
type Reader struct {
	ra     io.ReaderAt
	size   int64
	sha256 string
	gzip   bool
	files  []*File
	byName map[string]*File
	docs   map[string][]byte
	docN   int64
	err    error
}

// File is one entry of a pack.
type File struct {
	// Name is the entry's clean path.
	Name string
	// Dir is set for a directory entry.
	Dir     bool
	Mode    int64
	ModTime time.Time
	// Size is the body's size in bytes; SHA256 its lowercase hex sha256
	// as Scan read it ("" for a directory).
	Size   int64
	SHA256 string

	r      *Reader
	pos    archive.Position
	member archive.Member // the gzip member holding the entry's first header byte
	// rawEnd is where the entry's members end in the pack file, when its
	// segment fills whole members (bale's layout); 0 otherwise.
	rawEnd int64
}

// OpenFile opens the pack file at path for Scan and returns its size:
// a regular file only, by capread.Open's rule (a FIFO is refused, never
// waited on).
func OpenFile(path string) (*os.File, int64, error) {
	f, err := capread.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Scan reads the pack in r, size bytes, once, as the file's comment says.
// The pack is read as bale writes it: a sequence of gzip members (or an
// uncompressed tar), checked by archive.WalkTar's rules, with at most
// TrailingSlack bytes of tar stream past the end of the entries.
//
// Scan's error is for a pack that could not be read (ctx done, r failing);
// what is wrong with the pack as an archive is the Reader's Err, and the
// Reader then holds what was read before it. SHA256 always covers the
// whole file.
func Scan(ctx context.Context, r io.ReaderAt, size int64, opts ScanOptions) (*Reader, error) {
	pr := &Reader{ra: r, size: size, byName: map[string]*File{}, docs: map[string][]byte{}}
	fileHash := sha256.New()
	var sink io.Writer = fileHash
	if opts.Raw != nil {
		sink = io.MultiWriter(fileHash, opts.Raw)
	}
	src := &readErrs{r: ctxio.Reader(ctx, io.NewSectionReader(r, 0, size))}
	raw := io.TeeReader(src, sink)
	pr.err = pr.walk(ctx, raw, opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read pack: %w", err)
	}
	if src.err != nil {
		return nil, fmt.Errorf("read pack: %w", src.err)
	}
	// Hash what the walk left unread, so the digest covers the file even
	// when the archive is broken.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return nil, fmt.Errorf("read pack: %w", err)
	}
	pr.sha256 = hex.EncodeToString(fileHash.Sum(nil))
	return pr, nil
}

// walk reads the archive from raw, the pack file from its first byte.
func (pr *Reader) walk(ctx context.Context, raw io.Reader, opts ScanOptions) error {
	top := bufio.NewReaderSize(raw, 64<<10)
	magic, _ := top.Peek(6)
	gzipped, err := archive.Sniff(magic)
	if err != nil {
		return err
	}
	var mr *archive.MemberReader
	var stream io.Reader = top
	if gzipped {
		pr.gzip = true
		if mr, err = archive.NewMemberReader(top); err != nil {
			return err
		}
		if opts.GzipExtra != nil {
			opts.GzipExtra(mr.Extra())
		}
		stream = mr
	}
	slack := &slackReader{r: stream, allow: TrailingSlack}
	var prev *File
	// end is where the last entry's segment ends.
	var end int64
	err = archive.WalkTar(ctx, slack, opts.Limits, func(h *tar.Header, pos archive.Position, body io.Reader) error {
		f := &File{r: pr, Name: h.Name, Dir: h.Typeflag == tar.TypeDir, Mode: h.Mode, ModTime: h.ModTime, Size: h.Size, pos: pos}
		end = pos.End(h.Size)
		slack.allow = end + TrailingSlack
		if mr != nil {
			f.member, _ = mr.Locate(pos.Header)
			pr.aligned(prev, f.member, pos.Header)
			mr.Release(end)
		}
		prev = f
		if f.Dir {
			pr.add(f)
			if opts.Entry != nil {
				return opts.Entry(h, body)
			}
			return nil
		}
		if err := pr.file(f, h, body, opts.Entry); err != nil {
			return err
		}
		// Only an entry read whole is listed.
		pr.add(f)
		return nil
	})
	if err == nil && mr != nil && prev != nil {
		// The end-of-archive member starts where the last entry ends.
		m, _ := mr.Locate(end)
		pr.aligned(prev, m, end)
	}
	return err
}

func (pr *Reader) add(f *File) {
	pr.files = append(pr.files, f)
	pr.byName[f.Name] = f
}

// aligned records where prev's members end when the member m, holding the
// stream offset at, starts exactly there and prev's own first member
// started exactly at prev's header: prev's segment then fills whole
// members, which can be copied as they are.
func (pr *Reader) aligned(prev *File, m archive.Member, at int64) {
	if prev != nil && m.Start == at && prev.member.Start == prev.pos.Header && m.Offset > prev.member.Offset {
		prev.rawEnd = m.Offset
	}
}

// file reads one file entry's body: hashed, kept if it is a document, and
// handed to fn.
func (pr *Reader) file(f *File, h *tar.Header, body io.Reader, fn func(*tar.Header, io.Reader) error) error {
	sum := sha256.New()
	doc := pr.startDoc(f.Name, h.Size)
	var w io.Writer = sum
	if doc != nil {
		w = io.MultiWriter(sum, doc)
	}
	counted := &countReader{r: io.TeeReader(body, w)}
	if fn != nil {
		if err := fn(h, counted); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return err
	}
	if counted.n != h.Size {
		return fmt.Errorf("body is %d bytes, header says %d", counted.n, h.Size)
	}
	f.SHA256 = hex.EncodeToString(sum.Sum(nil))
	if doc != nil && doc.finish() {
		pr.docs[f.Name] = doc.buf
	}
	return nil
}

// startDoc decides whether an entry may be kept as a document: the pack
// index (MaxIndexSize), the layout's JSON files, and blobs up to
// MaxManifestSize that start like a JSON object, within MaxDocBytes in
// all.
func (pr *Reader) startDoc(name string, size int64) *docSink {
	var limit int64
	sniff := false
	switch {
	case name == IndexPath:
		limit = MaxIndexSize
	case isLayoutJSON(name):
		limit = MaxManifestSize
	case len(name) > len(BlobsDir)+1 && name[:len(BlobsDir)+1] == BlobsDir+"/":
		limit, sniff = MaxManifestSize, true
	default:
		return nil
	}
	if size > limit || pr.docN+size > MaxDocBytes {
		return nil
	}
	pr.docN += size
	return &docSink{buf: make([]byte, 0, size), sniff: sniff}
}

func isLayoutJSON(name string) bool {
	return name == OCILayoutPath || name == OCIIndexPath || name == DockerManifestPath
}

// docSink collects a document's bytes; a blob that does not start like a
// JSON object is dropped once its first bytes show it.
type docSink struct {
	buf   []byte
	sniff bool
	drop  bool
}

func (d *docSink) Write(p []byte) (int, error) {
	if d.drop {
		return len(p), nil
	}
	d.buf = append(d.buf, p...)
	if d.sniff && len(d.buf) >= sniffSize {
		d.decide()
	}
	return len(p), nil
}

// decide drops a blob whose first non-space byte is not '{'.
func (d *docSink) decide() {
	d.sniff = false
	if t := bytes.TrimLeft(d.buf[:min(len(d.buf), sniffSize)], " \t\r\n"); len(t) == 0 || t[0] != '{' {
		d.drop, d.buf = true, nil
	}
}

// finish reports whether the document is kept.
func (d *docSink) finish() bool {
	if d.sniff {
		d.decide()
	}
	return !d.drop
}

// SHA256 returns the lowercase hex sha256 of the whole pack file.
func (pr *Reader) SHA256() string { return pr.sha256 }

// Size returns the pack file's size.
func (pr *Reader) Size() int64 { return pr.size }

// Gzip reports whether the pack is gzip-compressed.
func (pr *Reader) Gzip() bool { return pr.gzip }

// Err returns what is wrong with the pack as an archive, or nil.
func (pr *Reader) Err() error { return pr.err }

// Files returns the entries read whole, in archive order, directories
// included.
func (pr *Reader) Files() []*File { return pr.files }

// File returns the entry named name.
func (pr *Reader) File(name string) (*File, bool) {
	f, ok := pr.byName[name]
	return f, ok
}

// Doc returns a kept document's bytes: the pack index, the layout's JSON
// files, or an index or manifest blob (by its pack path). ok is false for
// an entry that is missing, was not whole, or was too large to keep.
func (pr *Reader) Doc(name string) (data []byte, ok bool) {
	data, ok = pr.docs[name]
	return data, ok
}

// BlobSize returns the size of the blob with digest d, if the pack holds
// it.
func (pr *Reader) BlobSize(d string) (int64, bool) {
	f, ok := pr.byName[BlobPath(d)]
	if !ok || f.Dir {
		return 0, false
	}
	return f.Size, true
}

// Manifest returns the bytes of the index or manifest blob with digest d,
// if it was kept.
func (pr *Reader) Manifest(d string) ([]byte, bool) { return pr.Doc(BlobPath(d)) }

// Members returns where the gzip members holding exactly this entry's
// segment (its header blocks, body and padding) lie in the pack file, for
// a pack in bale's member layout: those bytes can be copied into another
// pack of the same layout, level and timestamp as they are. ok is false
// when the entry does not fill whole members.
func (f *File) Members() (offset, size int64, ok bool) {
	if f.rawEnd == 0 {
		return 0, 0, false
	}
	return f.member.Offset, f.rawEnd - f.member.Offset, true
}

// Open returns the entry's body, read again from the pack: from the start
// of the gzip member that holds it, decompressing no more than the
// entry's own members. The bytes are checked as they are read: a body
// that is not the one Scan hashed (the file changed since) ends in an
// error, never silently.
func (f *File) Open() (io.ReadCloser, error) {
	if f.Dir {
		return nil, fmt.Errorf("open pack entry %s: a directory", f.Name)
	}
	var body io.Reader
	if f.r.gzip {
		end := f.r.size
		if f.rawEnd > 0 {
			end = f.rawEnd // its own members, and not a byte more
		}
		sec := io.NewSectionReader(f.r.ra, f.member.Offset, end-f.member.Offset)
		zr, err := archive.OpenMembers(sec, f.pos.Body-f.member.Start)
		if err != nil {
			return nil, fmt.Errorf("open pack entry %s: %w", f.Name, err)
		}
		body = zr
	} else {
		body = io.NewSectionReader(f.r.ra, f.pos.Body, f.Size)
	}
	return &checkedBody{f: f, r: io.LimitReader(body, f.Size), h: sha256.New()}, nil
}

// checkedBody hashes an entry's body as it is read and compares it with
// what Scan read when it ends.
type checkedBody struct {
	f   *File
	r   io.Reader
	h   hash.Hash
	n   int64
	err error
}

func (c *checkedBody) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if errors.Is(err, io.EOF) {
		got := hex.EncodeToString(c.h.Sum(nil))
		if c.n != c.f.Size || got != c.f.SHA256 {
			err = fmt.Errorf("pack entry %s: read %d bytes with sha256 %s, the scan read %d bytes with sha256 %s: the pack changed since it was read", c.f.Name, c.n, got, c.f.Size, c.f.SHA256)
		}
	} else if err != nil {
		err = fmt.Errorf("pack entry %s: %w", c.f.Name, err)
	}
	c.err = err
	return n, err
}

func (c *checkedBody) Close() error { return nil }

// slackReader fails once the tar stream runs past allow, the end of the
// entries read so far plus TrailingSlack.
type slackReader struct {
	r     io.Reader
	n     int64
	allow int64
}

func (s *slackReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.n > s.allow {
		return n, fmt.Errorf("read archive: %w: more than %d bytes of tar stream past the end of the entries (bale writes only the %d-byte end-of-archive marker)", archive.ErrLimit, TrailingSlack, archive.EndOfArchiveSize)
	}
	return n, err
}

// readErrs remembers an error of the underlying reader, so Scan can tell
// an I/O failure from a broken archive.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

// countReader counts what is read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
