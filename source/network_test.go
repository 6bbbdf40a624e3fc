package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// attack is one hostile server behaviour, tried against every client bale
// uses: a URL file and a chart repository (bale's own client), an image
// manifest at plan time and an image blob at build time (OpenBlob, what
// the executor calls) through go-containerregistry's registry client.
type attack struct {
	name string
	// serve answers the request under attack; hits counts them.
	serve func(w http.ResponseWriter, req *http.Request, hits int32)
}

// target is where an attack is aimed.
type target struct {
	name string
	// path says whether a request is the one under attack.
	path func(p string) bool
	// run makes bale fetch from host and returns bale's error. The server
	// turns hostile when on is set; run sets it unless the target planned
	// first (a build-time fetch).
	run func(t *testing.T, r *Resolver, host string, on *atomic.Bool) error
}

// targets returns the four fetch paths, each set up against a registry
// (or plain HTTP server) at host that behaves until attacking is set.
func targets(t *testing.T) []target {
	return []target{
		{
			name: "url file",
			path: func(p string) bool { return p == "/files/f" },
			run: func(t *testing.T, r *Resolver, host string, on *atomic.Bool) error {
				on.Store(true)
				_, err := r.File(bg, "/", plan.KindFile, "f", spec.File{URL: "http://" + host + "/files/f", Digest: digestOf(nil)})
				return err
			},
		},
		{
			name: "chart repository",
			path: func(p string) bool { return p == "/charts/index.yaml" },
			run: func(t *testing.T, r *Resolver, host string, on *atomic.Bool) error {
				on.Store(true)
				_, err := r.Chart(bg, "/", spec.Chart{Name: "c", Repository: "http://" + host + "/charts", Version: "1.0.0"})
				return err
			},
		},
		{
			name: "registry manifest",
			path: func(p string) bool { return strings.HasPrefix(p, "/v2/team/app/manifests/") },
			run: func(t *testing.T, r *Resolver, host string, on *atomic.Bool) error {
				on.Store(true)
				_, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
				return err
			},
		},
		{
			name: "registry blob at build",
			path: func(p string) bool { return strings.HasPrefix(p, "/v2/team/app/blobs/") },
			run: func(t *testing.T, r *Resolver, host string, on *atomic.Bool) error {
				// Planned by a resolver the attack does not reach: the
				// attack starts with the build's first blob request.
				in, err := newResolver(t, Options{}).Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
				if err != nil {
					t.Fatalf("plan before the attack: %v", err)
				}
				on.Store(true)
				rc, _, err := r.OpenBlob(bg, in, in.Image.Manifests[0].Layers[0].Digest)
				if err == nil {
					_, err = readAll(rc)
				}
				return err
			},
		},
	}
}

// runAttacks runs every attack against every target with a Resolver made
// from opts, and hands each outcome to check.
func runAttacks(t *testing.T, opts Options, attacks []attack, check func(t *testing.T, err error, hits int32)) {
	for _, a := range attacks {
		for _, tg := range targets(t) {
			t.Run(a.name+"/"+tg.name, func(t *testing.T) {
				var on atomic.Bool
				var hits atomic.Int32
				host := startRegistry(t, func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
						if on.Load() && tg.path(req.URL.Path) {
							a.serve(w, req, hits.Add(1))
							return
						}
						next.ServeHTTP(w, req)
					})
				})
				push(t, host+"/team/app:1", randomImage(t, "linux", "amd64", ""))
				r := newResolver(t, opts)
				start := time.Now()
				err := tg.run(t, r, host, &on)
				elapsed := time.Since(start)
				if err == nil {
					t.Fatal("no error")
				}
				t.Logf("after %s, %d requests: %v", elapsed.Round(time.Millisecond), hits.Load(), err)
				check(t, err, hits.Load())
			})
		}
	}
}

