package cas

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/executor/atomicfile"
	"github.com/bale-build/bale/internal/ctxio"
)

// Stamps let a blob that was verified once be trusted again without
// reading it, as git's index and Bazel's digest cache do. When a blob's
// bytes have been checked against its digest (written by Put or a
// BlobWriter, or read to the end through Open), the store records the
// file's fingerprint: device, inode, size, and modification and change
// times in nanoseconds. Verified compares the fingerprint with the file as
// it is now. Any write to the file, through any hard link, moves its change
// time, which no user-level tool can set back, so a flipped byte always
// fails the comparison and the blob is hashed in full again.
//
// A stamp is a hint, never a source of truth: a missing, torn or stale
// stamp only means the blob is hashed again.

func (s *Store) stampPath(h v1.Hash) string { return filepath.Join(s.stamps, h.Hex) }

// MarkVerified records that blob h, as it is on disk now, has been checked
// against its digest. Only call it right after such a check.
func (s *Store) MarkVerified(h v1.Hash) error {
	if err := checkHash(h); err != nil {
		return fmt.Errorf("stamp blob: %w", err)
	}
	fp, ok := fingerprintOf(s.blobPath(h))
	if !ok {
		return nil // no fingerprint on this platform: always re-hash
	}
	tmp, err := os.CreateTemp(s.stamps, ".stamp-")
	if err != nil {
		return fmt.Errorf("stamp blob %s: %w", h, err)
	}
	_, werr := tmp.WriteString(fp)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), s.stampPath(h))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("stamp blob %s: %w", h, werr)
	}
	return nil
}

// Verified reports whether blob h is unchanged since it was last checked.
// False means only that it must be hashed to be trusted.
func (s *Store) Verified(h v1.Hash) bool {
	if checkHash(h) != nil {
		return false
	}
	want, err := os.ReadFile(s.stampPath(h))
	if err != nil {
		return false
	}
	got, ok := fingerprintOf(s.blobPath(h))
	return ok && got == string(want)
}

// dropStamp forgets blob h's stamp.
func (s *Store) dropStamp(h v1.Hash) { _ = os.Remove(s.stampPath(h)) }

// ErrNotLinkable is returned by Link when the file cannot be hard-linked
// into the store (another file system, a file the kernel's link
// protection guards); the caller copies it instead.
var ErrNotLinkable = errors.New("cannot be linked into the store")

// Link stores blob want by hard-linking the file at path into the store,
// and verifies the linked bytes (digest and size) before the blob appears
// under its name. It costs one read and no write, where Put costs a read
// and a write of every byte.
//
// The store then shares the file with its source. A later write to either
// moves the file's change time, so the stamp no longer vouches for it and
// the next read hashes it in full: a changed source is caught, never
// shipped (and, being changed at the source too, cannot be fetched again).
func (s *Store) Link(ctx context.Context, want v1.Hash, size int64, path string) error {
	if err := checkHash(want); err != nil {
		return fmt.Errorf("link blob: %w", err)
	}
	if ok, n := s.Has(want); ok && (size < 0 || n == size) {
		return nil
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("link blob %s: %w", want, err)
	}
	tmp := filepath.Join(s.blobs, ".link-"+hex.EncodeToString(rnd[:]))
	if err := os.Link(path, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("link blob %s from %s: %w", want, path, err)
		}
		return fmt.Errorf("link blob %s from %s: %w: %v", want, path, ErrNotLinkable, err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.Remove(tmp)
		}
	}()
	f, err := os.Open(tmp)
	if err != nil {
		return fmt.Errorf("link blob %s: %w", want, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("link blob %s: %s is not a regular file", want, path)
	}
	h := sha256.New()
	n, err := ctxio.Copy(ctx, h, f)
	if err != nil {
		return fmt.Errorf("link blob %s: %w", want, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("link blob %s: size mismatch: %s is %d bytes, expected %d", want, path, n, size)
	}
	if got := sum(h); got != want {
		return fmt.Errorf("link blob %s: digest mismatch: %s is %s", want, path, got)
	}
	// The source may have been written just now: make its bytes durable
	// before the store names them.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("link blob %s: %w", want, err)
	}
	if err := os.Rename(tmp, s.blobPath(want)); err != nil {
		return fmt.Errorf("link blob %s: %w", want, err)
	}
	keep = true
	if err := atomicfile.SyncDir(s.blobs); err != nil {
		return fmt.Errorf("link blob %s: %w", want, err)
	}
	return s.MarkVerified(want)
}
