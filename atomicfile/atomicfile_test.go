package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// entries lists a directory's names, to check no temporary file is left.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestCommit(t *testing.T) {
	tests := []struct {
		name     string
		existing string // content at the final name before, if any
	}{
		{"new file", ""},
		{"replaces existing", "old content that is longer\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.json")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, err := Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Name() != path {
				t.Errorf("Name() = %q, want %q", f.Name(), path)
			}
			if _, err := f.Write([]byte("new\n")); err != nil {
				t.Fatal(err)
			}
			// Before Commit the final name holds the old state only.
			if b, err := os.ReadFile(path); tt.existing == "" && !errors.Is(err, fs.ErrNotExist) || tt.existing != "" && string(b) != tt.existing {
				t.Fatalf("before commit: %q, %v", b, err)
			}
			tmp := entries(t, dir)
			if len(tmp) != 1+min(len(tt.existing), 1) {
				t.Fatalf("entries %q", tmp)
			}
			for _, n := range tmp {
				if n != "out.json" && !strings.HasPrefix(n, ".out.json.tmp-") {
					t.Errorf("temporary file %q, want .out.json.tmp-*", n)
				}
			}
			if err := f.Commit(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != "new\n" {
				t.Fatalf("after commit: %q, %v", b, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != Mode {
				t.Errorf("mode %v, want %v", fi.Mode(), Mode)
			}
			if got := entries(t, dir); len(got) != 1 {
				t.Errorf("entries after commit %q, want only out.json", got)
			}
			// Everything after Commit is a no-op or an error, never a change.
			if _, err := f.Write([]byte("late")); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Write after Commit: %v, want os.ErrClosed", err)
			}
			if err := f.Commit(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("second Commit: %v, want os.ErrClosed", err)
			}
			if err := f.Abort(); err != nil {
				t.Errorf("Abort after Commit: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != "new\n" {
				t.Errorf("file changed after commit: %q", b)
			}
		})
	}
}

func TestAbortAndClose(t *testing.T) {
	for _, how := range []string{"Abort", "Close"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out")
			f, err := Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("partial")); err != nil {
				t.Fatal(err)
			}
			if how == "Abort" {
				err = f.Abort()
			} else {
				err = f.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := entries(t, dir); len(got) != 0 {
				t.Fatalf("entries after %s: %q, want none", how, got)
			}
			if err := f.Commit(); !errors.Is(err, os.ErrClosed) {
				t.Fatalf("Commit after %s: %v, want os.ErrClosed", how, err)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("final name exists after %s and Commit: %v", how, err)
			}
		})
	}
}

func TestCommitAs(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "upload"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CommitAs(filepath.Join(t.TempDir(), "elsewhere")); err == nil {
		t.Fatal("CommitAs to another directory succeeded")
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.CommitAs(filepath.Join(dir, "named-later")); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != "named-later" {
		t.Fatalf("entries %q, want [named-later]", got)
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		filepath.Join(dir, "missing", "f"),
		dir + string(filepath.Separator),
	} {
		if f, err := Create(path); err == nil {
			_ = f.Abort()
			t.Errorf("Create(%q) succeeded", path)
		}
	}
}

func TestModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "f")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v under umask 077, want 0644", fi.Mode())
	}
}

// TestHelperCrash is not a test: TestCrashLeavesNoFinalFile runs it in a
// subprocess that dies mid-write.
func TestHelperCrash(t *testing.T) {
	path := os.Getenv("BALE_ATOMICFILE_CRASH")
	if path == "" {
		t.Skip("subprocess helper")
	}
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	// Die the hard way: no deferred functions, no Close, no Commit.
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func TestCrashLeavesNoFinalFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BALE_ATOMICFILE_CRASH="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v\n%s", err, out)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("final name exists after a crash: %v", err)
	}
	// The crash leaves the temporary file, recognisably named.
	got := entries(t, dir)
	if len(got) != 1 || !strings.HasPrefix(got[0], ".out.tmp-") {
		t.Fatalf("entries after crash %q, want one .out.tmp-*", got)
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, size = 8, 1 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "shared")
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			f, err := Create(path)
			if err != nil {
				errs <- err
				return
			}
			defer f.Abort()
			// Small writes so the writers interleave.
			chunk := bytes.Repeat([]byte{byte('a' + i)}, 4096)
			for range size / len(chunk) {
				if _, err := f.Write(chunk); err != nil {
					errs <- err
					return
				}
			}
			errs <- f.Commit()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != size {
		t.Fatalf("final file is %d bytes, want %d", len(b), size)
	}
	if bytes.Count(b, b[:1]) != size {
		t.Fatalf("final file mixes writers: starts with %q", b[:1])
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Fatalf("entries %q, want only the final file", got)
	}
}

func ExampleFile() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	f, err := Create(filepath.Join(dir, "plan.json"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Abort() // no-op once committed
	if _, err := f.Write([]byte("{}\n")); err != nil {
		fmt.Println(err)
		return
	}
	if err := f.Commit(); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(dir, "plan.json"))
	fmt.Printf("%q\n", b)
	// Output: "{}\n"
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	for _, data := range []string{"first\n", "second, longer\n"} {
		if err := WriteFile(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("after WriteFile: %q, %v", got, err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != Mode {
			t.Errorf("mode %v, want %v", fi.Mode().Perm(), Mode)
		}
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("left beside it: %v", des)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("WriteFile into a missing directory: %v", err)
	}
}