// TestRedirectLoop: a server answering a request with redirects for ever
// (to the same URL, or to a new one each time) gets at most MaxRedirects
// requests per fetch and bale stops with an error that says so, on every
// client: go-containerregistry's replaces Go's 10-redirect cap with a
// check that has none.
func TestRedirectLoop(t *testing.T) {
	attacks := []attack{
		{"same URL", func(w http.ResponseWriter, req *http.Request, _ int32) {
			http.Redirect(w, req, req.URL.Path, http.StatusFound)
		}},
		{"endless chain", func(w http.ResponseWriter, req *http.Request, n int32) {
			http.Redirect(w, req, fmt.Sprintf("%s?hop=%d", req.URL.Path, n), http.StatusTemporaryRedirect)
		}},
	}
	runAttacks(t, Options{}, attacks, func(t *testing.T, err error, hits int32) {
		if !strings.Contains(err.Error(), fmt.Sprintf("stopped after %d redirects", MaxRedirects)) {
			t.Errorf("error does not name the redirect cap: %v", err)
		}
		if hits > MaxRedirects {
			t.Errorf("%d requests for one fetch, want at most %d", hits, MaxRedirects)
		}
	})
}

// TestLowSpeedLimit: a server that sends headers and then one byte every
// 50 ms never pauses long enough for the idle timeout, but bale gives up
// on it once a low-speed window ends, without retrying it.
func TestLowSpeedLimit(t *testing.T) {
	const window = 300 * time.Millisecond
	trickle := attack{"trickle", func(w http.ResponseWriter, req *http.Request, _ int32) {
		w.Header().Set("Content-Length", "1048576")
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte{'{'}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-req.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}}
	opts := Options{Timeout: 10 * time.Second, SpeedLimit: 1000, SpeedTime: window}
	runAttacks(t, opts, []attack{trickle}, func(t *testing.T, err error, hits int32) {
		var le *limitError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "transfer slower than 1000 bytes/s over 300ms") {
			t.Errorf("error is not the low-speed limit: %v", err)
		}
		// The error is the window's end, not the 10 s idle timeout the
		// trickle keeps resetting; and the request is not retried.
		if hits != 1 {
			t.Errorf("%d requests: a trickling server is not worth retrying", hits)
		}
	})
}

// TestRequestDeadline: a server that accepts a request and never answers
// it is given up on at the per-request deadline, even with a long idle
// timeout and the low-speed check off.
func TestRequestDeadline(t *testing.T) {
	const deadline = 400 * time.Millisecond
	silent := attack{"headers never", func(w http.ResponseWriter, req *http.Request, _ int32) {
		<-req.Context().Done()
	}}
	opts := Options{Timeout: time.Minute, SpeedLimit: -1, RequestTimeout: deadline}
	runAttacks(t, opts, []attack{silent}, func(t *testing.T, err error, hits int32) {
		if !strings.Contains(err.Error(), "not finished within 400ms (the per-request deadline)") {
			t.Errorf("error does not name the deadline: %v", err)
		}
		if hits != 1 {
			t.Errorf("%d requests: a deadline is not retried", hits)
		}
	})
}

// TestEndlessBody: a URL file is hashed as it streams, with no size bound
// (the spec's digest decides); a server sending fast for ever is stopped by
// the per-request deadline.
func TestEndlessBody(t *testing.T) {
	const deadline = 500 * time.Millisecond
	// sending gets a value each time a request's body has begun.
	sending := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		chunk := make([]byte, 32<<10)
		for i := 0; req.Context().Err() == nil; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if i == 0 {
				w.(http.Flusher).Flush()
				sending <- struct{}{}
			}
		}
	}))
	t.Cleanup(srv.Close)
	r := newResolver(t, Options{RequestTimeout: deadline})
	_, err := r.File(bg, "/", plan.KindFile, "f", spec.File{URL: srv.URL + "/f", Digest: digestOf(nil)})
	if err == nil || !strings.Contains(err.Error(), "resolve file f (") || !strings.Contains(err.Error(), "not finished within 500ms (the per-request deadline)") {
		t.Fatalf("err = %v", err)
	}
	<-sending
	// The caller's own cancel, once the body streams, is reported as
	// such, not as a broken limit.
	ctx, cancel := context.WithCancel(bg)
	go func() {
		<-sending
		cancel()
	}()
	_, err = newResolver(t, Options{}).File(ctx, "/", plan.KindFile, "f", spec.File{URL: srv.URL + "/f", Digest: digestOf(nil)})
	var le *limitError
	if !errors.Is(err, context.Canceled) || errors.As(err, &le) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}
