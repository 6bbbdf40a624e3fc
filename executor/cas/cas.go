// Package cas is bale's content-addressed blob store and action cache.
//
// Blobs live at ROOT/blobs/sha256/HEX, the layout of an OCI image layout's
// blob directory. Every blob is written to a temporary file, its digest and
// size checked while it streams, synced and renamed into place, so a blob
// under its digest is always complete. Reads re-hash, and a blob found
// corrupt is deleted so the next build fetches or rebuilds it.
//
// The action cache maps a step id to the blobs the step produced, at
// ROOT/ac/HEX, so a plan whose steps are cached does no work.
package cas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/internal/ctxio"
)

// ErrInvalidDigest is wrapped by errors about digests that are not
// "sha256:" followed by 64 lowercase hex digits. Such a digest is refused
// before it is used to build any path.
var ErrInvalidDigest = errors.New("invalid digest")

// ErrCorrupt is wrapped by errors about stored data that does not match its
// digest or cannot be decoded. The data has been removed by the time the
// error is returned; fetching or rebuilding it again is the cure.
var ErrCorrupt = errors.New("corrupt store entry")

// algorithm is the only digest algorithm the store accepts.
const algorithm = "sha256"

// Store is a content-addressed store rooted at a directory. Besides its
// paths it holds only the list of blobs it wrote and has not yet made
// durable (see Sync), so any number of Stores, goroutines and processes may
// share one root.
type Dir struct {
	root   string
	blobs  string
	ac     string
	stamps string

	mu sync.Mutex
	// unsynced are the blobs committed since the last Sync: in place, but
	// neither durable nor stamped.
	unsynced []unsyncedBlob
	// fresh holds, by hex digest, the fingerprint of each unsynced blob's
	// file as this store committed it, after hashing every byte (see
	// Open): until Sync stamps them, these are the blobs it trusts.
	fresh map[string]string

	// Test hooks for interleavings: afterCommit runs between a blob's
	// rename into place and its stamp, beforeEndCheck between a reader's
	// last hash and its fingerprint check.
	afterCommit    func(path string)
	beforeEndCheck func(path string)
}

// Open opens the store at root, creating root/blobs/sha256, root/ac and
// root/stamps if needed.
func Open(root string) (*Dir, error) {
	s := &Dir{
		root:   root,
		blobs:  filepath.Join(root, "blobs", algorithm),
		ac:     filepath.Join(root, "ac"),
		stamps: filepath.Join(root, "stamps"),
	}
	for _, dir := range []string{s.blobs, s.ac, s.stamps} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("open store %s: %w", root, err)
		}
	}
	return s, nil
}

// Root returns the directory the store was opened at.
func (s *Dir) Root() string { return s.root }

// checkHash validates h itself rather than trusting v1.NewHash, since a
// v1.Hash can be built as a literal and NewHash accepts other algorithms.
func checkHash(h v1.Hash) error {
	if h.Algorithm != algorithm {
		return fmt.Errorf("%w %q: algorithm is not %s", ErrInvalidDigest, h.String(), algorithm)
	}
	if len(h.Hex) != 2*sha256.Size {
		return fmt.Errorf("%w %q: want %d hex digits", ErrInvalidDigest, h.String(), 2*sha256.Size)
	}
	for i := 0; i < len(h.Hex); i++ {
		if c := h.Hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w %q: not lowercase hex", ErrInvalidDigest, h.String())
		}
	}
	return nil
}

func (s *Dir) blobPath(h v1.Hash) string { return filepath.Join(s.blobs, h.Hex) }

// Path returns the file path of blob h, present or not, for callers that
// need a file (to hand to another tool, or to link into an OCI layout). It
// returns "" when h is not a valid sha256 digest, so no hostile digest ever
// names a path. Reading the file directly skips verification; use Open when
// the bytes matter.
func (s *Dir) Path(h v1.Hash) string {
	if checkHash(h) != nil {
		return ""
	}
	return s.blobPath(h)
}

