package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bale-build/bale/publish"
	"github.com/bale-build/bale/testsupport/demopack"
	"github.com/bale-build/bale/testsupport/testrepo"
)

// hostileRegistry serves a real registry that turns hostile for the
// requests attack says yes to; stop ends every handler that blocks, when
// the test ends (a server that has not read a request does not notice its
// client leave). blobGets counts blob GETs that reached it.
type hostileRegistry struct {
	host     string
	stop     chan struct{}
	blobGets atomic.Int64
}

func newHostileRegistry(t *testing.T, attack func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) bool) *hostileRegistry {
	t.Helper()
	h := &hostileRegistry{stop: make(chan struct{})}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			h.blobGets.Add(1)
		}
		if attack != nil && attack(w, r, h.stop) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(h.stop) })
	h.host = strings.TrimPrefix(srv.URL, "http://")
	return h
}

// publishFixture publishes a small output directory (a 1 MiB file, a
// small one, their sums) to host and returns the oci:// reference and the
// big file's digest.
func publishFixture(t *testing.T, host string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	big := make([]byte, 1<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	to := "oci://" + host + "/releases/fixture:v1"
	rep, err := publish.OCI(context.Background(), dir, to, publish.OCIOptions{Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Files {
		if f.Path == "big.bin" {
			return to, f.Location
		}
	}
	t.Fatal("big.bin was not published")
	return "", ""
}

// assertNothingPulled checks a failed pull left neither the output
// directory nor a staging directory beside it.
func assertNothingPulled(t *testing.T, out string) {
	t.Helper()
	if _, err := os.Lstat(out); err == nil {
		t.Errorf("a failed pull left %s", out)
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".pull-") {
			t.Errorf("a failed pull left its staging directory %s", e.Name())
		}
	}
}

// TestPullNetworkLimits: bale pull is held to the network limits. A
// registry that never answers a blob request, trickles it a byte at a
// time, or stalls after the headers is given up on with an error naming
// the limit (the test sets short limits, so it never waits for the
// defaults), and the files already fetched are not left in -o.
func TestPullNetworkLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attack func(w http.ResponseWriter, r *http.Request, stop <-chan struct{})
		flags  []string
		want   string
	}{
		{
			name:   "never answers",
			attack: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { <-stop },
			flags:  []string{"--timeout", "300ms"},
			want:   "no response within 300ms (the idle timeout)",
		},
		{
			name:   "never finishes",
			attack: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) { <-stop },
			flags:  []string{"--timeout", "1m", "--request-timeout", "300ms"},
			want:   "not finished within 300ms (the per-request deadline)",
		},
		{
			name: "one byte at a time",
			attack: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Length", fmt.Sprint(1<<20))
				w.WriteHeader(http.StatusOK)
				for {
					if _, err := w.Write([]byte{0}); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			},
			flags: []string{"--timeout", "1m", "--speed-limit", "1KiB", "--speed-time", "300ms"},
			want:  "transfer slower than 1024 bytes/s over 300ms",
		},
		{
			name: "stalls after the headers",
			attack: func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
				w.Header().Set("Content-Length", fmt.Sprint(1<<20))
				w.WriteHeader(http.StatusOK)
				w.Write(make([]byte, 100))
				w.(http.Flusher).Flush()
				<-stop
			},
			flags: []string{"--timeout", "300ms", "--speed-limit", "0"},
			want:  "no body bytes for 300ms (the idle timeout)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var target atomic.Value
			target.Store("")
			reg := newHostileRegistry(t, func(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) bool {
				if dg := target.Load().(string); dg != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+dg) {
					tc.attack(w, r, stop)
					return true
				}
				return false
			})
			from, big := publishFixture(t, reg.host)
			target.Store(big)
			out := filepath.Join(t.TempDir(), "kit")
			_, errs, code := bale(t, "", append([]string{"pull", from, "-o", out}, tc.flags...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("pull: exit %d, want an error naming %q:\n%s", code, tc.want, errs)
			}
			assertNothingPulled(t, out)
		})
	}
}

// hugeArtifact puts at host a bale artifact whose one layer declares size
// bytes; the registry never holds such a blob.
func hugeArtifact(t *testing.T, host string, size int64) string {
	t.Helper()
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	repo, err := name.NewRepository(host + "/huge")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, cfg); err != nil {
		t.Fatal(err)
	}
	cd, _ := cfg.Digest()
	layer := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  publish.ArtifactType,
		"config":        v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2},
		"layers": []v1.Descriptor{{MediaType: publish.MediaTypeFile, Digest: layer, Size: size,
			Annotations: map[string]string{publish.AnnotationTitle: "huge.bin"}}},
	}
	raw, _ := json.Marshal(m)
	req, _ := http.NewRequest(http.MethodPut, "http://"+host+"/v2/huge/manifests/v1", strings.NewReader(string(raw)))
	req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %s", resp.Status)
	}
	return "oci://" + host + "/huge:v1"
}

