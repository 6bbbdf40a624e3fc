package verify

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/pack"
)

// countingAt counts the bytes read through it.
type countingAt struct {
	r *bytes.Reader
	n atomic.Int64
}

func (c *countingAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestPackAtReadsOnce: verifying a pack reads each of its bytes once (the
// re-encoding is compared with the bytes as the scan reads them, not with
// a second read of the file), and what it returns opens every entry again,
// byte-identical to the pack's.
func TestPackAtReadsOnce(t *testing.T) {
	t.Parallel()
	data := seedPack(t)
	ra := &countingAt{r: bytes.NewReader(data)}
	rep, pr, err := PackAt(context.Background(), ra, int64(len(data)), "pack.tar", fuzzLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if n := ra.n.Load(); n != int64(len(data)) {
		t.Errorf("verify read %d bytes of a %d-byte pack: want each byte once", n, len(data))
	}
	ix, ok := pr.Doc(pack.IndexPath)
	if !ok || pack.RootHash(ix) != rep.RootHash {
		t.Fatal("the scan's pack index is not the one verified")
	}
	idx, err := pack.ParseIndex(ix)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range idx.Entries {
		f, ok := pr.File(e.Path)
		if !ok || f.SHA256 != e.SHA256 || f.Size != e.Size {
			t.Fatalf("%s: the scan says %+v, the index %+v", e.Path, f, e)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("%s: %v", e.Path, err)
		}
	}
	// The default limits take the same path.
	if _, _, err := PackAt(context.Background(), bytes.NewReader(data), int64(len(data)), "pack.tar", archive.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
}
