// Package capread reads a whole stream or file into memory under a byte
// cap: the one rule for every document bale buffers (manifests, indexes,
// keys, JSON records, checksum files), so a hostile source cannot make it
// hold more than the cap, and a document over the cap is an error, never
// silently cut.
package capread

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrTooLarge is wrapped by the error of a read that found more than its
// cap.
var ErrTooLarge = errors.New("over the size limit")

// ReadAll reads r to its end and returns its bytes. It reads at most
// max+1 bytes: more than max is an error wrapping ErrTooLarge.
func ReadAll(r io.Reader, max int64) ([]byte, error) {
	if max < 0 {
		max = 0
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("more than %d bytes: %w", max, ErrTooLarge)
	}
	return b, nil
}

// ReadFile reads the regular file name, as ReadAll reads a stream, after
// Open's checks. Errors name the file.
func ReadFile(name string, max int64) ([]byte, error) {
	f, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := ReadAll(f, max)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return b, nil
}

// Open opens the regular file name for a caller that streams it, with
// ReadFile's rule: a FIFO, device, socket or directory is refused before
// it is opened for reading (opening a FIFO would block, and a device can
// be endless); the file is checked again once open, without blocking, so a
// swap between the two is refused too.
func Open(name string) (*os.File, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(name, fi)
	}
	f, err := os.OpenFile(name, os.O_RDONLY|nonblock, 0)
	if err != nil {
		return nil, err
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(name, fi)
	}
	return f, nil
}

func notRegular(name string, fi fs.FileInfo) error {
	return &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("not a regular file (%s)", fi.Mode().Type())}
}
