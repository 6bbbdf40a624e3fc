package source

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bale-build/bale/planner/spec"
)

// TestOpenRawBlob: the raw reader hashes nothing (the caller's store is
// the one verifier), is cut one byte past the planned size, and reuses one
// authenticated transport per repository.
func TestOpenRawBlob(t *testing.T) {
	t.Parallel()
	var pings atomic.Int64
	var extra atomic.Value // bytes appended to blob responses
	extra.Store([]byte(nil))
	host := startRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/v2/" {
				pings.Add(1)
			}
			if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
				if x := extra.Load().([]byte); len(x) > 0 {
					rec := &bodyRecorder{header: http.Header{}}
					next.ServeHTTP(rec, req)
					_, _ = w.Write(append(rec.body.Bytes(), x...))
					return
				}
			}
			next.ServeHTTP(w, req)
		})
	})
	img := randomImage(t, "linux", "amd64", "")
	push(t, host+"/team/app:1", img)
	r := newResolver(t, Options{})
	in, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
	if err != nil {
		t.Fatal(err)
	}
	pingsAfterPlan := pings.Load()
	m := in.Image.Manifests[0]
	for _, b := range append(m.Layers, m.Config) {
		rc, n, err := r.OpenRawBlob(bg, in, b.Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(rc)
		if err != nil || int64(len(got)) != n || digestOf(got) != b.Digest {
			t.Fatalf("raw blob %s: %d bytes, %v", b.Digest, len(got), err)
		}
	}
	if p := pings.Load() - pingsAfterPlan; p > 1 {
		t.Errorf("%d pings for %d blobs of one repository", p, len(m.Layers)+1)
	}

	// Too long: the raw reader stops one byte past the size, unhashed;
	// the verifying reader fails.
	extra.Store(bytes.Repeat([]byte("x"), 1<<20))
	l := m.Layers[0]
	rc, _, err := r.OpenRawBlob(bg, in, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(rc)
	if err != nil || int64(len(got)) != l.Size+1 {
		t.Errorf("raw reader of a too-long blob: %d bytes, %v; want %d", len(got), err, l.Size+1)
	}
	rc, _, err = r.OpenBlob(bg, in, l.Digest)
	if err == nil {
		_, err = readAll(rc)
	}
	if err == nil || !strings.Contains(err.Error(), "more than the planned") {
		t.Errorf("verifying reader of a too-long blob: %v", err)
	}
}

// bodyRecorder captures a handler's body.
type bodyRecorder struct {
	header http.Header
	body   bytes.Buffer
}

func (b *bodyRecorder) Header() http.Header         { return b.header }
func (b *bodyRecorder) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bodyRecorder) WriteHeader(int)             {}
