package source

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

func TestRegistryTagToDigest(t *testing.T) {
	t.Parallel()
	host := startRegistry(t, nil)
	img := randomImage(t, "linux", "amd64", "")
	d := push(t, host+"/team/app:1.0", img)
	r := newResolver(t, Options{})

	in, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1.0"})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	raw, _ := img.RawManifest()
	if in.Digest != d.String() || in.Size != int64(len(raw)) || in.Image.Index {
		t.Fatalf("input %+v, want digest %s", in, d)
	}
	if in.Source != (plan.Source{Type: plan.SourceRegistry, Ref: host + "/team/app:1.0"}) {
		t.Fatalf("source %+v", in.Source)
	}
	if got := in.Image.Tags; len(got) != 1 || got[0] != host+"/team/app:1.0" {
		t.Fatalf("tags %v", got)
	}
	m := in.Image.Manifests[0]
	cfg, _ := img.ConfigName()
	layers, _ := img.Layers()
	if m.Platform != "linux/amd64" || m.Config.Digest != cfg.String() || len(m.Layers) != len(layers) {
		t.Fatalf("manifest %+v", m)
	}
	for i, l := range layers {
		ld, _ := l.Digest()
		ls, _ := l.Size()
		if m.Layers[i].Digest != ld.String() || m.Layers[i].Size != ls {
			t.Fatalf("layer %d: %+v, want %s %d", i, m.Layers[i], ld, ls)
		}
		rc, n, err := r.OpenBlob(bg, in, ld.String())
		if err != nil {
			t.Fatal(err)
		}
		if b, err := readAll(rc); err != nil || int64(len(b)) != n || digestOf(b) != ld.String() {
			t.Fatalf("OpenBlob layer %d: %v", i, err)
		}
	}
	rc, _, err := r.OpenBlob(bg, in, in.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readAll(rc); err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("OpenBlob manifest: %v", err)
	}

	// By digest, with the tag kept for Tags.
	in2, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1.0@" + d.String()})
	if err != nil || in2.Digest != d.String() || in2.Image.Tags[0] != host+"/team/app:1.0" {
		t.Fatalf("by tag@digest: %+v %v", in2, err)
	}
	in3, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app@" + d.String()})
	if err != nil || len(in3.Image.Tags) != 0 || in3.Image.Tags == nil {
		t.Fatalf("by digest: tags %#v %v", in3.Image.Tags, err)
	}
	// A pin that disagrees with the tag names the image and both digests.
	other := "sha256:" + strings.Repeat("ab", 32)
	_, err = r.Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1.0", Digest: other})
	if err == nil || !strings.Contains(err.Error(), "resolve image app ("+host+"/team/app:1.0)") ||
		!strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("pin mismatch: err = %v", err)
	}
}

func TestRegistryTagMoved(t *testing.T) {
	t.Parallel()
	host := startRegistry(t, nil)
	r := newResolver(t, Options{})
	ref := host + "/team/app:stable"
	d1 := push(t, ref, randomImage(t, "linux", "amd64", ""))
	in1, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	d2 := push(t, ref, randomImage(t, "linux", "amd64", ""))
	in2, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	if in1.Digest != d1.String() || in2.Digest != d2.String() || d1 == d2 {
		t.Fatalf("digests %s, %s; pushed %s, %s", in1.Digest, in2.Digest, d1, d2)
	}
	// The first plan still opens: blobs are addressed by digest.
	if rc, _, err := r.OpenBlob(bg, in1, in1.Image.Manifests[0].Config.Digest); err != nil {
		t.Fatal(err)
	} else if _, err := readAll(rc); err != nil {
		t.Fatal(err)
	}
}

// pushIndex pushes an index of images for the given platforms.
func pushIndex(t *testing.T, ref string, plats ...v1.Platform) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	imgs := map[string]v1.Image{}
	for _, p := range plats {
		img := randomImage(t, p.OS, p.Architecture, p.Variant)
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		imgs[strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/")] = img
	}
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return idx, imgs
}