// Has reports whether blob h is present, and its size. It does not read the
// content; Open and Verify do.
func (s *Dir) Has(h v1.Hash) (bool, int64) {
	if checkHash(h) != nil {
		return false, 0
	}
	fi, err := os.Stat(s.blobPath(h))
	if err != nil || !fi.Mode().IsRegular() {
		return false, 0
	}
	return true, fi.Size()
}

// Put stores the content of r as blob want. size is the expected length, or
// negative if unknown. The digest and size are checked as the content
// streams; on a mismatch Put returns an error naming both digests and leaves
// nothing behind.
//
// If the blob is already present (with the expected size, when known), Put
// returns without reading r. A present blob of the wrong size is treated as
// damaged and replaced by r's content, once that has been verified.
func (s *Dir) Put(ctx context.Context, want v1.Hash, size int64, r io.Reader) error {
	if err := checkHash(want); err != nil {
		return fmt.Errorf("put blob: %w", err)
	}
	if ok, n := s.Has(want); ok && (size < 0 || n == size) {
		return nil
	}
	f, err := atomicfile.Create(s.blobPath(want))
	if err != nil {
		return fmt.Errorf("put blob %s: %w", want, err)
	}
	defer f.Abort()
	src := r
	if size >= 0 && size < math.MaxInt64 {
		// One byte past size is enough to see the content is too long,
		// without streaming an unbounded remainder. (size+1 would wrap at
		// the largest size, and a limit below zero reads nothing.)
		src = io.LimitReader(r, size+1)
	}
	h := sha256.New()
	n, err := copyBuf(ctx, io.MultiWriter(f, h), src)
	if err != nil {
		return fmt.Errorf("put blob %s: %w", want, err)
	}
	if err := checkContent(want, size, sum(h), n, "content"); err != nil {
		return fmt.Errorf("put blob %s: %w", want, err)
	}
	return s.commit(f, want)
}

// checkContent compares what was hashed with what was expected.
func checkContent(want v1.Hash, size int64, got v1.Hash, n int64, what string) error {
	if size >= 0 && n != size {
		if n > size {
			return fmt.Errorf("size mismatch: %s is longer than the expected %d bytes", what, size)
		}
		return fmt.Errorf("size mismatch: %s is %d bytes, expected %d", what, n, size)
	}
	if got != want {
		return fmt.Errorf("digest mismatch: %s is %s", what, got)
	}
	return nil
}

// commit renames a checked temporary file into place as blob h and stamps
// it, unless it was written to after the check (see stampWritten).
func (s *Dir) commit(f *atomicfile.File, h v1.Hash) error {
	written, err := f.Stat()
	if err != nil {
		return fmt.Errorf("commit blob %s: %w", h, err)
	}
	// Not synced one by one: Sync makes every blob of a build durable at
	// once, then stamps them. Until then a blob is hashed whenever it is
	// read, so one a crash damaged is found, dropped and fetched again.
	if err := f.CommitUnsynced(s.blobPath(h)); err != nil {
		return fmt.Errorf("commit blob %s: %w", h, err)
	}
	if s.afterCommit != nil {
		s.afterCommit(s.blobPath(h))
	}
	s.addUnsynced(h, written)
	return nil
}

// addUnsynced records blob h, just committed without a sync, for Sync.
// written is the temporary file's status after its last write. If the
// file under h's name is still that file (no write landed between the
// hash and now), its fingerprint is kept, so this store reads it back
// without hashing it again (see Open).
func (s *Dir) addUnsynced(h v1.Hash, written fs.FileInfo) {
	fp := ""
	if before, ok := statOf(written); ok {
		if now, ok := lstatOf(s.blobPath(h)); ok && before.sameContent(now) {
			fp = now.String()
		}
	}
	s.mu.Lock()
	s.unsynced = append(s.unsynced, unsyncedBlob{h: h, written: written})
	if fp != "" {
		if s.fresh == nil {
			s.fresh = map[string]string{}
		}
		s.fresh[h.Hex] = fp
	} else {
		delete(s.fresh, h.Hex)
	}
	s.mu.Unlock()
}

