package capread

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadAll(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		max  int64
		err  bool
		want string
	}{
		{"", 0, false, ""},
		{"abc", 3, false, "abc"},
		{"abcd", 3, true, ""},
		{"a", 0, true, ""},
		{"abc", -1, true, ""},
	} {
		got, err := ReadAll(strings.NewReader(tc.in), tc.max)
		if tc.err {
			if !errors.Is(err, ErrTooLarge) || got != nil {
				t.Errorf("ReadAll(%q, %d) = %q, %v; want ErrTooLarge", tc.in, tc.max, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("ReadAll(%q, %d) = %q, %v", tc.in, tc.max, got, err)
		}
	}
}

func TestReadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(file, 5); err != nil || string(b) != "hello" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := ReadFile(file, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), file) {
		t.Errorf("ReadFile over the cap: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// A FIFO with no writer would block an open for reading for ever.
	if _, err := ReadFile(fifo, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile(FIFO) = %v", err)
	}
	if _, err := ReadFile(dir, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile(dir) = %v", err)
	}
	if _, err := ReadFile("/dev/zero", 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile(/dev/zero) = %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(link, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile(link to /dev/zero) = %v", err)
	}
}

// TestOpen: Open, for streaming, refuses what ReadFile refuses, before
// opening it for reading, and opens a regular file.
func TestOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(file)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, p := range []string{fifo, dir, "/dev/zero"} {
		if f, err := Open(p); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%s) = %v", p, err)
		}
	}
}
