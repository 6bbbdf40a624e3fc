package cas

import (
	"context"
	"io"
	"io/fs"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Store is what a build needs of a content store: blobs by digest and step
// results by key, through streams and sizes, never file paths. Dir, a
// local directory, is one implementation; an object store or a registry is
// another, and a layered store (local first, then remote) is a third.
//
// Every implementation verifies: Put checks what it stores against the
// digest as it streams, and a reader from Open fails at its end unless the
// bytes it gave are the digest's, so a store that returns wrong bytes
// costs a rebuild, never a wrong artifact.
type Store interface {
	Blobs
	Actions
}

// Blobs is a content-addressed blob store.
type Blobs interface {
	// Stat reports whether blob h is present and its size, without
	// reading it. A missing blob is ok == false with a nil error.
	Stat(ctx context.Context, h v1.Hash) (size int64, ok bool, err error)
	// Open opens blob h and returns its size. The reader's last Read
	// returns an error wrapping ErrCorrupt instead of io.EOF unless the
	// content is h: callers read to io.EOF before trusting the bytes. A
	// missing blob is an error for which errors.Is(err, fs.ErrNotExist)
	// holds.
	Open(ctx context.Context, h v1.Hash) (io.ReadCloser, int64, error)
	// Put stores r's content as blob want, size bytes long (negative:
	// unknown), checking digest and size as it streams; on a mismatch
	// nothing is stored. A blob present already is not read again.
	Put(ctx context.Context, want v1.Hash, size int64, r io.Reader) error
	// Writer starts a blob whose digest is known only once it is written.
	Writer(ctx context.Context) (BlobWriter, error)
}

// BlobWriter stores a blob whose digest Commit computes. The caller must
// Commit or Abort it; Abort after Commit does nothing.
type BlobWriter interface {
	io.Writer
	Commit() (v1.Hash, int64, error)
	Abort() error
}

// Actions is an action cache: what each step produced, by step key.
type Actions interface {
	// GetAction returns the result recorded under key. A hit names only
	// blobs the store still holds (outputs not Derived). A miss is a nil
	// result, false and a nil error; an entry found damaged is dropped and
	// reported as a miss with an error wrapping ErrCorrupt.
	GetAction(ctx context.Context, key v1.Hash) (*ActionResult, bool, error)
	// PutAction records r under key.
	PutAction(ctx context.Context, key v1.Hash, r *ActionResult) error
}

// The capabilities below are optional: a build uses them where its store
// has them, and does without them elsewhere.

// Syncer makes everything a store wrote durable at once, before a build
// publishes what it made from it (see Dir.Sync).
type Syncer interface {
	Sync() error
}

// Locker lets builds share a store while maintenance waits (see Dir.Lock),
// and removes temporary files that killed builds left (Dir.Sweep).
type Locker interface {
	Lock(ctx context.Context, exclusive bool) (unlock func(), err error)
	Sweep(olderThan time.Duration) (int, int64, error)
}

// FilePutter stores a local file as a blob without a second read, by
// reflink where the file system can (see Dir.PutFile). The path names the
// source, outside the store.
type FilePutter interface {
	PutFile(ctx context.Context, want v1.Hash, size int64, path string) error
}

// FileCopier writes a blob into a new file outside the store, by reflink
// where it can, checking what the file received (see Dir.CopyTo).
type FileCopier interface {
	CopyTo(ctx context.Context, h v1.Hash, size int64, dst *os.File) error
	// Holds reports whether fi is the store's own file of blob h: an
	// output directory written by an old bale may hold hard links into
	// the store, which must never be taken for a copy.
	Holds(h v1.Hash, fi fs.FileInfo) bool
}

// Resumer keeps partial downloads across runs, so an interrupted fetch
// resumes with a Range request (see Dir.Resume).
type Resumer interface {
	Resume(ctx context.Context, want v1.Hash, size int64) (*Partial, error)
}

// Verifier re-hashes a blob in full whatever a store remembers of it, and
// drops it if it is corrupt (see Dir.Verify).
type Verifier interface {
	Verify(ctx context.Context, h v1.Hash) error
}

// Verify checks blob h of s in full: with s's own Verify where it has one,
// else by reading it through Open, which verifies.
func Verify(ctx context.Context, s Blobs, h v1.Hash) error {
	if v, ok := s.(Verifier); ok {
		return v.Verify(ctx, h)
	}
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// Stat is the Blobs form of Has.
func (s *Dir) Stat(_ context.Context, h v1.Hash) (int64, bool, error) {
	ok, n := s.Has(h)
	return n, ok, nil
}

// Holds reports whether fi is the store's own file of blob h.
func (s *Dir) Holds(h v1.Hash, fi fs.FileInfo) bool {
	if checkHash(h) != nil {
		return false
	}
	bi, err := os.Stat(s.blobPath(h))
	return err == nil && os.SameFile(fi, bi)
}

var (
	_ Store      = (*Dir)(nil)
	_ Syncer     = (*Dir)(nil)
	_ Locker     = (*Dir)(nil)
	_ FilePutter = (*Dir)(nil)
	_ FileCopier = (*Dir)(nil)
	_ Resumer    = (*Dir)(nil)
	_ Verifier   = (*Dir)(nil)
)
