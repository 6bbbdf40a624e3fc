package archive

import (
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
)

// gzipOSUnknown is the RFC 1952 OS byte for "unknown". It is fixed so the
// header does not depend on the building machine.
const gzipOSUnknown = 255

// NewGzipWriter returns a gzip writer over w whose header is fixed: ModTime
// is mtime truncated to the second, no name, no comment, no extra field, OS
// byte 255. The compressor is github.com/klauspost/compress (see Compressor),
// whose output is pinned by go.mod, rather than compress/gzip, whose output
// has changed between Go releases.
//
// level is gzip.NoCompression through gzip.BestCompression,
// gzip.DefaultCompression, or gzip.HuffmanOnly. gzip.StatelessCompression is
// refused: its output depends on how writes are split. The caller must Close
// the writer and must not Reset it (Reset clears the header).
func NewGzipWriter(w io.Writer, level int, mtime time.Time) (*gzip.Writer, error) {
	if level < gzip.HuffmanOnly || level > gzip.BestCompression {
		return nil, fmt.Errorf("new gzip writer: invalid or non-deterministic level %d", level)
	}
	mtime = mtime.Truncate(time.Second)
	// The header holds an unsigned 32-bit Unix time.
	if s := mtime.Unix(); s < 0 || s > 1<<32-1 {
		return nil, fmt.Errorf("new gzip writer: mtime %s outside 1970-01-01..2106-02-07", mtime.UTC().Format(time.RFC3339))
	}
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return nil, fmt.Errorf("new gzip writer: %w", err)
	}
	zw.Header = gzip.Header{ModTime: mtime, OS: gzipOSUnknown}
	return zw, nil
}
