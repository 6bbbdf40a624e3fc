package cas

import (
	"fmt"
	"io/fs"
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

func (s *Dir) stampPath(h v1.Hash) string { return filepath.Join(s.stamps, h.Hex) }

// writeStamp records fp as blob h's fingerprint when it was last checked
// against its digest. fp is the fingerprint the check itself compared, never
// one read again afterwards: a write landing after the comparison must not
// be stamped as checked.
func (s *Dir) writeStamp(h v1.Hash, fp string) error {
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

// stampWritten stamps blob h after this process wrote it and renamed it
// into place. written is the temporary file's status after the last write.
// The blob is stamped only if the file under h's name is still that file,
// with the same size and modification time: a write landing between the
// hash and the stamp (through another process's descriptor) leaves it
// unstamped, so its next read hashes it in full. The stamp holds the
// status just compared, so a write after the comparison moves the change
// time away from it.
func (s *Dir) stampWritten(h v1.Hash, written fs.FileInfo) error {
	before, ok := statOf(written)
	if !ok {
		return nil // no fingerprint on this platform: always re-hash
	}
	now, ok := lstatOf(s.blobPath(h))
	if !ok || !before.sameContent(now) {
		s.dropStamp(h)
		return nil
	}
	return s.writeStamp(h, now.String())
}

// Verified reports whether blob h is unchanged since it was last checked.
// False means only that it must be hashed to be trusted.
func (s *Dir) Verified(h v1.Hash) bool {
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

// dropStamp forgets blob h's stamp, and that this store wrote it fresh.
func (s *Dir) dropStamp(h v1.Hash) {
	s.mu.Lock()
	delete(s.fresh, h.Hex)
	s.mu.Unlock()
	_ = os.Remove(s.stampPath(h))
}