func TestRegistryIndexPlatforms(t *testing.T) {
	t.Parallel()
	host := startRegistry(t, nil)
	ref := host + "/team/multi:2"
	idx, imgs := pushIndex(t, ref,
		v1.Platform{OS: "linux", Architecture: "s390x"},
		v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		v1.Platform{OS: "linux", Architecture: "amd64"},
	)
	idxDigest, _ := idx.Digest()
	r := newResolver(t, Options{})

	in, err := r.Image(bg, "/", spec.Image{Name: "multi", Ref: ref, Platforms: []string{"linux/arm64/v8", "linux/amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	if in.Digest != idxDigest.String() || !in.Image.Index || in.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("input %+v", in)
	}
	if got := strings.Join(in.Image.Platforms, ","); got != "linux/amd64,linux/arm64/v8" {
		t.Fatalf("platforms %s", got)
	}
	for _, m := range in.Image.Manifests {
		img := imgs[m.Platform]
		d, _ := img.Digest()
		cfg, _ := img.ConfigName()
		if m.Digest != d.String() || m.Config.Digest != cfg.String() || len(m.Layers) != 2 {
			t.Fatalf("%s: %+v, want %s", m.Platform, m, d)
		}
		// A platform manifest opens through OpenBlob too.
		rc, _, err := r.OpenBlob(bg, in, m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(rc); err != nil {
			t.Fatal(err)
		}
	}
	// Two of three platforms: the pack gets a filtered index, pinned here.
	raw, _ := idx.RawManifest()
	keep := map[string]bool{}
	for _, m := range in.Image.Manifests {
		keep[m.Digest] = true
	}
	filtered, err := plan.FilterIndex(raw, keep)
	if err != nil {
		t.Fatal(err)
	}
	if f := in.Image.Filtered; f == nil || f.Digest != digestOf(filtered) || f.Size != int64(len(filtered)) || f.Digest == in.Digest {
		t.Fatalf("filtered index %+v, want %s", f, digestOf(filtered))
	}
	// Default: every platform, and the original index.
	in, err = r.Image(bg, "/", spec.Image{Name: "multi", Ref: ref})
	if err != nil || len(in.Image.Manifests) != 3 {
		t.Fatalf("all platforms: %v", err)
	}
	if in.Image.Filtered != nil {
		t.Fatalf("nothing filtered, yet Filtered = %+v", in.Image.Filtered)
	}
	if got := strings.Join(in.Image.Platforms, ","); got != "linux/amd64,linux/arm64/v8,linux/s390x" {
		t.Fatalf("platforms %s", got)
	}
	_, err = r.Image(bg, "/", spec.Image{Name: "multi", Ref: ref, Platforms: []string{"windows/amd64"}})
	if err == nil || !strings.Contains(err.Error(), "no manifest for platform windows/amd64") {
		t.Fatalf("missing platform: err = %v", err)
	}
}

// basicAuth requires user:pass on every request, as a registry with basic
// authentication does.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, req)
		})
	}
}

