package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/bale-build/bale/internal/ctxio"
)

// MemberLayout names the gzip member layout WriteMembers writes. It is
// recorded in every member's gzip header (see MemberParams) and is part of
// every cached member's key: a change to the layout must change it.
const MemberLayout = "bale-members/2"

// memberExtraID is the RFC 1952 extra subfield id ("BL") that carries
// MemberParams' text.
var memberExtraID = [2]byte{'B', 'L'}

// MemberParams is what a member's gzip header records: how every member of
// the archive was compressed. `bale verify` reads it from the first member
// to re-encode the archive.
type MemberParams struct {
	Layout     string // MemberLayout
	Level      int    // gzip level, 0..9
	Compressor string // Compressor
}

// String renders p as the extra subfield's text:
// "bale-members/2 level=6 github.com/klauspost/compress@v1.20.3".
func (p MemberParams) String() string {
	return p.Layout + " level=" + strconv.Itoa(p.Level) + " " + p.Compressor
}

// memberExtra returns the gzip extra field of every member written at level.
func memberExtra(level int) []byte {
	text := MemberParams{Layout: MemberLayout, Level: level, Compressor: Compressor}.String()
	b := make([]byte, 0, 4+len(text))
	b = append(b, memberExtraID[0], memberExtraID[1], byte(len(text)), byte(len(text)>>8))
	return append(b, text...)
}

// ParseMemberExtra parses a member's gzip extra field as memberExtra writes
// it: exactly one "BL" subfield. It does not check the values; compare them
// with what this build of bale writes.
func ParseMemberExtra(extra []byte) (MemberParams, error) {
	if len(extra) < 4 || extra[0] != memberExtraID[0] || extra[1] != memberExtraID[1] {
		return MemberParams{}, errors.New("gzip extra field: no \"BL\" subfield")
	}
	n := int(extra[2]) | int(extra[3])<<8
	if len(extra) != 4+n {
		return MemberParams{}, fmt.Errorf("gzip extra field: %d bytes, the \"BL\" subfield says %d", len(extra)-4, n)
	}
	f := strings.Fields(string(extra[4:]))
	if len(f) != 3 || !strings.HasPrefix(f[1], "level=") {
		return MemberParams{}, fmt.Errorf("gzip extra field %q: want \"LAYOUT level=N COMPRESSOR\"", extra[4:])
	}
	level, err := strconv.Atoi(strings.TrimPrefix(f[1], "level="))
	if err != nil || level < 0 || level > 9 {
		return MemberParams{}, fmt.Errorf("gzip extra field %q: level: want 0 to 9", extra[4:])
	}
	return MemberParams{Layout: f[0], Level: level, Compressor: f[2]}, nil
}

// newMemberWriter returns a gzip writer for members at level, or resets zw
// to write the next one. Every member gets the same header: mtime, OS 255,
// and the extra field naming the layout, level and compressor.
func newMemberWriter(zw *gzip.Writer, w io.Writer, level int, mtime time.Time) (*gzip.Writer, error) {
	if zw == nil {
		var err error
		if zw, err = NewGzipWriter(w, level, mtime); err != nil {
			return nil, err
		}
	} else {
		zw.Reset(w)
	}
	zw.Header = gzip.Header{ModTime: mtime, OS: gzipOSUnknown, Extra: memberExtra(level)}
	return zw, nil
}

// MemberEncoder writes gzip members one at a time with the header and
// level WriteMembers uses. `bale verify` re-encodes a pack with it; its
// output for a member does not depend on the members before it.
type MemberEncoder struct {
	level int
	mtime time.Time
	zw    *gzip.Writer
	buf   []byte
}

// NewMemberEncoder returns an encoder for members at level with mtime.
func NewMemberEncoder(level int, mtime time.Time) (*MemberEncoder, error) {
	mtime, err := checkMtime(mtime)
	if err != nil {
		return nil, err
	}
	if level < 0 || level > 9 {
		return nil, fmt.Errorf("member encoder: level %d: want 0 to 9", level)
	}
	return &MemberEncoder{level: level, mtime: mtime, buf: make([]byte, copyBufSize)}, nil
}

// Segment writes e's uncompressed tar segment to w: its header block(s),
// body and padding, as WriteTar writes it. e must be valid on its own (see
// WriteTar's rules); parents are not added.
func (m *MemberEncoder) Segment(ctx context.Context, w io.Writer, e Entry) error {
	if err := checkEntry(e); err != nil {
		return err
	}
	if e.Dir {
		e.Mode = dirMode
	} else if e.Mode == 0 {
		e.Mode = fileMode
	}
	return writeSegment(ctx, w, &e, m.mtime, m.buf)
}

