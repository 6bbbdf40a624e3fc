package cas

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
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

func TestLink(t *testing.T) {
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

	// Wrong digest or size: nothing appears, nothing is left behind.
	if err := s.Link(ctx, digest([]byte("other")), int64(len(data)), src); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Errorf("wrong digest: %v", err)
	}
	if err := s.Link(ctx, h, 3, src); err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Errorf("wrong size: %v", err)
	}
	if err := s.Link(ctx, h, 1, dir+"/missing"); err == nil || errors.Is(err, ErrNotLinkable) {
		t.Errorf("a missing file must be an error, not a fall-back to copying: %v", err)
	}
	if entries, _ := os.ReadDir(dir + "/store/blobs/sha256"); len(entries) != 0 {
		t.Errorf("failed links left %d files", len(entries))
	}

	if err := s.Link(ctx, h, int64(len(data)), src); err != nil {
		t.Fatal(err)
	}
	si, _ := os.Stat(src)
	bi, _ := os.Stat(s.Path(h))
	if !os.SameFile(si, bi) {
		t.Error("the blob is not a hard link of the source")
	}
	if runtime.GOOS == "linux" && !s.Verified(h) {
		t.Error("a linked, checked blob is not Verified")
	}
	// The source written in place: the shared file no longer vouches for
	// itself, and reading it fails rather than serving the change.
	f, _ := os.OpenFile(src, os.O_RDWR, 0)
	f.WriteAt([]byte{'Z'}, 7)
	f.Close()
	if s.Verified(h) {
		t.Fatal("a blob whose source was written is still Verified")
	}
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("reading a changed linked blob: %v", err)
	}
	rc.Close()
}