func TestRegistryDockerConfigAuth(t *testing.T) {
	host := startRegistry(t, basicAuth("bale", "s3cret"))
	img := randomImage(t, "linux", "amd64", "")
	d := push(t, host+"/private/app:1", img, remote.WithAuth(&authn.Basic{Username: "bale", Password: "s3cret"}))

	// No credentials: refused.
	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, "config.json"), []byte(`{}`))
	t.Setenv("DOCKER_CONFIG", empty)
	_, err := newResolver(t, Options{}).Image(bg, "/", spec.Image{Name: "app", Ref: host + "/private/app:1"})
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "401") {
		t.Fatalf("without credentials: err = %v", err)
	}

	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("bale:s3cret"))
	writeFile(t, filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"auths": {%q: {"auth": %q}}}`, host, auth))
	t.Setenv("DOCKER_CONFIG", dir)
	in, err := newResolver(t, Options{}).Image(bg, "/", spec.Image{Name: "app", Ref: host + "/private/app:1"})
	if err != nil {
		t.Fatal(err)
	}
	if in.Digest != d.String() {
		t.Fatalf("digest %s, want %s", in.Digest, d)
	}
}

// tamper serves other's bytes for manifest requests naming digest, and a
// lying Docker-Content-Digest header for every manifest.
func tamper(digest string, other []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/manifests/"+digest) {
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				w.Header().Set("Docker-Content-Digest", digest)
				_, _ = w.Write(other)
				return
			}
			if strings.Contains(req.URL.Path, "/manifests/") {
				w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
			}
			next.ServeHTTP(w, req)
		})
	}
}

func TestRegistryWrongManifestBytes(t *testing.T) {
	t.Parallel()
	a := randomImage(t, "linux", "amd64", "")
	b := randomImage(t, "linux", "amd64", "")
	da, _ := a.Digest()
	braw, _ := b.RawManifest()
	host := startRegistry(t, tamper(da.String(), braw))
	push(t, host+"/team/a:1", a)
	push(t, host+"/team/b:1", b)
	r := newResolver(t, Options{})

	_, err := r.Image(bg, "/", spec.Image{Name: "a", Ref: host + "/team/a@" + da.String()})
	if err == nil || !strings.Contains(err.Error(), da.String()) || !strings.Contains(err.Error(), digestOf(braw)) ||
		!strings.Contains(err.Error(), "resolve image a (") {
		t.Fatalf("wrong bytes by digest: err = %v", err)
	}
	// By tag the bytes are hashed; the lying Docker-Content-Digest header
	// is ignored.
	in, err := r.Image(bg, "/", spec.Image{Name: "b", Ref: host + "/team/b:1"})
	if err != nil {
		t.Fatal(err)
	}
	if in.Digest != digestOf(braw) {
		t.Fatalf("digest %s, want the hash of the bytes %s", in.Digest, digestOf(braw))
	}
}

func TestRegistryRetries(t *testing.T) {
	t.Parallel()
	var manifestGets, fails atomic.Int32
	failing := atomic.Bool{}
	host := startRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/") && failing.Load() {
				manifestGets.Add(1)
				if fails.Add(1) <= 2 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
			}
			next.ServeHTTP(w, req)
		})
	})
	d := push(t, host+"/team/app:1", randomImage(t, "linux", "amd64", ""))
	failing.Store(true)
	in, err := newResolver(t, Options{}).Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
	if err != nil {
		t.Fatal(err)
	}
	if in.Digest != d.String() {
		t.Fatalf("digest %s, want %s", in.Digest, d)
	}
	if n := manifestGets.Load(); n != 3 {
		t.Fatalf("%d manifest requests, want 3 (two 503s, then success)", n)
	}

	// With retries off the first 503 is final.
	fails.Store(0)
	_, err = newResolver(t, Options{Retries: -1}).Image(bg, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
	if err == nil || !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "Service Unavailable") {
		t.Fatalf("no retries: err = %v", err)
	}
}

// TestCancelDuringBackoff: cancelling while bale waits to retry a 503
// returns at once, not when the backoff would have ended.
func TestCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	var gets atomic.Int32
	host := startRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if strings.Contains(req.URL.Path, "/manifests/") {
				gets.Add(1)
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, req)
		})
	})
	r := newResolver(t, Options{})
	// The wait is a real 10 s timer; the test cancels as it begins. Had
	// the cancel not ended the wait, the retry would follow (a second
	// request, and a 503 rather than context.Canceled).
	waiting := make(chan struct{}, 1)
	r.backoff = 10 * time.Second
	r.after = func(d time.Duration) <-chan time.Time {
		select {
		case waiting <- struct{}{}:
		default:
		}
		return time.After(d)
	}
	ctx, cancel := context.WithCancel(bg)
	go func() {
		<-waiting
		cancel()
	}()
	_, err := r.Image(ctx, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("%d manifest requests; the cancel came during the first backoff", n)
	}
}

// silentListener accepts connections and never answers. Each accepted
// connection is sent on the returned channel (buffered; extra ones are
// counted but not sent).
func silentListener(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

// TestRegistryUnreachable: a closed port fails at once, naming the
// refused connection; a listener that never answers costs one idle
// timeout per scheme go-containerregistry tries (https, then http for a
// loopback host), and is not retried: the error names the timeout, and
// the listener sees exactly those two connections.
func TestRegistryUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	silent, accepted := silentListener(t)

	const timeout = 300 * time.Millisecond
	r := newResolver(t, Options{Timeout: timeout})
	for _, tc := range []struct {
		name, host, want string
		conns            int
	}{
		{"closed port", closed, "connection refused", 0},
		{"silent listener", silent, "no response within 300ms", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.host + "/team/app:1"
			_, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: ref})
			if err == nil || !strings.Contains(err.Error(), "resolve image app ("+ref+")") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			// Every attempt was connected before Image returned: wait for
			// the listener to take each, then none may be left over.
			for range tc.conns {
				<-accepted
			}
			if n := len(accepted); tc.conns > 0 && n != 0 {
				t.Errorf("%d more connections to the silent listener than the %d schemes: a timeout is not retried", n, tc.conns)
			}
			t.Log(err)
		})
	}
}

// TestRegistryContextCancel: a cancel while a request waits on a silent
// registry ends it with context.Canceled, not the minute-long idle
// timeout. The cancel comes once the registry has the connection.
func TestRegistryContextCancel(t *testing.T) {
	t.Parallel()
	host, accepted := silentListener(t)
	r := newResolver(t, Options{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(bg)
	go func() {
		<-accepted
		cancel()
	}()
	_, err := r.Image(ctx, "/", spec.Image{Name: "app", Ref: host + "/team/app:1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestOffline(t *testing.T) {
	t.Parallel()
	r := newResolver(t, Options{Offline: true})
	_, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: "registry.example/team/app:1"})
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "offline: registry.example/team/app:1 needs the network") {
		t.Fatalf("image: err = %v", err)
	}
	_, err = r.Chart(bg, "/", spec.Chart{Name: "c", Repository: "https://charts.example", Version: "1.0.0"})
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("chart repository: err = %v", err)
	}
	_, err = r.Chart(bg, "/", spec.Chart{Name: "c", OCI: "oci://registry.example/charts/c", Version: "1.0.0"})
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("oci chart: err = %v", err)
	}
	_, err = r.File(bg, "/", plan.KindFile, "f", spec.File{URL: "https://files.example/f", Digest: digestOf(nil)})
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("url file: err = %v", err)
	}
}

func TestInsecureHosts(t *testing.T) {
	t.Parallel()
	r := newResolver(t, Options{Insecure: []string{"mirror.internal:5000", "plain.internal"}})
	for host, want := range map[string]bool{
		"127.0.0.1:5000":       true,
		"localhost":            true,
		"[::1]:80":             true,
		"mirror.internal:5000": true,
		"mirror.internal:5001": false,
		"plain.internal:8080":  true,
		"10.0.0.1:5000":        false,
		"registry.example":     false,
	} {
		if got := r.allowHTTP(host); got != want {
			t.Errorf("allowHTTP(%s) = %v, want %v", host, got, want)
		}
	}
	// A plain-HTTP request to another host is refused before it is sent.
	_, err := r.get(bg, "http://registry.example/index.yaml")
	if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Fatalf("err = %v", err)
	}
}

func TestRegistryBlobChangedAfterPlanning(t *testing.T) {
	t.Parallel()
	var swap atomic.Value // digest → replacement bytes
	swap.Store(map[string][]byte{})
	host := startRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			for d, b := range swap.Load().(map[string][]byte) {
				if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+d) {
					_, _ = w.Write(b)
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
	l := in.Image.Manifests[0].Layers[0]
	rc, _, err := newResolver(t, Options{}).OpenBlob(bg, in, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	good, err := readAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 0xff
	swap.Store(map[string][]byte{l.Digest: bad})
	rc, _, err = newResolver(t, Options{}).OpenBlob(bg, in, l.Digest)
	if err == nil {
		_, err = readAll(rc)
	}
	if err == nil {
		t.Fatal("a changed blob read without error")
	}
	t.Log(err)
}

// TestMain keeps the developer's own docker credentials out of the tests:
// DefaultKeychain reads DOCKER_CONFIG, pointed here at an empty directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bale-resolve-docker-config")
	if err != nil {
		panic(err)
	}
	os.Setenv("DOCKER_CONFIG", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