// Members returns a writer that compresses what is written to it into
// members on w: one member per MemberChunk bytes, the last one holding the
// rest (no member at all if nothing is written). Close writes that last
// member. WriteMembers splits an entry's segment the same way, so a
// segment written to Members comes out as the bytes WriteMembers writes
// for the entry.
func (m *MemberEncoder) Members(w io.Writer) io.WriteCloser {
	return &chunkWriter{chunk: make([]byte, 0, MemberChunk), emit: func(chunk []byte) error {
		return m.chunkMember(w, chunk)
	}}
}

// chunkMember writes chunk to w as one member. The compressor sees the
// chunk in a single Write, here and on WriteMembers' workers, so the two
// agree whatever the compressor does with write boundaries.
func (m *MemberEncoder) chunkMember(w io.Writer, chunk []byte) error {
	return m.member(w, func(zw io.Writer) error {
		_, err := zw.Write(chunk)
		return err
	})
}

// chunkWriter cuts what is written to it into MemberChunk-byte chunks and
// hands each to emit; Close emits the remainder. With fresh set, emit owns
// each chunk it is given and the writer goes on in the buffer fresh
// returns; without it, the writer reuses its buffer.
type chunkWriter struct {
	chunk []byte
	emit  func([]byte) error
	fresh func() []byte
	err   error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), MemberChunk-len(c.chunk))
		c.chunk = append(c.chunk, p[:k]...)
		p = p[k:]
		if len(c.chunk) == MemberChunk {
			if c.err = c.flush(); c.err != nil {
				return n - len(p), c.err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if err := c.emit(c.chunk); err != nil {
		return err
	}
	if c.fresh != nil {
		c.chunk = c.fresh()
	} else {
		c.chunk = c.chunk[:0]
	}
	return nil
}

// Close emits what is left, if anything.
func (c *chunkWriter) Close() error {
	if c.err != nil || len(c.chunk) == 0 {
		return c.err
	}
	c.err = c.flush()
	return c.err
}

// End writes to w the final member: the end-of-archive marker.
func (m *MemberEncoder) End(w io.Writer) error {
	return m.member(w, func(zw io.Writer) error {
		_, err := zw.Write(make([]byte, EndOfArchiveSize))
		return err
	})
}

func (m *MemberEncoder) member(w io.Writer, body func(io.Writer) error) error {
	zw, err := newMemberWriter(m.zw, w, m.level, m.mtime)
	if err != nil {
		return err
	}
	m.zw = zw
	if err := body(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write gzip member: %w", err)
	}
	return nil
}

// MemberChunk is the most bytes of an entry's tar segment (header blocks,
// body and padding) one member holds: a larger segment is cut into members
// of MemberChunk bytes, the last holding the rest. Chunks are compressed
// independently, so one large entry keeps every core busy and no more than
// a few chunks are ever in memory.
const MemberChunk = 1 << 20

// cacheMin is the smallest entry whose members are cached: smaller ones
// cost less to compress than a cache lookup.
const cacheMin = 1 << 20

// cacheRatio bounds, in tenths, how large an entry's members may be
// relative to its segment for them to be cached. Members that barely
// shrink (already compressed layers) are compressed again faster than
// they are written to and read back from disk.
const cacheRatio = 9

// MemberCache stores compressed members between builds, the members of one
// entry together under one key. Keys are MemberKey's lowercase hex
// strings; a cache must return for a key exactly the bytes committed under
// it.
type MemberCache interface {
	// Get opens the members stored under key; ok is false on a miss.
	Get(ctx context.Context, key string) (rc io.ReadCloser, ok bool, err error)
	// Create starts storing members under key.
	Create(ctx context.Context, key string) (MemberWriter, error)
}

// MemberWriter receives an entry's members, in order, for a MemberCache.
type MemberWriter interface {
	io.Writer
	// Commit stores what was written under the writer's key.
	Commit() error
	// Abort drops what was written.
	Abort()
}

// MembersOptions configures WriteMembers.
type MembersOptions struct {
	// Level is the gzip level, 0..9.
	Level int
	// Workers is how many chunks are compressed at once; 0 means
	// GOMAXPROCS. The members are written in order whatever it is.
	Workers int
	// Progress, if set, is called on the caller's goroutine after each
	// member (or an entry's cached members) is written, with how many
	// bytes of tar segment it held: for progress reports.
	Progress func(segmentBytes int64)
	// Cache, if set, holds the members of entries of 1 MiB or more that
	// have a Digest and whose members are at most 90% of their segment,
	// so a rebuild copies them instead of compressing. Storing in the
	// cache is best effort: a failure to store costs a later rebuild
	// time, never this one.
	Cache MemberCache
}

// MemberKey returns the cache key of e's members: a hash of everything that
// decides their bytes (layout, chunk size, compressor, level, mtime, name,
// type, mode, size and content digest). ok is false for an entry without a
// Digest, whose content the key could not name.
func MemberKey(e Entry, level int, mtime time.Time) (key string, ok bool) {
	if e.Digest == "" || e.Dir {
		return "", false
	}
	mode := e.Mode
	if mode == 0 {
		mode = fileMode
	}
	data, err := json.Marshal(struct {
		Kind, Layout, Compressor string
		Chunk, Level             int
		Mtime                    int64
		Name                     string
		Mode, Size               int64
		Digest                   string
	}{"bale gzip member", MemberLayout, Compressor, MemberChunk, level, mtime.Truncate(time.Second).Unix(), e.Name, mode, e.Size, e.Digest})
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), true
}

