package cas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func digest(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func newStore(t *testing.T) *Dir {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "cas"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readBlob(t *testing.T, s *Dir, h v1.Hash) ([]byte, error) {
	t.Helper()
	rc, _, err := s.Open(context.Background(), h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// blobDirNames lists the blob directory, temporary files included.
func blobDirNames(t *testing.T, s *Dir) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(s.Root(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestOpenCreatesLayout(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for _, dir := range []string{"blobs/sha256", "ac"} {
		if fi, err := os.Stat(filepath.Join(s.Root(), dir)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", dir, err)
		}
	}
	// Opening again is fine.
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
}

func TestPutOpenRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		content   []byte
		knownSize bool
	}{
		{"empty", nil, true},
		{"small", []byte("hello\n"), true},
		{"small, size unknown", []byte("hello\n"), false},
		{"1 MiB", bytes.Repeat([]byte("0123456789abcdef"), 1<<16), true},
		{"1 MiB, size unknown", bytes.Repeat([]byte("fedcba9876543210"), 1<<16), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			h := digest(tt.content)
			size := int64(-1)
			if tt.knownSize {
				size = int64(len(tt.content))
			}
			if err := s.Put(context.Background(), h, size, bytes.NewReader(tt.content)); err != nil {
				t.Fatal(err)
			}
			if ok, n := s.Has(h); !ok || n != int64(len(tt.content)) {
				t.Fatalf("Has = %v, %d", ok, n)
			}
			rc, n, err := s.Open(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if cerr := rc.Close(); cerr != nil {
				t.Error(cerr)
			}
			if err != nil || !bytes.Equal(got, tt.content) || n != int64(len(tt.content)) {
				t.Fatalf("Open: %d bytes (size %d), %v", len(got), n, err)
			}
			if s.Path(h) != filepath.Join(s.Root(), "blobs", "sha256", h.Hex) {
				t.Errorf("Path = %q", s.Path(h))
			}
			fi, err := os.Stat(s.Path(h))
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("blob file: %v, %v", fi, err)
			}
			if err := s.Verify(context.Background(), h); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if names := blobDirNames(t, s); len(names) != 1 {
				t.Errorf("blob dir holds %q, want the blob only", names)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestPutRejects(t *testing.T) {
	t.Parallel()
	content := []byte("the real content\n")
	h := digest(content)
	other := digest([]byte("something else"))
	diskErr := errors.New("disk on fire")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		want v1.Hash
		size int64
		r    io.Reader
		is   error
		msg  []string
	}{
		{"wrong digest", context.Background(), other, -1, bytes.NewReader(content), nil,
			[]string{"put blob " + other.String(), "digest mismatch", "content is " + h.String()}},
		{"wrong digest, right size", context.Background(), other, int64(len(content)), bytes.NewReader(content), nil,
			[]string{other.String(), h.String()}},
		{"shorter than size", context.Background(), h, int64(len(content)) + 1, bytes.NewReader(content), nil,
			[]string{h.String(), "size mismatch: content is 17 bytes, expected 18"}},
		{"longer than size", context.Background(), h, int64(len(content)) - 1, bytes.NewReader(content), nil,
			[]string{h.String(), "size mismatch: content is longer than the expected 16 bytes"}},
		{"largest declared size", context.Background(), h, math.MaxInt64, bytes.NewReader(content), nil,
			[]string{h.String(), "size mismatch: content is 17 bytes, expected 9223372036854775807"}},
		{"reader fails", context.Background(), h, -1, io.MultiReader(bytes.NewReader(content[:3]), errReader{diskErr}), diskErr,
			[]string{h.String()}},
		{"cancelled", cancelled, h, -1, bytes.NewReader(content), context.Canceled,
			[]string{h.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			err := s.Put(tt.ctx, tt.want, tt.size, tt.r)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if names := blobDirNames(t, s); len(names) != 0 {
				t.Errorf("failed Put left %q", names)
			}
		})
	}
}

func TestPutIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	content := []byte("blob\n")
	h := digest(content)
	ctx := context.Background()
	if err := s.Put(ctx, h, int64(len(content)), bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	// Present: r is not read at all, with the size known or not.
	unreadable := errReader{errors.New("must not be read")}
	for _, size := range []int64{int64(len(content)), -1} {
		if err := s.Put(ctx, h, size, unreadable); err != nil {
			t.Fatalf("Put of present blob (size %d): %v", size, err)
		}
	}
	// Present with the wrong size (a truncated blob): rewritten from r.
	if err := os.WriteFile(s.Path(h), content[:2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, h, int64(len(content)), bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if got, err := readBlob(t, s, h); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("after repair: %q, %v", got, err)
	}
}

// flip corrupts one byte of a stored blob in place, keeping its size.
func flip(t *testing.T, s *Dir, h v1.Hash, off int) {
	t.Helper()
	b, err := os.ReadFile(s.Path(h))
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x01
	if err := os.WriteFile(s.Path(h), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDetectsCorruption(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	content := bytes.Repeat([]byte("layer data "), 10000)
	h := digest(content)
	ctx := context.Background()
	if err := s.Put(ctx, h, -1, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	flip(t, s, h, 5000)
	rc, n, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), h.String()) {
		t.Fatalf("read corrupt blob: err = %v, want ErrCorrupt naming %s", err, h)
	}
	if int64(len(got)) != n {
		t.Errorf("read %d of %d bytes before the error; the error belongs at EOF", len(got), n)
	}
	if ok, _ := s.Has(h); ok {
		t.Fatal("corrupt blob still present")
	}
	// The next build puts it again.
	if err := s.Put(ctx, h, -1, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx, h); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptReaderSparesReplacement(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	content := []byte("good content\n")
	h := digest(content)
	ctx := context.Background()
	if err := s.Put(ctx, h, -1, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	flip(t, s, h, 0)
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// While the corrupt copy is open, another process replaces it with
	// good content (a new file, as Put's rename makes).
	good := filepath.Join(t.TempDir(), "good")
	if err := os.WriteFile(good, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(good, s.Path(h)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if err := s.Verify(ctx, h); err != nil {
		t.Fatalf("replacement was damaged: %v", err)
	}
}

func TestMissingBlob(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	h := digest([]byte("never stored"))
	if _, _, err := s.Open(context.Background(), h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open: %v, want fs.ErrNotExist", err)
	}
	if err := s.Verify(context.Background(), h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Verify: %v, want fs.ErrNotExist", err)
	}
	if ok, n := s.Has(h); ok || n != 0 {
		t.Errorf("Has = %v, %d", ok, n)
	}
}

func TestVerifyDeletesCorrupt(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	content := []byte("x")
	h := digest(content)
	if err := s.Put(context.Background(), h, 1, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	flip(t, s, h, 0)
	if err := s.Verify(context.Background(), h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(s.Path(h)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("corrupt blob still on disk: %v", err)
	}
}

func TestOpenHonoursContext(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	content := []byte("abc")
	h := digest(content)
	if err := s.Put(context.Background(), h, 3, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, _, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cancel()
	if _, err := rc.Read(make([]byte, 8)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v", err)
	}
}

func TestBlobWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("commit", func(t *testing.T) {
		s := newStore(t)
		w, err := s.Writer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		for _, part := range []string{"hello, ", "world\n"} {
			if _, err := io.WriteString(w, part); err != nil {
				t.Fatal(err)
			}
		}
		h, n, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if want := digest([]byte("hello, world\n")); h != want || n != 13 {
			t.Fatalf("Commit = %s, %d; want %s, 13", h, n, want)
		}
		if got, err := readBlob(t, s, h); err != nil || string(got) != "hello, world\n" {
			t.Fatalf("blob %q, %v", got, err)
		}
		if names := blobDirNames(t, s); len(names) != 1 || names[0] != h.Hex {
			t.Fatalf("blob dir %q", names)
		}
	})
	t.Run("abort", func(t *testing.T) {
		s := newStore(t)
		w, err := s.Writer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("discard me")); err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		if names := blobDirNames(t, s); len(names) != 0 {
			t.Fatalf("blob dir %q after Abort", names)
		}
		if _, _, err := w.Commit(); err == nil {
			t.Fatal("Commit after Abort succeeded")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		w, err := s.Writer(cctx)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		cancel()
		if _, err := w.Write([]byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write: %v", err)
		}
		if _, _, err := w.Commit(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Commit: %v", err)
		}
		if names := blobDirNames(t, s); len(names) != 0 {
			t.Fatalf("blob dir %q", names)
		}
	})
}

func TestConcurrentPut(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	content := bytes.Repeat([]byte("concurrent "), 100_000)
	h := digest(content)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			// Small reads so the writers overlap.
			errs[i] = s.Put(context.Background(), h, int64(len(content)), io.LimitReader(bytes.NewReader(content), int64(len(content))))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put %d: %v", i, err)
		}
	}
	if err := s.Verify(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if names := blobDirNames(t, s); len(names) != 1 {
		t.Fatalf("blob dir %q, want one blob and no temporary files", names)
	}
}

func hostileHashes() map[string]v1.Hash {
	valid := digest([]byte("x")).Hex
	return map[string]v1.Hash{
		"path traversal":     {Algorithm: "sha256", Hex: "../../x"},
		"traversal 64 chars": {Algorithm: "sha256", Hex: strings.Repeat("../", 20) + "etc/"},
		"slash in algorithm": {Algorithm: "sha256/../..", Hex: valid},
		"uppercase hex":      {Algorithm: "sha256", Hex: strings.ToUpper(valid)},
		"63 digits":          {Algorithm: "sha256", Hex: valid[:63]},
		"65 digits":          {Algorithm: "sha256", Hex: valid + "0"},
		"sha512":             {Algorithm: "sha512", Hex: valid + valid},
		"empty":              {},
		"NUL":                {Algorithm: "sha256", Hex: valid[:63] + "\x00"},
	}
}

func TestHostileHashes(t *testing.T) {
	t.Parallel()
	if _, err := v1.NewHash("sha256:../../x"); err == nil {
		t.Fatal("v1.NewHash accepted a traversal digest")
	}
	base := t.TempDir()
	s, err := Open(filepath.Join(base, "cas"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, h := range hostileHashes() {
		t.Run(name, func(t *testing.T) {
			if err := s.Put(ctx, h, 1, strings.NewReader("x")); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("Put: %v", err)
			}
			if _, _, err := s.Open(ctx, h); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("Open: %v", err)
			}
			if err := s.Verify(ctx, h); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("Verify: %v", err)
			}
			if ok, _ := s.Has(h); ok {
				t.Error("Has: true")
			}
			if p := s.Path(h); p != "" {
				t.Errorf("Path = %q", p)
			}
			if _, _, err := s.GetAction(context.Background(), h); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("GetAction: %v", err)
			}
			if err := s.PutAction(context.Background(), h, &ActionResult{}); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("PutAction: %v", err)
			}
			res := &ActionResult{Outputs: []Output{{Path: "out", Digest: h, Size: 1}}}
			if err := s.PutAction(context.Background(), digest([]byte("step")), res); !errors.Is(err, ErrInvalidDigest) {
				t.Errorf("PutAction with hostile output: %v", err)
			}
		})
	}
	// Nothing was created anywhere, inside the store or beside it.
	err = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			t.Errorf("file created: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUmask077 runs the store under a restrictive umask: files must still
// come out 0644, so the owner (and anyone packing them) can read them.
func TestUmask077(t *testing.T) {
	t.Run("umask 077", func(t *testing.T) {
		old := syscall.Umask(0o077)
		defer syscall.Umask(old)
		s := newStore(t)
		ctx := context.Background()
		content := []byte("private?\n")
		h := digest(content)
		if err := s.Put(ctx, h, -1, bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		w, err := s.Writer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("from writer")); err != nil {
			t.Fatal(err)
		}
		h2, _, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		step := digest([]byte("step"))
		if err := s.PutAction(context.Background(), step, &ActionResult{Outputs: []Output{{Path: "a", Digest: h, Size: int64(len(content))}}}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{s.Path(h), s.Path(h2), filepath.Join(s.Root(), "ac", step.Hex)} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("%s: mode %v, want 0644", p, fi.Mode())
			}
			if _, err := os.ReadFile(p); err != nil {
				t.Errorf("owner cannot read %s: %v", p, err)
			}
		}
		if got, err := readBlob(t, s, h); err != nil || !bytes.Equal(got, content) {
			t.Errorf("read back: %q, %v", got, err)
		}
		if _, ok, err := s.GetAction(context.Background(), step); !ok || err != nil {
			t.Errorf("GetAction: %v, %v", ok, err)
		}
	})
}
