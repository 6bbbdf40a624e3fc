package cas

import (
	"bytes"
	"context"
	"io"
	"os"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestStamps(t *testing.T) {
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
	if !s.Verified(h) {
		t.Fatal("a blob just put and checked is not Verified")
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
