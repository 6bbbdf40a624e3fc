package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Entry is one file or directory to write into an archive.
type Entry struct {
	// Name is a clean, slash-separated relative path ("a/b.txt"), without a
	// trailing slash even for directories.
	Name string
	// Mode is 0 or 0o644 for an ordinary file and 0o755 for an executable
	// one; anything else is an error, because modes are part of the bytes
	// and must come from the spec, never from a file on disk. Directories
	// are always 0o755 and take 0 or 0o755 here.
	Mode int64
	// Size is the exact number of bytes Open yields. It is written into the
	// header before the body streams, so a mismatch is an error.
	Size int64
	// Open returns the body of a file entry. It is called once, in archive
	// order, and the reader is closed before the next entry is opened, so at
	// most one body is open at a time. Directories have no Open.
	Open func() (io.ReadCloser, error)
	// Digest identifies the body's content ("sha256:HEX") when the caller
	// knows it. It never changes the bytes written: WriteMembers uses it
	// only to key cached members, and compresses an entry without one
	// every time.
	Digest string
	// Dir marks a directory entry. Parent directories of every entry are
	// written whether or not they are listed; list one only to include an
	// empty directory.
	Dir bool
}

// Mode bits WriteTar writes.
const (
	fileMode = 0o644
	execMode = 0o755
	dirMode  = 0o755
)

// USTAR limits: 11 octal digits for mtime and size, 100 bytes of name plus
// 155 of prefix.
const (
	maxOctal11   = 1<<33 - 1
	ustarNameLen = 100
	ustarPrefLen = 155
)

// copyBufSize is the body copy buffer, allocated once per archive.
const copyBufSize = 32 << 10

// WriteTar writes entries to w as a byte-stable tar stream and closes the tar
// (writing the end-of-archive marker) but not w.
//
// Entries are validated (see CleanName; names must already be clean),
// sorted by path in byte order, and each missing parent directory is written
// once, before its children. Every header is built here: regular file or
// directory, uid/gid 0, empty user and group names, mode 0644/0755, ModTime
// mtime truncated to the second, no access or change times, no extended
// attributes. Headers are USTAR; PAX is used only for an entry USTAR cannot
// describe (a long or non-ASCII name, or a file of 8 GiB or more), and then
// carries only the records that entry needs.
//
// WriteTar stops with ctx's error if ctx is cancelled between entries or
// while a body streams.
func WriteTar(ctx context.Context, w io.Writer, entries []Entry, mtime time.Time) error {
	mtime, err := checkMtime(mtime)
	if err != nil {
		return err
	}
	all, err := withParents(entries)
	if err != nil {
		return err
	}
	buf := make([]byte, copyBufSize)
	for i := range all {
		if err := writeSegment(ctx, w, &all[i], mtime, buf); err != nil {
			return err
		}
	}
	if _, err := w.Write(make([]byte, EndOfArchiveSize)); err != nil {
		return fmt.Errorf("write tar: end-of-archive marker: %w", err)
	}
	return nil
}

// EndOfArchiveSize is the length of the end-of-archive marker WriteTar
// writes after the last entry: two zero blocks, with no further padding to
// a record size.
const EndOfArchiveSize = 2 * 512

// checkMtime truncates mtime to the second and checks USTAR can hold it.
func checkMtime(mtime time.Time) (time.Time, error) {
	mtime = mtime.Truncate(time.Second).UTC()
	if s := mtime.Unix(); s < 0 || s > maxOctal11 {
		// Outside USTAR's unsigned 11-digit octal field; PAX could hold it,
		// but no build timestamp is legitimately there.
		return mtime, fmt.Errorf("write tar: mtime %s outside 1970-01-01..2242-03-16", mtime.Format(time.RFC3339))
	}
	return mtime, nil
}

// writeSegment writes one entry of a sorted, validated list: its header
// block(s), its body and the zero padding to the next block. An archive is
// the concatenation of its entries' segments and the end-of-archive marker;
// tar headers hold no offsets, so a segment's bytes depend on its entry and
// the mtime alone, which is what lets a pack compress each one on its own.
func writeSegment(ctx context.Context, w io.Writer, e *Entry, mtime time.Time, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write tar entry %s: %w", e.Name, err)
	}
	// archive/tar keeps no state from one entry to the next (a PAX
	// header's name does not count entries), so a writer per segment
	// writes the same bytes as one writer for the whole archive.
	tw := tar.NewWriter(w)
	if err := writeEntry(ctx, tw, e, mtime, buf); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write tar entry %s: padding: %w", e.Name, err)
	}
	return nil
}

