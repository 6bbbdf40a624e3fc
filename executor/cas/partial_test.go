package cas

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPartialResume: a download interrupted half way keeps its bytes; the
// next Resume starts at that offset, and Commit takes the blob only when
// every byte hashes to the digest. A tampered partial file is refused and
// removed; a second writer is told the download is busy.
func TestPartialResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	size := int64(len(data))

	p, err := s.Resume(ctx, h, size)
	if err != nil || p.Offset() != 0 {
		t.Fatalf("resume: %v offset %d", err, p.Offset())
	}
	if _, err := s.Resume(ctx, h, size); !errors.Is(err, ErrBusy) {
		t.Errorf("second writer: err = %v, want ErrBusy", err)
	}
	if _, err := p.Write(data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	p.Close() // interrupted
	if ok, _ := s.Has(h); ok {
		t.Fatal("a partial download is a blob")
	}

	p, err = s.Resume(ctx, h, size)
	if err != nil || p.Offset() != 1<<20 {
		t.Fatalf("resume: %v offset %d, want %d", err, p.Offset(), 1<<20)
	}
	if _, err := p.ReadFrom(bytes.NewReader(data[p.Offset():])); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte{0}); err == nil {
		t.Error("a byte past the size was taken")
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if ok, n := s.Has(h); !ok || n != size {
		t.Fatalf("after commit: has %v %d", ok, n)
	}
	if err := s.Verify(ctx, h); err != nil {
		t.Fatal(err)
	}

	// A partial file whose bytes are not the blob's: refused at Commit,
	// removed, nothing stored.
	data2 := append([]byte(nil), data...)
	data2[0] ^= 1
	sum2 := sha256.Sum256(append([]byte("other"), data...))
	h2 := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum2[:])}
	if err := os.WriteFile(filepath.Join(s.Root(), "partial", h2.Hex), data2[:2<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	p, err = s.Resume(ctx, h2, size)
	if err != nil || p.Offset() != 2<<20 {
		t.Fatalf("resume tampered: %v", err)
	}
	p.ReadFrom(bytes.NewReader(data2[2<<20:]))
	if err := p.Commit(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("tampered commit: err = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "partial", h2.Hex)); !os.IsNotExist(err) {
		t.Errorf("tampered partial file kept: %v", err)
	}
	if ok, _ := s.Has(h2); ok {
		t.Error("tampered blob stored")
	}

	// A partial file longer than the blob starts over.
	if err := os.WriteFile(filepath.Join(s.Root(), "partial", h2.Hex), make([]byte, size+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = s.Resume(ctx, h2, size); err != nil || p.Offset() != 0 {
		t.Errorf("oversized partial: %v offset %d", err, p.Offset())
	}
	p.Close()
}
