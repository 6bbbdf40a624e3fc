package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/internal/ctxio"
)

// ErrBusy is returned by Resume when another writer holds the blob's
// partial download; the caller fetches the blob whole instead.
var ErrBusy = errors.New("partial download in use")

// Partial is a blob being downloaded across runs: its bytes so far live in
// the store's partial/ directory under the blob's digest, so an interrupted
// build resumes where it stopped (with an HTTP Range request) instead of
// starting over. Nothing in partial/ is ever read as a blob: Commit hashes
// every byte, the ones of earlier runs included, and moves the file into
// place only when the whole matches the digest and size.
//
// A Partial holds an exclusive lock on its file; it is not safe for
// concurrent use.
type Partial struct {
	ctx  context.Context
	s    *Dir
	want v1.Hash
	size int64
	path string
	f    *os.File
	h    hash.Hash
	n    int64
	done bool // committed, discarded or closed
}

// partialDir holds the partial downloads, named by their blob's hex digest.
func (s *Dir) partialDir() string { return filepath.Join(s.root, "partial") }

// Resume opens the partial download of blob want (of size bytes), creating
// it if there is none. Offset says how many bytes it already holds; they
// have been hashed. The caller must Commit, Discard or Close it.
func (s *Dir) Resume(ctx context.Context, want v1.Hash, size int64) (*Partial, error) {
	if err := checkHash(want); err != nil {
		return nil, fmt.Errorf("resume blob: %w", err)
	}
	if size < 0 {
		return nil, fmt.Errorf("resume blob %s: size unknown", want)
	}
	dir := s.partialDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("resume blob %s: %w", want, err)
	}
	path := filepath.Join(dir, want.Hex)
	// Through os.Root: a link planted in partial/ reaches nothing outside.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("resume blob %s: %w", want, err)
	}
	f, err := root.OpenFile(want.Hex, os.O_RDWR|os.O_CREATE, 0o644)
	root.Close()
	if err != nil {
		return nil, fmt.Errorf("resume blob %s: %w", want, err)
	}
	ok, err := flock(f, true)
	if err != nil || !ok {
		f.Close()
		if err == nil {
			err = ErrBusy
		}
		return nil, fmt.Errorf("resume blob %s: %w", want, err)
	}
	p := &Partial{ctx: ctx, s: s, want: want, size: size, path: path, f: f, h: sha256.New()}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > size {
		// Not a download of this blob: start over.
		if err := p.Restart(); err != nil {
			f.Close()
			return nil, err
		}
		return p, nil
	}
	n, err := io.CopyBuffer(p.h, ctxio.Reader(ctx, io.LimitReader(f, size)), make([]byte, 1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("resume blob %s: %w", want, err)
	}
	p.n = n
	return p, nil
}

// Offset returns how many bytes of the blob the partial download holds.
func (p *Partial) Offset() int64 { return p.n }

// Restart empties the partial download: the source sent the blob from its
// first byte.
func (p *Partial) Restart() error {
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("restart blob %s: %w", p.want, err)
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restart blob %s: %w", p.want, err)
	}
	p.h.Reset()
	p.n = 0
	return nil
}

// Write appends b. It refuses bytes past the blob's size and fails with
// ctx's error once ctx is done.
func (p *Partial) Write(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(b)) > p.size-p.n {
		return 0, fmt.Errorf("blob %s: more than the expected %d bytes", p.want, p.size)
	}
	n, err := p.f.Write(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	return n, err
}

// ReadFrom appends r's bytes until EOF, at disk speed.
func (p *Partial) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{p}, ctxio.Reader(p.ctx, r), make([]byte, 1<<20))
}

// Commit checks the whole download against the digest and size and moves
// it into the store as the blob. On a mismatch the partial file is removed
// and the error wraps ErrCorrupt: fetching again from the start is the cure.
func (p *Partial) Commit() error {
	got := sum(p.h)
	if err := checkContent(p.want, p.size, got, p.n, "download"); err != nil {
		p.Discard()
		return fmt.Errorf("put blob %s: %w: %w", p.want, ErrCorrupt, err)
	}
	written, err := p.f.Stat()
	if err != nil {
		return fmt.Errorf("put blob %s: %w", p.want, err)
	}
	if err := os.Rename(p.path, p.s.blobPath(p.want)); err != nil {
		return fmt.Errorf("put blob %s: %w", p.want, err)
	}
	p.Close()
	// Durable and stamped at the store's next Sync, as every blob.
	p.s.addUnsynced(p.want, written)
	return nil
}

// Discard removes the partial download.
func (p *Partial) Discard() {
	if !p.done {
		os.Remove(p.path)
	}
	p.Close()
}

// Close keeps the partial download for a later run and releases it. It
// does nothing after Commit, Discard or Close.
func (p *Partial) Close() error {
	if p.done {
		return nil
	}
	p.done = true
	return p.f.Close()
}
