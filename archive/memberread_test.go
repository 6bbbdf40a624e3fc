package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// TestMemberReaderPositions: walking a WriteMembers archive through a
// MemberReader and WalkTar gives each entry's position; the member Locate
// finds for its header starts exactly there, and OpenMembers from that
// member reads the entry's body alone. Release keeps the members
// remembered to a few, whatever the archive's size.
func TestMemberReaderPositions(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 3<<16) // 3 MiB: three members
	entries := append(fixedEntries(), fileEntry("big", 0, big))
	var buf bytes.Buffer
	if err := WriteMembers(context.Background(), &buf, entries, buildTime, MembersOptions{Level: 6}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	mr, err := NewMemberReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ParseMemberExtra(mr.Extra()); err != nil || p.Layout != MemberLayout || p.Level != 6 {
		t.Fatalf("first member's extra: %+v %v", p, err)
	}
	bodies := map[string]string{}
	for _, e := range entries {
		if !e.Dir {
			rc, _ := e.Open()
			b, _ := io.ReadAll(rc)
			bodies[e.Name] = string(b)
		}
	}
	seen, maxKept := 0, 0
	err = WalkTar(context.Background(), mr, DefaultLimits(), func(h *tar.Header, pos Position, body io.Reader) error {
		m, ok := mr.Locate(pos.Header)
		if !ok || m.Start != pos.Header {
			t.Errorf("%s: header at %d, member %+v (%v): not where a member starts", h.Name, pos.Header, m, ok)
		}
		mr.Release(pos.End(h.Size))
		maxKept = max(maxKept, len(mr.kept))
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		seen++
		r, err := OpenMembers(bytes.NewReader(data[m.Offset:]), pos.Body-m.Start)
		if err != nil {
			return err
		}
		got, err := io.ReadAll(io.LimitReader(r, h.Size))
		if err != nil || string(got) != bodies[h.Name] {
			t.Errorf("%s: OpenMembers gave %q (%v)", h.Name, got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(bodies) {
		t.Errorf("walked %d files of %d", seen, len(bodies))
	}
	if maxKept > 2 {
		t.Errorf("kept %d members at once", maxKept)
	}
	if mr.Members() < len(entries)+3 {
		t.Errorf("%d members for %d entries and a 3 MiB body", mr.Members(), len(entries))
	}
}

// TestMemberReaderTrailing: what follows the last member is named.
func TestMemberReaderTrailing(t *testing.T) {
	t.Parallel()
	data := append(writeTarGz(t, fixedEntries(), 1, buildTime), "junk"...)
	mr, err := NewMemberReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, mr); err == nil || !strings.Contains(err.Error(), "trailing data after gzip member 1") {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewMemberReader(strings.NewReader("not gzip")); err == nil {
		t.Fatal("a stream that is not gzip was read")
	}
}