// piece is one item of the archive, in order: a chunk of an entry's
// segment to compress, or an entry's members from the cache.
type piece struct {
	e *Entry
	// chunk is the uncompressed chunk, n bytes long; done receives its
	// compressed member.
	chunk []byte
	n     int64
	done  chan compressed
	// first and last mark an entry's first and last chunk; key is set on
	// the first chunk of an entry whose members may be cached.
	first, last bool
	key         string
	// cached holds the entry's members from the cache instead.
	cached io.ReadCloser
}

type compressed struct {
	buf *bytes.Buffer
	err error
}

// WriteMembers writes entries to w as WriteTar would, but as a sequence of
// gzip members: each entry's tar segment (its header block(s), body and
// padding) cut into members of MemberChunk bytes, in archive order, then
// one member holding the end-of-archive marker. Concatenated gzip members
// are one gzip stream to every reader (RFC 1952), and tar headers hold no
// offsets, so each member's bytes depend only on its own chunk, the level
// and mtime: a rebuild reuses the members of every unchanged entry. Every
// member has the same gzip header: mtime, OS byte 255 and an extra field
// "BL" holding MemberParams' text.
//
// One goroutine reads the entries in order, opt.Workers compress chunks,
// and the caller's goroutine writes the members in order; a few chunks at
// most are in memory at once.
func WriteMembers(ctx context.Context, w io.Writer, entries []Entry, mtime time.Time, opt MembersOptions) error {
	mtime, err := checkMtime(mtime)
	if err != nil {
		return err
	}
	if opt.Level < 0 || opt.Level > 9 {
		return fmt.Errorf("write members: level %d: want 0 to 9", opt.Level)
	}
	all, err := withParents(entries)
	if err != nil {
		return err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Chunks and compressed members are recycled: a fresh megabyte per
	// chunk costs more in clearing memory than compressing it does.
	pool := &sync.Pool{New: func() any { b := make([]byte, 0, MemberChunk); return &b }}
	outPool := &sync.Pool{New: func() any { return new(bytes.Buffer) }}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	jobs := make(chan *piece)
	order := make(chan *piece, 2*workers)
	readErr := make(chan error, 1)
	var tee *cacheTee
	defer func() {
		cancel()
		wg.Wait()
		// Every goroutine has stopped: close the cache readers left.
		for p := range order {
			if p.cached != nil {
				p.cached.Close()
			}
		}
		if tee != nil {
			tee.abort()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(order)
		defer close(jobs)
		readErr <- readPieces(ctx, all, mtime, opt, pool, order, jobs)
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := &MemberEncoder{level: opt.Level, mtime: mtime}
			for p := range jobs {
				b := outPool.Get().(*bytes.Buffer)
				b.Reset()
				b.Grow(len(p.chunk) + len(p.chunk)/64 + 256)
				err := enc.chunkMember(b, p.chunk)
				chunk := p.chunk[:0]
				p.chunk = nil
				pool.Put(&chunk)
				p.done <- compressed{buf: b, err: err}
			}
		}()
	}
	enc := &MemberEncoder{level: opt.Level, mtime: mtime, buf: make([]byte, copyBufSize)}
	for p := range order {
		if p.cached != nil {
			_, err := io.CopyBuffer(w, ctxio.Reader(ctx, p.cached), enc.buf)
			if cerr := p.cached.Close(); err == nil {
				err = cerr
			}
			p.cached = nil
			if err != nil {
				return fmt.Errorf("write cached members of %s: %w", p.e.Name, err)
			}
			if opt.Progress != nil {
				opt.Progress(SegmentSize(p.e.Size))
			}
			continue
		}
		var c compressed
		select {
		case c = <-p.done:
		case <-ctx.Done():
			return fmt.Errorf("write member of %s: %w", p.e.Name, ctx.Err())
		}
		if c.err != nil {
			return fmt.Errorf("write member of %s: %w", p.e.Name, c.err)
		}
		if p.first && p.key != "" {
			if mw, err := opt.Cache.Create(ctx, p.key); err == nil {
				tee = &cacheTee{mw: mw}
			}
		}
		if _, err := w.Write(c.buf.Bytes()); err != nil {
			return fmt.Errorf("write member of %s: %w", p.e.Name, err)
		}
		if tee != nil {
			tee.add(c.buf.Bytes(), p.n)
			if p.last {
				tee.finish()
				tee = nil
			}
		}
		outPool.Put(c.buf)
		if opt.Progress != nil {
			opt.Progress(p.n)
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write members: %w", err)
	}
	if err := enc.End(w); err != nil {
		return fmt.Errorf("write end-of-archive member: %w", err)
	}
	return nil
}

// SegmentSize is the size of the tar segment of a file of size bytes with
// a USTAR header: the header block, the body and its padding. (A PAX
// header adds blocks; progress reports need not count them.)
func SegmentSize(size int64) int64 { return 512 + (size+511)/512*512 }

// cacheTee copies an entry's members to the cache while they stay under
// cacheRatio tenths of the segment, and drops them once they do not.
type cacheTee struct {
	mw       MemberWriter
	raw, out int64
	done     bool
}

func (t *cacheTee) add(member []byte, raw int64) {
	if t.done {
		return
	}
	t.raw += raw
	t.out += int64(len(member))
	if _, err := t.mw.Write(member); err != nil || t.out*10 > t.raw*cacheRatio {
		t.abort()
	}
}

func (t *cacheTee) finish() {
	if !t.done {
		t.done = true
		_ = t.mw.Commit() // best effort: a failure is a miss next time
	}
}

func (t *cacheTee) abort() {
	if !t.done {
		t.done = true
		t.mw.Abort()
	}
}

// readPieces reads every entry in order: an entry with cached members
// becomes one piece; any other is cut into chunks, each sent both to order
// (to be written in turn) and to jobs (to be compressed).
func readPieces(ctx context.Context, all []Entry, mtime time.Time, opt MembersOptions, pool *sync.Pool, order, jobs chan<- *piece) error {
	buf := make([]byte, copyBufSize)
	send := func(p *piece) error {
		// Decided before p is handed over: the writer may take it, and
		// clear p.cached, before this goroutine looks again.
		cached := p.cached != nil
		select {
		case order <- p:
		case <-ctx.Done():
			if cached {
				p.cached.Close()
			}
			return fmt.Errorf("write members: %w", ctx.Err())
		}
		if cached {
			return nil
		}
		select {
		case jobs <- p:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("write members: %w", ctx.Err())
		}
	}
	fresh := func() []byte { return (*pool.Get().(*[]byte))[:0] }
	for i := range all {
		e := &all[i]
		key := ""
		if opt.Cache != nil && e.Size >= cacheMin {
			if k, ok := MemberKey(*e, opt.Level, mtime); ok {
				rc, hit, err := opt.Cache.Get(ctx, k)
				if err != nil {
					return fmt.Errorf("cached members of %s: %w", e.Name, err)
				}
				if hit {
					if err := send(&piece{e: e, cached: rc}); err != nil {
						return err
					}
					continue
				}
				key = k
			}
		}
		// Each chunk is held back until the next one is cut (or the
		// segment ends), so the entry's last chunk is marked as such.
		var held *piece
		cw := &chunkWriter{chunk: fresh(), fresh: fresh, emit: func(chunk []byte) error {
			p := &piece{e: e, chunk: chunk, n: int64(len(chunk)), done: make(chan compressed, 1)}
			if held == nil {
				p.first, p.key = true, key
			} else if err := send(held); err != nil {
				return err
			}
			held = p
			return nil
		}}
		if err := writeSegment(ctx, cw, e, mtime, buf); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
		left := cw.chunk[:0]
		pool.Put(&left)
		if held == nil {
			return fmt.Errorf("write members of %s: empty tar segment", e.Name)
		}
		held.last = true
		if err := send(held); err != nil {
			return err
		}
	}
	return nil
}
