package cas

import (
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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