// withParents validates entries and returns a sorted copy with every
// implied parent directory added.
func withParents(entries []Entry) ([]Entry, error) {
	all := make([]Entry, 0, len(entries))
	// at maps every path seen, listed or implied, to its index in all.
	at := make(map[string]int, len(entries))
	listed := make(map[string]bool, len(entries))
	for _, e := range entries {
		if err := checkEntry(e); err != nil {
			return nil, err
		}
		if listed[e.Name] {
			return nil, fmt.Errorf("tar entry %q: %w: duplicate name", e.Name, ErrUnsafeEntry)
		}
		listed[e.Name] = true
		if e.Dir {
			e.Mode = dirMode
		} else if e.Mode == 0 {
			e.Mode = fileMode
		}
		if i, seen := at[e.Name]; seen {
			// Implied by an earlier child: fine for a directory (the bytes
			// are the same), a conflict for a file.
			if !e.Dir {
				return nil, fmt.Errorf("tar entry %q: %w: both a file and a directory", e.Name, ErrUnsafeEntry)
			}
			all[i] = e
			continue
		}
		at[e.Name] = len(all)
		all = append(all, e)
		var conflict string
		parentDirs(e.Name, func(dir string) bool {
			if i, seen := at[dir]; seen {
				if !all[i].Dir {
					conflict = dir
				}
				// Its own ancestors were added when it was.
				return false
			}
			at[dir] = len(all)
			all = append(all, Entry{Name: dir, Mode: dirMode, Dir: true})
			return true
		})
		if conflict != "" {
			return nil, fmt.Errorf("tar entry %q: %w: parent %q is a file", e.Name, ErrUnsafeEntry, conflict)
		}
	}
	// Byte order of the full path puts every directory before its
	// children, since a prefix sorts first.
	slices.SortFunc(all, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return all, nil
}

// checkEntry validates one listed entry on its own.
func checkEntry(e Entry) error {
	clean, err := CleanName(e.Name)
	if err != nil {
		return fmt.Errorf("tar entry %q: %w", e.Name, err)
	}
	if clean != e.Name {
		return fmt.Errorf("tar entry %q: %w: name is not clean (want %q)", e.Name, ErrUnsafeEntry, clean)
	}
	if e.Dir {
		if e.Mode != 0 && e.Mode != dirMode {
			return fmt.Errorf("tar entry %q: directory mode %#o, want 0 or 0755", e.Name, e.Mode)
		}
		if e.Size != 0 || e.Open != nil {
			return fmt.Errorf("tar entry %q: directory has a size or body", e.Name)
		}
		return nil
	}
	if e.Mode != 0 && e.Mode != fileMode && e.Mode != execMode {
		return fmt.Errorf("tar entry %q: file mode %#o, want 0644 or 0755", e.Name, e.Mode)
	}
	if e.Size < 0 {
		return fmt.Errorf("tar entry %q: negative size %d", e.Name, e.Size)
	}
	if e.Open == nil {
		return fmt.Errorf("tar entry %q: file has no Open", e.Name)
	}
	return nil
}

// writeEntry writes one header and, for a file, its body.
func writeEntry(ctx context.Context, tw *tar.Writer, e *Entry, mtime time.Time, buf []byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     e.Name,
		Mode:     e.Mode,
		Size:     e.Size,
		ModTime:  mtime,
		Format:   tar.FormatUSTAR,
	}
	if e.Dir {
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		hdr.Size = 0
	}
	if !fitsUSTAR(hdr.Name, hdr.Size) {
		hdr.Format = tar.FormatPAX
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %s: %w", e.Name, err)
	}
	if e.Dir {
		return nil
	}
	rc, err := e.Open()
	if err != nil {
		return fmt.Errorf("open tar entry %s: %w", e.Name, err)
	}
	err = copyBody(ctx, tw, rc, e.Size, buf)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write tar entry %s: %w", e.Name, err)
	}
	return nil
}

// copyBody copies exactly size bytes from r to w and checks r has no more.
func copyBody(ctx context.Context, w io.Writer, r io.Reader, size int64, buf []byte) error {
	var n int64
	for n < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf
		if rem := size - n; rem < int64(len(chunk)) {
			chunk = chunk[:rem]
		}
		m, err := r.Read(chunk)
		if m > 0 {
			if _, werr := w.Write(chunk[:m]); werr != nil {
				return werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
	}
	if n < size {
		return fmt.Errorf("body is %d bytes, header says %d", n, size)
	}
	// Size bytes went out; one more byte means the source is longer than
	// declared, which would otherwise be silently cut.
	var one [1]byte
	for {
		m, err := r.Read(one[:])
		if m > 0 {
			return fmt.Errorf("body is longer than the declared %d bytes", size)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
	}
}

// fitsUSTAR reports whether a plain USTAR header can hold name and size. It
// mirrors archive/tar's rules so the format is chosen here, explicitly,
// rather than by archive/tar's preferences.
func fitsUSTAR(name string, size int64) bool {
	if size > maxOctal11 || !isASCII(name) {
		return false
	}
	if len(name) <= ustarNameLen {
		return true
	}
	// Split into prefix (<=155) "/" name (<=100) at a slash. A directory's
	// trailing slash may be dropped into the split.
	n := len(name)
	if n > ustarPrefLen+1 {
		n = ustarPrefLen + 1
	} else if name[n-1] == '/' {
		n--
	}
	i := strings.LastIndexByte(name[:n], '/')
	suffix := len(name) - i - 1
	return i > 0 && suffix > 0 && suffix <= ustarNameLen && i <= ustarPrefLen
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}
