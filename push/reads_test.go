package push

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"

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

// TestPushReadsTwice: a push reads the pack through once to verify and
// scan it, then its charts' members (for their Chart.yaml), and then only
// the entries it uploads, each from its own members: into an empty
// registry at most twice the pack and the charts; into one that has
// everything (trusted), the pack once and the charts. The old push read
// the pack four times.
func TestPushReadsTwice(t *testing.T) {
	data, err := os.ReadFile(demo(t))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(data))
	pr, err := pack.Scan(context.Background(), bytes.NewReader(data), size, pack.ScanOptions{})
	if err != nil || pr.Err() != nil {
		t.Fatal(err, pr.Err())
	}
	var charts int64
	for _, f := range pr.Files() {
		if strings.HasPrefix(f.Name, pack.ChartsDir+"/") && strings.HasSuffix(f.Name, ".tgz") {
			_, n, ok := f.Members()
			if !ok {
				t.Fatalf("%s: not member-aligned", f.Name)
			}
			charts += n
		}
	}
	host, _ := testRegistry(t, nil)
	ra := &countingAt{r: bytes.NewReader(data)}
	if _, err := PushAt(context.Background(), ra, size, "pack.tar", opts(host+"/airgap")); err != nil {
		t.Fatal(err)
	}
	if n := ra.n.Swap(0); n > 2*size+charts {
		t.Errorf("a first push read %d bytes of a %d-byte pack (charts %d): more than twice", n, size, charts)
	}
	o := opts(host + "/airgap")
	o.TrustExisting = true
	if _, err := PushAt(context.Background(), ra, size, "pack.tar", o); err != nil {
		t.Fatal(err)
	}
	if n := ra.n.Load(); n != size+charts {
		t.Errorf("a push with everything there read %d bytes: want the %d-byte pack once and its charts' %d bytes of members", n, size, charts)
	}
}
