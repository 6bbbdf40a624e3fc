package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// Member is where one gzip member of a stream starts.
type Member struct {
	// Offset is the member's first byte in the compressed stream.
	Offset int64
	// Start is the offset, in the decompressed stream, of the first byte
	// the member holds.
	Start int64
}

// maxKeptMembers bounds the members a MemberReader remembers between two
// Release calls. bale's layout keeps one or two (see Release); only a
// stream of tiny members, which bale never writes, comes near it.
const maxKeptMembers = 1 << 16

// MemberReader decompresses a stream of gzip members, such as
// WriteMembers writes, one member at a time: it checks each member's
// checksum as the member ends, and says what follows the last one
// (nothing, or data that is not a gzip member). It remembers where the
// members it read start, so a reader of the decompressed stream can ask in
// which member an offset lies (Locate) and later decompress from there
// alone, as pack readers do to open one entry of a pack without reading
// the rest.
type MemberReader struct {
	src   *countReader
	br    *bufio.Reader
	zr    *gzip.Reader
	extra []byte
	out   int64 // decompressed bytes returned so far
	n     int   // members started
	kept  []Member
	floor int64
}

// NewMemberReader reads the first member's header from r.
func NewMemberReader(r io.Reader) (*MemberReader, error) {
	src := &countReader{r: r, max: maxLimit}
	br := bufio.NewReaderSize(src, 64<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, streamErr("read gzip header", err)
	}
	zr.Multistream(false)
	m := &MemberReader{src: src, br: br, zr: zr, n: 1, kept: []Member{{}}}
	m.extra = append([]byte(nil), zr.Header.Extra...)
	return m, nil
}

// Extra returns the first member's gzip extra field, where WriteMembers
// records the layout (see ParseMemberExtra).
func (m *MemberReader) Extra() []byte { return m.extra }

// Members counts the members started so far.
func (m *MemberReader) Members() int { return m.n }

// Read decompresses the members in turn. After the last member it returns
// io.EOF if the stream ends there, or an error naming the member that is
// followed by something other than a gzip member.
func (m *MemberReader) Read(p []byte) (int, error) {
	for {
		n, err := m.zr.Read(p)
		m.out += int64(n)
		if !errors.Is(err, io.EOF) {
			return n, err
		}
		// The member ended and its checksum matched.
		if _, perr := m.br.Peek(1); errors.Is(perr, io.EOF) {
			return n, io.EOF
		}
		if magic, _ := m.br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
			return n, fmt.Errorf("read archive: trailing data after gzip member %d", m.n)
		}
		at := Member{Offset: m.src.n - int64(m.br.Buffered()), Start: m.out}
		if err := m.zr.Reset(m.br); err != nil {
			return n, streamErr(fmt.Sprintf("read gzip member %d header", m.n+1), err)
		}
		m.zr.Multistream(false)
		m.n++
		if err := m.keep(at); err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// keep remembers a member that starts at. A member that starts where the
// one before it does held nothing, and one that starts at or below the
// floor makes the one before it unneeded: either replaces the last one.
func (m *MemberReader) keep(at Member) error {
	last := m.kept[len(m.kept)-1]
	if at.Start == last.Start || at.Start <= m.floor {
		m.kept[len(m.kept)-1] = at
		return nil
	}
	if len(m.kept) >= maxKeptMembers {
		return fmt.Errorf("read archive: %w: more than %d gzip members within %d bytes of tar stream", ErrLimit, maxKeptMembers, at.Start-m.kept[0].Start)
	}
	m.kept = append(m.kept, at)
	return nil
}

// Locate returns the member holding the decompressed offset off, which
// must not be below the last Release, nor past what was read.
func (m *MemberReader) Locate(off int64) (Member, bool) {
	if off < m.floor || off > m.out {
		return Member{}, false
	}
	for i := len(m.kept) - 1; i >= 0; i-- {
		if m.kept[i].Start <= off {
			return m.kept[i], true
		}
	}
	return Member{}, false
}

// Release says no offset below off will be located again: the members
// wholly below it are forgotten, and so are those that start below it
// later. Calling it with each entry's end keeps one or two members in
// memory whatever the pack's size.
func (m *MemberReader) Release(off int64) {
	if off <= m.floor {
		return
	}
	m.floor = off
	i := 0
	for i+1 < len(m.kept) && m.kept[i+1].Start <= off {
		i++
	}
	m.kept = append(m.kept[:0], m.kept[i:]...)
}

// Rest returns what follows what the reader consumed: the bytes it read
// ahead, then the rest of the underlying reader.
func (m *MemberReader) Rest() io.Reader { return m.br }

// OpenMembers decompresses r, the stream of members starting at a member
// boundary (as a Member's Offset names one), across member boundaries,
// skipping the first skip decompressed bytes: how a pack reader reads one
// entry's body from where its member starts.
func OpenMembers(r io.Reader, skip int64) (io.Reader, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, streamErr("read gzip header", err)
	}
	zr.Multistream(true)
	if _, err := io.CopyN(io.Discard, zr, skip); err != nil {
		return nil, streamErr("read gzip member", err)
	}
	return &truncReader{r: zr}, nil
}

// truncReader marks an early end of a member stream as ErrTruncated.
type truncReader struct{ r io.Reader }

func (t *truncReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = streamErr("read gzip member", err)
	}
	return n, err
}
