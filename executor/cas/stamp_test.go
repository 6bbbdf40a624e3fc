package cas

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestStamps(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("fingerprints are Linux-only; elsewhere blobs are always hashed")
	}
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("bale"), 1000)
	h := digest(data)
	if s.Verified(h) {
		t.Fatal("a missing blob is Verified")
	}
	if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// Not durable yet, so not stamped: a crash could still take its bytes.
	if s.Verified(h) {
		t.Fatal("a blob not yet synced is Verified")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if !s.Verified(h) {
		t.Fatal("a blob put, checked and synced is not Verified")
	}

	// A write in place, even with the modification time set back, moves
	// the change time: the blob must be hashed again.
	path := s.Path(h)
	fi, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt([]byte{'X'}, 10)
	f.Close()
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if s.Verified(h) {
		t.Fatal("a blob written in place is still Verified")
	}
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err == nil {
		t.Fatal("the corrupt blob read without error")
	}
	rc.Close()
	if s.Verified(h) {
		t.Fatal("a corrupt blob became Verified")
	}

	// Put it back; a full verifying read stamps it again after the stamp
	// was lost.
	if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	os.Remove(s.stampPath(h))
	if s.Verified(h) {
		t.Fatal("Verified without a stamp")
	}
	if err := s.Verify(ctx, h); err != nil {
		t.Fatal(err)
	}
	if !s.Verified(h) {
		t.Fatal("a full read did not stamp the blob")
	}

	// A garbage stamp is only a miss.
	os.WriteFile(s.stampPath(h), []byte("garbage"), 0o644)
	if s.Verified(h) {
		t.Fatal("a garbage stamp vouched for a blob")
	}
	if s.Verified(v1.Hash{Algorithm: "sha256", Hex: "../../etc/passwd"}) {
		t.Fatal("a hostile digest is Verified")
	}
}

// TestPutFile: a local file enters the store as a copy (or clone), never
// a shared inode; a byte flipped in the store leaves the source as it was.
func TestPutFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir + "/store")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("layer"), 4096)
	src := dir + "/src"
	os.WriteFile(src, data, 0o644)
	h := digest(data)

	// Wrong digest or size, or no file: nothing appears, nothing is left.
	for _, tc := range []struct {
		name string
		h    v1.Hash
		size int64
		path string
		want string
	}{
		{"wrong digest", digest([]byte("other")), int64(len(data)), src, "digest mismatch"},
		{"short", h, 3, src, "size mismatch"},
		{"long", h, int64(len(data)) + 1, src, "size mismatch"},
		{"missing", h, 1, dir + "/missing", "no such file"},
		{"directory", h, 1, dir, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.PutFile(ctx, tc.h, tc.size, tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir + "/store/blobs/sha256"); len(entries) != 0 {
				t.Errorf("a failed put left %d files", len(entries))
			}
		})
	}

	if err := s.PutFile(ctx, h, int64(len(data)), src); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	si, _ := os.Stat(src)
	bi, _ := os.Stat(s.Path(h))
	if os.SameFile(si, bi) {
		t.Fatal("the blob shares the source's inode")
	}
	if runtime.GOOS == "linux" && !s.Verified(h) {
		t.Error("a blob put and checked is not Verified")
	}
	// A byte flipped in the store: the source is untouched, and the store
	// catches its own corruption.
	f, _ := os.OpenFile(s.Path(h), os.O_RDWR, 0)
	f.WriteAt([]byte{'Z'}, 7)
	f.Close()
	if got, _ := os.ReadFile(src); !bytes.Equal(got, data) {
		t.Fatal("a write to the store changed the user's source")
	}
	if s.Verified(h) {
		t.Fatal("a blob written in place is still Verified")
	}
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("reading a changed blob: %v", err)
	}
	rc.Close()
}