// freshFile reports whether fi, the status of an open descriptor of blob
// h's file, is the file this store committed as h after hashing it, with
// not a byte written since: its whole fingerprint (device, inode, size,
// modification and change times, taken after the rename) is unchanged.
// Any write through any link moves the change time, which no user-level
// tool can set back, so such a file holds the bytes that were hashed.
func (s *Dir) freshFile(h v1.Hash, fi fs.FileInfo) bool {
	st, ok := statOf(fi)
	if !ok {
		return false
	}
	s.mu.Lock()
	fp, ok := s.fresh[h.Hex]
	s.mu.Unlock()
	return ok && fp == st.String()
}

// unsyncedBlob is a blob committed but not yet durable: its digest and its
// temporary file's status after the last write, for its stamp.
type unsyncedBlob struct {
	h       v1.Hash
	written fs.FileInfo
}

// Sync makes every blob this Store committed since the last Sync durable,
// with one sync of the store's file system instead of one per blob (which
// cost a cold build about half its time), and only then stamps them: a
// stamp never vouches for bytes that a crash could still take away. Blobs
// not yet synced are correct but hashed on every read.
func (s *Dir) Sync() error {
	s.mu.Lock()
	pending := s.unsynced
	s.unsynced = nil
	s.fresh = nil
	s.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	paths := make([]string, len(pending))
	for i, p := range pending {
		paths[i] = s.blobPath(p.h)
	}
	if err := syncFiles(s.blobs, paths); err != nil {
		return fmt.Errorf("sync store %s: %w", s.root, err)
	}
	var errs []error
	for _, p := range pending {
		if err := s.stampWritten(p.h, p.written); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// copyBuf is ctxio.Copy with a buffer large enough that hashing and file
// writes run at disk speed.
func copyBuf(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{w}, ctxio.Reader(ctx, r), make([]byte, 1<<20))
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: algorithm, Hex: hex.EncodeToString(h.Sum(nil))}
}

// blobWriter is Dir's BlobWriter: a temporary file beside the blobs. It is
// not safe for concurrent use.
type blobWriter struct {
	ctx context.Context
	s   *Dir
	f   *atomicfile.File
	h   hash.Hash
	n   int64
}

// Writer starts a blob whose digest Commit computes. Writes fail with ctx's
// error once ctx is done. The caller must Commit or Abort it.
func (s *Dir) Writer(ctx context.Context) (BlobWriter, error) {
	// The temporary file lives beside the blobs so the final rename is
	// atomic; its name cannot collide with a digest.
	f, err := atomicfile.Create(filepath.Join(s.blobs, "upload"))
	if err != nil {
		return nil, fmt.Errorf("create blob writer: %w", err)
	}
	return &blobWriter{ctx: ctx, s: s, f: f, h: sha256.New()}, nil
}

// Write writes p to the blob.
func (w *blobWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, fmt.Errorf("write blob: %w", err)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write blob: %w", err)
	}
	return n, nil
}

// Commit stores the blob under its digest and returns the digest and size.
func (w *blobWriter) Commit() (v1.Hash, int64, error) {
	if err := w.ctx.Err(); err != nil {
		_ = w.f.Abort()
		return v1.Hash{}, 0, fmt.Errorf("commit blob: %w", err)
	}
	h := sum(w.h)
	if err := w.s.commit(w.f, h); err != nil {
		return v1.Hash{}, 0, err
	}
	return h, w.n, nil
}

// Abort discards the blob. It does nothing after Commit or Abort, so it is
// safe to defer.
func (w *blobWriter) Abort() error {
	if err := w.f.Abort(); err != nil {
		return fmt.Errorf("abort blob: %w", err)
	}
	return nil
}

