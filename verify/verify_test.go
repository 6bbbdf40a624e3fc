package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/bale-build/bale/archive"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// gzipTar writes a gzip'd tar from fn's writes.
func gzipTar(t *testing.T, fn func(tw *tar.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := archive.NewGzipWriter(&buf, gzip.BestSpeed, epoch)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	fn(tw)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func write(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pack.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// failsWith checks the report has a failure of check whose detail holds
// want.
func failsWith(t *testing.T, rep *Report, check, want string) {
	t.Helper()
	for _, f := range rep.Failures {
		if f.Check == check && strings.Contains(f.Detail, want) {
			return
		}
	}
	t.Errorf("no %s failure containing %q in %v", check, want, rep.Err())
}

func TestHostileArchives(t *testing.T) {
	t.Run("gzip bomb", func(t *testing.T) {
		// 64 MiB of zeros in one entry compresses to about 64 KiB; the
		// limit stops it long before it is all inflated.
		var buf bytes.Buffer
		zw, _ := archive.NewGzipWriter(&buf, gzip.BestCompression, epoch)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Size: 64 << 20, Mode: 0o644, ModTime: epoch})
		zero := make([]byte, 1<<20)
		for range 64 {
			tw.Write(zero)
		}
		tw.Close()
		zw.Close()
		if buf.Len() > 1<<20 {
			t.Fatalf("bomb is %d bytes", buf.Len())
		}
		rep, err := PackLimits(context.Background(), write(t, buf.Bytes()), archive.Limits{MaxTotalSize: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		failsWith(t, rep, CheckArchive, "limit")
	})
	t.Run("gzip of endless zeros", func(t *testing.T) {
		// Not even a tar header: zero blocks inflate past the limit.
		var buf bytes.Buffer
		zw, _ := archive.NewGzipWriter(&buf, gzip.BestCompression, epoch)
		zero := make([]byte, 1<<20)
		for range 32 {
			zw.Write(zero)
		}
		zw.Close()
		rep, err := PackLimits(context.Background(), write(t, buf.Bytes()), archive.Limits{MaxTotalSize: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		failsWith(t, rep, CheckArchive, "limit")
	})
	t.Run("100000 entries", func(t *testing.T) {
		data := gzipTar(t, func(tw *tar.Writer) {
			for i := range 100_000 {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%06d", i), Mode: 0o644, ModTime: epoch})
			}
		})
		start := time.Now()
		rep, err := Pack(context.Background(), write(t, data))
		if err != nil {
			t.Fatal(err)
		}
		failsWith(t, rep, CheckArchive, "more than 10000 entries")
		if len(rep.Failures) > maxFailures+1 {
			t.Errorf("%d failures recorded", len(rep.Failures))
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v", d)
		}
	})
	for _, name := range []string{"../escape", "/etc/passwd", "a/../../b"} {
		t.Run("name "+name, func(t *testing.T) {
			data := gzipTar(t, func(tw *tar.Writer) {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 1, Mode: 0o644, ModTime: epoch})
				tw.Write([]byte("x"))
			})
			p := write(t, data)
			rep, err := Pack(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			failsWith(t, rep, CheckArchive, "unsafe archive entry")
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "..", "escape")); err == nil {
				t.Error("verify wrote a file")
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		data := gzipTar(t, func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/etc/passwd", Mode: 0o777, ModTime: epoch})
		})
		rep, _ := Pack(context.Background(), write(t, data))
		failsWith(t, rep, CheckArchive, "link")
	})
	t.Run("not gzip", func(t *testing.T) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.Close()
		rep, _ := Pack(context.Background(), write(t, buf.Bytes()))
		failsWith(t, rep, CheckGzip, "not a gzip stream")
		failsWith(t, rep, CheckIndex, "missing")
	})
	t.Run("empty file", func(t *testing.T) {
		rep, err := Pack(context.Background(), write(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Fatal("empty file passed")
		}
	})
	t.Run("trailing data", func(t *testing.T) {
		data := gzipTar(t, func(tw *tar.Writer) {})
		rep, _ := Pack(context.Background(), write(t, append(data, "junk"...)))
		failsWith(t, rep, CheckArchive, "trailing data")
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Pack(context.Background(), filepath.Join(t.TempDir(), "nope.tar"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		data := gzipTar(t, func(tw *tar.Writer) {})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Pack(ctx, write(t, data)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestReportErr(t *testing.T) {
	rep := &Report{Path: "p", Checks: []string{CheckArchive}, Failures: []Failure{{Entry: "a", Check: CheckBlobs, Detail: "bad"}}}
	if rep.OK() || !strings.Contains(rep.Err().Error(), "blobs: a: bad") {
		t.Fatalf("report %v", rep.Err())
	}
}