// TestCopyTo: a copy out of the store is checked as written, shares no
// inode, and a corrupt blob fails the copy and is evicted.
func TestCopyTo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	data := bytes.Repeat([]byte("pack"), 10000)
	h := digest(data)
	if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	f, _ := os.Create(out)
	if err := s.CopyTo(ctx, h, int64(len(data)), f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("copy differs")
	}
	oi, _ := os.Stat(out)
	bi, _ := os.Stat(s.Path(h))
	if os.SameFile(oi, bi) {
		t.Fatal("the copy shares the blob's inode")
	}
	// Corrupt under an unchanged stamp (as below the file system): CopyTo
	// does not trust the stamp, it hashes what it writes.
	if runtime.GOOS == "linux" {
		flipKeepStamp(t, s, h, 5)
		if !s.Verified(h) {
			t.Fatal("test setup: stamp no longer vouches")
		}
	} else {
		flip(t, s, h, 5)
	}
	f2, _ := os.Create(out + "2")
	defer f2.Close()
	err := s.CopyTo(ctx, h, int64(len(data)), f2)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("copy of a corrupt blob: %v", err)
	}
	if ok, _ := s.Has(h); ok {
		t.Error("the corrupt blob is still in the store")
	}
	if err := s.CopyTo(ctx, h, int64(len(data)), f2); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("copy of a missing blob: %v", err)
	}
}

// flipKeepStamp corrupts a blob and rewrites its stamp to match, as
// corruption below the file system would leave it: the stamp vouches for
// bytes that are no longer there.
func flipKeepStamp(t *testing.T, s *Dir, h v1.Hash, off int) {
	t.Helper()
	flip(t, s, h, off)
	fp, ok := fingerprintOf(s.Path(h))
	if !ok {
		t.Fatal("no fingerprint")
	}
	if err := s.writeStamp(h, fp); err != nil {
		t.Fatal(err)
	}
}

// TestStampRaces: a write landing between a check and its stamp must
// never be stamped as checked (issue 7 point 14).
func TestStampRaces(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("fingerprints are Linux-only")
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("race"), 5000)
	h := digest(data)
	// scribble writes one byte in place after the coarse clock has
	// moved, as another process holding the file open would.
	scribble := func(path string) {
		time.Sleep(20 * time.Millisecond)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteAt([]byte{'!'}, 3)
		f.Close()
	}
	t.Run("put", func(t *testing.T) {
		s := newStore(t)
		s.afterCommit = scribble
		if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if s.Verified(h) {
			t.Fatal("a blob written between its hash and its stamp is Verified")
		}
		if _, err := readBlob(t, s, h); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read: %v", err)
		}
	})
	t.Run("writer", func(t *testing.T) {
		s := newStore(t)
		s.afterCommit = scribble
		w, err := s.Writer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if _, _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if s.Verified(h) {
			t.Fatal("a blob written between its hash and its stamp is Verified")
		}
	})
	t.Run("read", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		s.dropStamp(h)
		// The bytes are read and hash right; the file changes before
		// the reader's end check.
		s.beforeEndCheck = scribble
		if _, err := readBlob(t, s, h); err != nil {
			t.Fatal(err)
		}
		if s.Verified(h) {
			t.Fatal("a blob written during its verifying read is Verified")
		}
		s.beforeEndCheck = nil
		if _, err := readBlob(t, s, h); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read: %v", err)
		}
	})
}

// TestFreshBlobsTrusted: a blob this store hashed as it wrote it is read
// back without a second hash until Sync stamps it (a cold build reads
// every fetched blob into its pack), but only while its file is the one
// committed: a write in place, even one whose modification time is set
// back, makes the next read hash it and find it corrupt.
func TestFreshBlobsTrusted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := []byte("fresh blob content")
	h := digest(data)
	s := newStore(t)
	if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if s.Verified(h) {
		t.Fatal("stamped before Sync")
	}
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rc.(*trustedReader); !ok {
		t.Errorf("a blob this store just wrote is read through %T, hashing it again", rc)
	}
	rc.Close()

	// Another store on the same root did not write it: it hashes.
	other, err := Open(s.root)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err = other.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rc.(*blobReader); !ok {
		t.Errorf("another store reads an unstamped blob through %T", rc)
	}
	rc.Close()

	// A write in place, modification time set back.
	path := s.blobPath(h)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("F"), 0)
	f.Close()
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(t, s, h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a fresh blob written in place: %v", err)
	}

	// Sync ends the trust by freshness; stamps take over.
	if err := s.Put(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(s.fresh) != 0 || !s.Verified(h) {
		t.Errorf("after Sync: %d fresh, verified %v", len(s.fresh), s.Verified(h))
	}
}
