// Package ctxio makes streaming stop once a context is done: a build that
// is cancelled (Ctrl-C, a dropped API request) must not go on reading a
// multi-gigabyte blob to its end first.
package ctxio

import (
	"context"
	"io"
)

// Reader returns a reader that reads from r until ctx is done, and then
// returns ctx's error.
func Reader(ctx context.Context, r io.Reader) io.Reader { return &reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c *reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// bufSize is the copy buffer: large enough that the context check and the
// system calls cost little per byte, small enough to keep memory flat.
const bufSize = 32 << 10

// Copy copies r to w like io.Copy, stopping with ctx's error between
// chunks once ctx is done. It returns the bytes copied.
func Copy(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	return io.CopyBuffer(onlyWriter{w}, Reader(ctx, r), make([]byte, bufSize))
}

// onlyWriter hides a ReadFrom method, so io.CopyBuffer reads through the
// context-checking reader in chunks rather than handing the whole stream
// to the writer.
type onlyWriter struct{ io.Writer }