// Open opens blob h for reading and returns its size. Unless the blob's
// stamp shows it verified and unchanged since (see Verified), the reader
// re-hashes what it reads; at the end of the blob, if the content does not
// match h,
// Read returns an error wrapping ErrCorrupt instead of io.EOF and the blob is
// deleted. Callers must read to io.EOF before trusting the bytes. Reads stop
// with ctx's error once ctx is done. A missing blob gives an error for which
// errors.Is(err, fs.ErrNotExist) holds.
func (s *Dir) Open(ctx context.Context, h v1.Hash) (io.ReadCloser, int64, error) {
	if err := checkHash(h); err != nil {
		return nil, 0, fmt.Errorf("open blob: %w", err)
	}
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file: %w", fs.ErrNotExist)
	}
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("open blob %s: %w", h, err)
	}
	if s.freshFile(h, fi) || s.Verified(h) {
		// Hashed as this store wrote it, or checked before, and unchanged
		// since (see freshFile and Verified): a second hash of every read
		// would cost as much as the read itself. A cold build reads every
		// blob it fetched back into its pack, before Sync stamps them.
		return &trustedReader{ctx: ctx, f: f, want: h}, fi.Size(), nil
	}
	// The fingerprint of the file opened, taken through the descriptor,
	// so a rename between open and now cannot substitute another file.
	fp := ""
	if st, ok := statOf(fi); ok {
		fp = st.String()
	}
	return &blobReader{ctx: ctx, s: s, f: f, fi: fi, fp: fp, want: h, h: sha256.New()}, fi.Size(), nil
}

// blobReader verifies a blob as it is read.
type blobReader struct {
	ctx  context.Context
	s    *Dir
	f    *os.File
	fi   fs.FileInfo
	fp   string // fingerprint at open; "" if none
	want v1.Hash
	h    hash.Hash
	err  error // sticky verification error
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read blob %s: %w", b.want, err)
	}
	n, err := b.f.Read(p)
	b.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := sum(b.h); got != b.want {
			b.err = fmt.Errorf("read blob %s: %w: content is %s", b.want, ErrCorrupt, got)
			if rerr := b.removeCorrupt(); rerr != nil {
				b.err = fmt.Errorf("%w (and removing it failed: %w)", b.err, rerr)
			}
			return n, b.err
		}
		// Checked in full: a later Verified can skip the hash, unless
		// the file was replaced or written while it was read.
		if b.s.beforeEndCheck != nil {
			b.s.beforeEndCheck(b.f.Name())
		}
		if now, ok := fingerprintOf(b.f.Name()); ok && b.fp != "" && now == b.fp {
			if serr := b.s.writeStamp(b.want, now); serr != nil {
				return n, serr
			}
		}
	} else if err != nil {
		err = fmt.Errorf("read blob %s: %w", b.want, err)
	}
	return n, err
}

// removeCorrupt deletes the blob this reader opened, unless the name now
// holds another file: a concurrent Put may already have replaced it with
// good content, which must not be deleted.
func (b *blobReader) removeCorrupt() error {
	path := b.f.Name()
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !os.SameFile(fi, b.fi) {
		return nil
	}
	b.s.dropStamp(b.want)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (b *blobReader) Close() error { return b.f.Close() }

// trustedReader reads a blob whose stamp vouches for it.
type trustedReader struct {
	ctx  context.Context
	f    *os.File
	want v1.Hash
}

func (t *trustedReader) Read(p []byte) (int, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read blob %s: %w", t.want, err)
	}
	n, err := t.f.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("read blob %s: %w", t.want, err)
	}
	return n, err
}

func (t *trustedReader) Close() error { return t.f.Close() }

// Verify re-hashes blob h in full, whatever its stamp says. A corrupt blob
// is deleted and the error wraps ErrCorrupt; a missing one gives an
// fs.ErrNotExist error.
func (s *Dir) Verify(ctx context.Context, h v1.Hash) error {
	s.dropStamp(h)
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		return fmt.Errorf("verify blob: %w", err)
	}
	defer rc.Close()
	if _, err := ctxio.Copy(ctx, io.Discard, rc); err != nil {
		return fmt.Errorf("verify blob: %w", err)
	}
	return nil
}
