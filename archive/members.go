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
const MemberLayout = "bale-members/1"

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
// "bale-members/1 level=6 github.com/klauspost/compress@v1.20.3".
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

// Member starts one member on w: write its uncompressed content (a
// Segment, or the end-of-archive marker) to the result and close it.
func (m *MemberEncoder) Member(w io.Writer) (io.WriteCloser, error) {
	zw, err := newMemberWriter(m.zw, w, m.level, m.mtime)
	if err != nil {
		return nil, err
	}
	m.zw = zw
	return zw, nil
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

// MemberCache stores compressed members between builds. Keys are
// MemberKey's lowercase hex strings; a cache must return for a key exactly
// the bytes it was given for it.
type MemberCache interface {
	// Get opens the member stored under key; ok is false on a miss.
	Get(ctx context.Context, key string) (rc io.ReadCloser, ok bool, err error)
	// Put stores under key the member that write writes, then opens it.
	Put(ctx context.Context, key string, write func(io.Writer) error) (io.ReadCloser, error)
}

// MembersOptions configures WriteMembers.
type MembersOptions struct {
	// Level is the gzip level, 0..9.
	Level int
	// Workers is how many members are compressed at once; 0 means
	// GOMAXPROCS. The members are written in order whatever it is.
	Workers int
	// Cache, if set, holds the members of entries of 1 MiB or more that
	// have a Digest, so a rebuild copies them instead of compressing.
	// Smaller members are compressed every time: that costs less than a
	// cache lookup.
	Cache MemberCache
}

// memberBufMax bounds a member compressed into memory: larger entries go
// through the cache or are compressed straight into the output.
const memberBufMax = 1 << 20

// MemberKey returns the cache key of e's member: a hash of everything that
// decides its bytes (layout, compressor, level, mtime, name, type, mode,
// size and content digest). ok is false for an entry without a Digest,
// whose content the key could not name.
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
		Level                    int
		Mtime                    int64
		Name                     string
		Mode, Size               int64
		Digest                   string
	}{"bale gzip member", MemberLayout, Compressor, level, mtime.Truncate(time.Second).Unix(), e.Name, mode, e.Size, e.Digest})
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), true
}

// memberResult is one member, ready to be written.
type memberResult struct {
	buf    *bytes.Buffer // compressed in memory
	rc     io.ReadCloser // from the cache
	inline bool          // to compress straight into the output
	err    error
}

type memberJob struct {
	e    *Entry
	done chan memberResult
}

// WriteMembers writes entries to w as WriteTar would, but as a sequence of
// gzip members: one per entry (its header block(s), body and padding) in
// archive order, then one holding the end-of-archive marker. Concatenated
// gzip members are one gzip stream to every reader (RFC 1952), and tar
// headers hold no offsets, so each member's bytes depend only on its own
// entry, the level and mtime: a rebuild reuses every member whose entry is
// unchanged. Every member has the same gzip header: mtime, OS byte 255 and
// an extra field "BL" holding MemberParams' text.
//
// Members are compressed by opt.Workers goroutines and written in order;
// at most a few members are held in memory, each at most 1 MiB.
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
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	jobs := make(chan *memberJob)
	order := make(chan *memberJob, 2*workers)
	defer func() {
		cancel()
		wg.Wait()
		// Every worker has stopped, so each job left either has its
		// result or never will: close the cache readers of those that do.
		for j := range order {
			select {
			case r := <-j.done:
				if r.rc != nil {
					r.rc.Close()
				}
			default:
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(order)
		defer close(jobs)
		for i := range all {
			j := &memberJob{e: &all[i], done: make(chan memberResult, 1)}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := &MemberEncoder{level: opt.Level, mtime: mtime, buf: make([]byte, copyBufSize)}
			for j := range jobs {
				j.done <- compressMember(ctx, enc, j.e, opt)
			}
		}()
	}
	enc := &MemberEncoder{level: opt.Level, mtime: mtime, buf: make([]byte, copyBufSize)}
	for j := range order {
		var res memberResult
		select {
		case res = <-j.done:
		case <-ctx.Done():
			return fmt.Errorf("write member %s: %w", j.e.Name, ctx.Err())
		}
		if err := writeMember(ctx, w, enc, j.e, res); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write members: %w", err)
	}
	if err := enc.End(w); err != nil {
		return fmt.Errorf("write end-of-archive member: %w", err)
	}
	return nil
}

// compressMember prepares one entry's member on a worker.
func compressMember(ctx context.Context, enc *MemberEncoder, e *Entry, opt MembersOptions) memberResult {
	if err := ctx.Err(); err != nil {
		return memberResult{err: err}
	}
	if e.Dir || e.Size < memberBufMax {
		var b bytes.Buffer
		err := enc.member(&b, func(zw io.Writer) error { return writeSegment(ctx, zw, e, enc.mtime, enc.buf) })
		return memberResult{buf: &b, err: err}
	}
	key, ok := MemberKey(*e, opt.Level, enc.mtime)
	if opt.Cache == nil || !ok {
		return memberResult{inline: true}
	}
	rc, hit, err := opt.Cache.Get(ctx, key)
	if err != nil {
		return memberResult{err: fmt.Errorf("cached member %s: %w", e.Name, err)}
	}
	if hit {
		return memberResult{rc: rc}
	}
	rc, err = opt.Cache.Put(ctx, key, func(w io.Writer) error {
		return enc.member(w, func(zw io.Writer) error { return writeSegment(ctx, zw, e, enc.mtime, enc.buf) })
	})
	if err != nil {
		return memberResult{err: fmt.Errorf("cache member %s: %w", e.Name, err)}
	}
	return memberResult{rc: rc}
}

// writeMember writes one prepared member to w, in archive order.
func writeMember(ctx context.Context, w io.Writer, enc *MemberEncoder, e *Entry, res memberResult) error {
	switch {
	case res.err != nil:
		return res.err
	case res.buf != nil:
		if _, err := w.Write(res.buf.Bytes()); err != nil {
			return fmt.Errorf("write member %s: %w", e.Name, err)
		}
		return nil
	case res.rc != nil:
		_, err := io.CopyBuffer(w, ctxio.Reader(ctx, res.rc), enc.buf)
		if cerr := res.rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write cached member %s: %w", e.Name, err)
		}
		return nil
	default:
		return enc.member(w, func(zw io.Writer) error { return writeSegment(ctx, zw, e, enc.mtime, enc.buf) })
	}
}