// TestPullSizeCap: a layer declaring more than --max-size, or more than
// the output's file system has free, is refused before any blob is
// fetched, naming the cap or the free space.
func TestPullSizeCap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int64
		flags []string
		want  string
	}{
		{"1 TiB against the default cap", 1 << 40, nil, "more than the 68719476736-byte cap (--max-size)"},
		{"past a smaller cap", 1 << 30, []string{"--max-size", "1MiB"}, "more than the 1048576-byte cap (--max-size)"},
		{"past the free space", 1 << 55, []string{"--max-size", "65536TiB"}, "free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newHostileRegistry(t, nil)
			from := hugeArtifact(t, reg.host, tc.size)
			out := filepath.Join(t.TempDir(), "kit")
			_, errs, code := bale(t, "", append([]string{"pull", from, "-o", out}, tc.flags...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("pull: exit %d, want an error containing %q:\n%s", code, tc.want, errs)
			}
			if n := reg.blobGets.Load(); n != 0 {
				t.Errorf("%d blob requests before the refusal", n)
			}
			assertNothingPulled(t, out)
		})
	}
}

// TestPullHostileTitles: layer titles that carry terminal escapes, line
// breaks or U+2028 are refused by the schema's path rule (#RelPath), the
// error quotes them, and nothing is written.
func TestPullHostileTitles(t *testing.T) {
	reg := newHostileRegistry(t, nil)
	repo, err := name.NewRepository(reg.host + "/titles")
	if err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	body := static.NewLayer([]byte("x"), publish.MediaTypeFile)
	for _, l := range []v1.Layer{cfg, body} {
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatal(err)
		}
	}
	cd, _ := cfg.Digest()
	bd, _ := body.Digest()
	for i, title := range []string{"\x1b]0;owned\x07x", "\x1b[2J", "notes\n.txt", "a\u2028b", "kit/\u202egpj.exe"} {
		t.Run(fmt.Sprintf("%q", title), func(t *testing.T) {
			m := map[string]any{
				"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": publish.ArtifactType,
				"config": v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2},
				"layers": []v1.Descriptor{{MediaType: publish.MediaTypeFile, Digest: bd, Size: 1,
					Annotations: map[string]string{publish.AnnotationTitle: title}}},
			}
			raw, _ := json.Marshal(m)
			tag := fmt.Sprintf("t%d", i)
			req, _ := http.NewRequest(http.MethodPut, "http://"+reg.host+"/v2/titles/manifests/"+tag, strings.NewReader(string(raw)))
			req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			out := filepath.Join(t.TempDir(), "kit")
			stdout, errs, code := bale(t, "", "pull", "oci://"+reg.host+"/titles:"+tag, "-o", out)
			if code == 0 || !strings.Contains(errs, "is not a safe relative path") {
				t.Fatalf("pull: exit %d:\n%s", code, errs)
			}
			if !strings.Contains(errs, fmt.Sprintf("%q", title)) {
				t.Errorf("the error does not quote the title %q:\n%s", title, errs)
			}
			for _, bad := range []string{"\x1b", "\u2028", "\u202e", "\x07"} {
				if strings.Contains(errs+stdout, bad) {
					t.Errorf("output carries %q raw:\n%q", bad, errs+stdout)
				}
			}
			assertNothingPulled(t, out)
		})
	}
}

// silentListener accepts connections and never answers them.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestFarSideSilentServer: push, publish to oci:// and publish to s3://
// against a server that accepts connections and never answers stop at the
// idle timeout, naming it.
func TestFarSideSilentServer(t *testing.T) {
	root, err := testrepo.Root()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	pk, err := demopack.Build(context.Background(), root, filepath.Join(work, "out"), filepath.Join(work, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "bale-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "bale-test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(work, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(work, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, tc := range []struct {
		name string
		args func(addr string) []string
	}{
		{"push", func(addr string) []string { return []string{"push", pk, addr + "/airgap"} }},
		{"publish oci", func(addr string) []string {
			return []string{"publish", filepath.Dir(pk), "--to", "oci://" + addr + "/releases/airgap:v1"}
		}},
		{"publish s3", func(addr string) []string {
			return []string{"publish", filepath.Dir(pk), "--to", "s3://releases/v1", "--endpoint", "http://" + addr, "--path-style"}
		}},
		{"pull", func(addr string) []string {
			return []string{"pull", "oci://" + addr + "/releases/airgap:v1", "-o", filepath.Join(t.TempDir(), "kit")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := silentListener(t)
			args := append(tc.args(addr), "--timeout", "300ms", "--retries", "0")
			_, errs, code := bale(t, "", args...)
			if code == 0 || !strings.Contains(errs, "no response within 300ms (the idle timeout)") {
				t.Fatalf("%s: exit %d, want the idle timeout:\n%s", tc.name, code, errs)
			}
		})
	}
}

// TestHostileErrorText: text a registry chooses (its error message) reaches
// the terminal escaped: no escape sequence, bidirectional override or line
// separator is printed raw.
func TestHostileErrorText(t *testing.T) {
	reg := newHostileRegistry(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"\u001b]0;owned\u0007\u001b[2J\u202e\u2028gone"}]}`)
		return true
	})
	out := filepath.Join(t.TempDir(), "kit")
	_, errs, code := bale(t, "", "pull", "oci://"+reg.host+"/r:v1", "-o", out)
	if code == 0 || !strings.Contains(errs, "DENIED") {
		t.Fatalf("pull: exit %d:\n%s", code, errs)
	}
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\u2028"} {
		if strings.Contains(errs, bad) {
			t.Errorf("stderr carries %q raw: %q", bad, errs)
		}
	}
	if !strings.Contains(errs, `\x1b]0;owned\x07`) && !strings.Contains(errs, `\u001b]0;owned\u0007`) {
		t.Errorf("the escaped message is not shown: %q", errs)
	}
}
