package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/atomicfile"
)

// The store never shares an inode with a file outside it, in either
// direction: a byte flipped in the store must not change a user's source
// or output, and a user editing an output must not change the store. Files
// cross the boundary by reflink where the file system can (a clone shares
// blocks copy-on-write, never the inode) and by copy elsewhere; either way
// the bytes that land are hashed once, as they are written or read back
// from the clone, and that hash is the verification.

// PutFile stores the regular file at path as blob want, size bytes long
// (negative: unknown). The store's copy is a reflink of the file where the
// file system supports it, else a copy; the copy is hashed as it is made,
// so the source is read once, and a mismatch names path and leaves nothing
// behind. If the blob is already present with that size, PutFile does not
// open path.
func (s *Dir) PutFile(ctx context.Context, want v1.Hash, size int64, path string) error {
	if err := checkHash(want); err != nil {
		return fmt.Errorf("put blob from %s: %w", path, err)
	}
	if ok, n := s.Has(want); ok && (size < 0 || n == size) {
		return nil
	}
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("put blob %s: %w", want, err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("put blob %s: %s is not a regular file", want, path)
	}
	f, err := atomicfile.Create(s.blobPath(want))
	if err != nil {
		return fmt.Errorf("put blob %s: %w", want, err)
	}
	defer f.Abort()
	got, n, err := copyHashed(ctx, f.OSFile(), src, size)
	if err != nil {
		return fmt.Errorf("put blob %s from %s: %w", want, path, err)
	}
	if err := checkContent(want, size, got, n, path); err != nil {
		return fmt.Errorf("put blob %s: %w", want, err)
	}
	return s.commit(f, want)
}

// CopyTo writes blob h, size bytes long, into dst, a new empty file outside
// the store, by reflink or copy, and checks the bytes dst received against h
// as they are written (or read back from the clone). The blob's stamp is
// not consulted: what is checked is what dst holds now. If the bytes do not
// match, the blob is hashed again in full and deleted if corrupt, and the
// error wraps ErrCorrupt; a missing blob gives an fs.ErrNotExist error.
func (s *Dir) CopyTo(ctx context.Context, h v1.Hash, size int64, dst *os.File) error {
	if err := checkHash(h); err != nil {
		return fmt.Errorf("copy blob: %w", err)
	}
	src, err := os.Open(s.blobPath(h))
	if err != nil {
		return fmt.Errorf("copy blob %s: %w", h, err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("copy blob %s: not a regular file: %w", h, fs.ErrNotExist)
	}
	got, n, err := copyHashed(ctx, dst, src, size)
	if err != nil {
		return fmt.Errorf("copy blob %s: %w", h, err)
	}
	if cerr := checkContent(h, size, got, n, "the copy"); cerr != nil {
		verr := s.Verify(ctx, h)
		if verr == nil {
			// The store's blob is sound now: it changed while being
			// copied. Still report it as corrupt so the caller tries again.
			verr = fmt.Errorf("%w: blob changed while being copied", ErrCorrupt)
		}
		return fmt.Errorf("copy blob %s: %w (%w)", h, cerr, verr)
	}
	return nil
}

// copyHashed fills dst, a new empty file, with src's content and returns
// the sha256 and length of what dst holds. It reads at most limit+1 bytes
// (limit negative: no limit), enough to see the content is too long.
//
// A reflink costs no write; its bytes are then read back once to hash them,
// which checks the clone itself. Otherwise the bytes are hashed on their
// way through memory, which checks exactly what was written: either way
// one read of the content.
func copyHashed(ctx context.Context, dst, src *os.File, limit int64) (v1.Hash, int64, error) {
	max := int64(math.MaxInt64)
	if limit >= 0 && limit < math.MaxInt64 {
		max = limit + 1
	}
	h := sha256.New()
	if clone(dst, src) {
		n, err := copyBuf(ctx, h, io.NewSectionReader(dst, 0, max))
		if err != nil {
			return v1.Hash{}, 0, fmt.Errorf("read back the clone: %w", err)
		}
		if _, err := dst.Seek(0, io.SeekEnd); err != nil {
			return v1.Hash{}, 0, err
		}
		return sum(h), n, nil
	}
	n, err := copyBuf(ctx, io.MultiWriter(dst, h), io.LimitReader(src, max))
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return v1.Hash{}, 0, err
		}
		return v1.Hash{}, 0, fmt.Errorf("copy: %w", err)
	}
	return sum(h), n, nil
}
