package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestNetworkLimitFlags: the network limits reach build-time fetches. A
// spec planned against a loopback registry is built after the registry
// starts trickling its blobs a byte every 50 ms; with --speed-limit 1KiB
// --speed-time 300ms the build stops at once with the low-speed error.
func TestNetworkLimitFlags(t *testing.T) {
	var trickle atomic.Bool
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !trickle.Load() || !strings.Contains(req.URL.Path, "/blobs/") || req.Method != http.MethodGet {
			reg.ServeHTTP(w, req)
			return
		}
		w.Header().Set("Content-Length", "1048576")
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte{0}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-req.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/web:1.0"
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := "package p\n\nbootstrapPack: {\n\tname: \"p\"\n\tsourceDateEpoch: 0\n\timages: [{name: \"web\", ref: \"" + ref + "\"}]\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "pack.cue"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := bale(t, dir, "plan", ".", "-o", "plan.json"); code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errs)
	}
	trickle.Store(true)
	// The error naming the low-speed window is the oracle (the trickle
	// would take 14 hours to end on its own), not the wall clock.
	_, errs, code := bale(t, dir, "build", "--plan", "plan.json", "-o", "out", "--cache", filepath.Join(dir, "cache"), "-q",
		"--speed-limit", "1KiB", "--speed-time", "300ms")
	if code == 0 || !strings.Contains(errs, "transfer slower than 1024 bytes/s over 300ms") {
		t.Fatalf("build from a trickling registry: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "p.tar")); err == nil {
		t.Error("a failed build left its artifact")
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--speed-limit", "fast"}, `"fast": want a positive size`},
		{[]string{"--request-timeout", "0s"}, "--request-timeout 0s: want a positive duration"},
		{[]string{"--timeout", "-1s"}, "--timeout -1s: want a positive duration"},
	} {
		if _, errs, code := bale(t, dir, append([]string{"plan", "."}, tc.args...)...); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("plan %v: exit %d, want an error with %q\n%s", tc.args, code, tc.want, errs)
		}
	}
}
