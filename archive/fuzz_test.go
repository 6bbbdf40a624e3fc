package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// FuzzWalk feeds arbitrary bytes, plain and as seeds of real archives, to
// Walk. Walk must never panic, never hand fn a name CleanName would change
// or the same name twice, and never let fn read more than a header
// declares.
func FuzzWalk(f *testing.F) {
	f.Add(files(f, "a", "b/c"))
	f.Add(gz(f, files(f, "a", "b/c")))
	f.Add(sparsePAX(f))
	f.Add(setType(files(f, "x"), 0, tar.TypeSymlink))
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, []Entry{
		{Name: "dir/file", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte("abc"))), nil }},
	}, time.Unix(1700000000, 0)); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(gz(f, buf.Bytes()))
	lim := Limits{MaxEntries: 64, MaxEntrySize: 1 << 20, MaxTotalSize: 4 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		seen := map[string]bool{}
		_ = Walk(context.Background(), bytes.NewReader(data), lim, func(h *tar.Header, body io.Reader) error {
			if c, err := CleanName(h.Name); err != nil || c != h.Name {
				t.Fatalf("fn got name %q (clean %q, %v)", h.Name, c, err)
			}
			if seen[h.Name] {
				t.Fatalf("fn got %q twice", h.Name)
			}
			seen[h.Name] = true
			n, err := io.Copy(io.Discard, body)
			if n > h.Size || h.Size > lim.MaxEntrySize {
				t.Fatalf("%q: read %d bytes, header declares %d (limit %d)", h.Name, n, h.Size, lim.MaxEntrySize)
			}
			return err
		})
	})
}
