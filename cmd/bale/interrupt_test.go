package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// countingWriter counts the body bytes a handler writes.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func (w countingWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// TestInterruptResume: Ctrl-C during a build stops bale promptly with exit
// status 130, and the rerun fetches only the rest of the blob it was
// fetching (an HTTP Range request), counted at the registry. The registry
// is go-containerregistry's, with the one layer's GET served by
// http.ServeContent (which honours Range); the first GET stalls after half
// the layer, as a slow mirror does.
func TestInterruptResume(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bale as a subprocess")
	}
	img, err := random.Image(4<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	layer, _ := io.ReadAll(rc)
	half := int64(len(layer) / 2)

	var (
		served   atomic.Int64
		stalled  = make(chan struct{})
		once     sync.Once
		rangesMu sync.Mutex
		ranges   []string
	)
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			reg.ServeHTTP(w, r)
			return
		}
		rangesMu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		rangesMu.Unlock()
		cw := countingWriter{w, &served}
		if first {
			w.Header().Set("Content-Length", itoa(int64(len(layer))))
			cw.Write(layer[:half])
			cw.Flush()
			once.Do(func() { close(stalled) })
			<-r.Context().Done() // stall until bale goes away
			return
		}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(layer))
	}))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/big:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img, remote.WithTransport(http.DefaultTransport)); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	ws := writeWorkspace(t, map[string]string{
		"spec/pack.cue": "package x\n\nbootstrapPack: {\n\tsourceDateEpoch: 0\n\timages: [{name: \"big\", ref: \"" + ref + "\", digest: \"" + d.String() + "\"}]\n}\n",
	})
	served.Store(0)

	cmd := exec.Command(os.Args[0], "build", "spec", "-o", "out", "--cache", "cache")
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), "BALE_TEST_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("bale never fetched the layer\n%s", stderr.String())
	}
	// Ctrl-C once bale holds the half that was sent.
	partial := filepath.Join(ws, "cache", "partial", ld.Hex)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(partial); err == nil && fi.Size() == half {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("bale never wrote the half it was sent to %s\n%s", partial, stderr.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("after SIGINT: %v, want exit %d\n%s", err, exitInterrupted, stderr.String())
	}
	// It stopped: the stalled registry would hold the fetch for ever, so
	// the exit status and the notice show the interruption ended it.
	if !strings.Contains(stderr.String(), "bale: interrupted") {
		t.Errorf("stderr lacks the interruption notice:\n%s", stderr.String())
	}
	if fi, err := os.Stat(partial); err != nil || fi.Size() != half {
		t.Fatalf("partial download after SIGINT: %v (want %d bytes kept)", err, half)
	}
	if _, err := os.Stat(filepath.Join(ws, "out", "bootstrap-pack-v1.tar")); err == nil {
		t.Error("an interrupted build left a pack")
	}

	before := served.Load()
	if _, errs, code := bale(t, ws, "build", "spec", "-o", "out", "--cache", "cache", "-q"); code != 0 {
		t.Fatalf("rerun: exit %d\n%s", code, errs)
	}
	if got := served.Load() - before; got != int64(len(layer))-half {
		t.Errorf("rerun fetched %d bytes of the layer, want the %d it lacked", got, int64(len(layer))-half)
	}
	rangesMu.Lock()
	defer rangesMu.Unlock()
	if len(ranges) != 2 || ranges[1] != "bytes="+itoa(half)+"-" {
		t.Errorf("layer requests' Range headers %q, want [\"\" \"bytes=%d-\"]", ranges, half)
	}
	if _, err := os.Stat(filepath.Join(ws, "cache", "partial", ld.Hex)); !os.IsNotExist(err) {
		t.Errorf("partial download left after the blob was stored: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
