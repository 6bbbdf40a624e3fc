package push

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"sigs.k8s.io/yaml"

	"github.com/bale-build/bale/inspect"
	"github.com/bale-build/bale/testsupport/demopack"
	"github.com/bale-build/bale/testsupport/tooltest"
)

// demoPack is the repository's bootstrap pack, built once for these tests.
var demoPack demopack.Once

// demo returns the demo pack's path.
func demo(t *testing.T) string {
	t.Helper()
	p, err := demoPack.Path(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	_ = demoPack.Remove()
	os.Exit(code)
}

// counts tallies the requests a registry served, by kind.
type counts struct {
	all, uploads, blobGets, blobHeads, manifestPuts atomic.Int64
}

// testRegistry is go-containerregistry's registry on a loopback socket,
// counting requests; wrap, if set, may answer a request itself.
func testRegistry(t *testing.T, wrap func(w http.ResponseWriter, r *http.Request) bool) (string, *counts) {
	t.Helper()
	c := &counts{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.all.Add(1)
		switch {
		case strings.Contains(r.URL.Path, "/blobs/uploads"):
			c.uploads.Add(1)
		case strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet:
			c.blobGets.Add(1)
		case strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodHead:
			c.blobHeads.Add(1)
		case strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodPut:
			c.manifestPuts.Add(1)
		}
		if wrap != nil && wrap(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), c
}

func opts(target string) Options {
	return Options{Target: target, Keychain: authn.NewMultiKeychain()}
}

// TestPushDemo pushes the real pack into a loopback registry and checks
// what arrived: every image validates (in process, and with crane validate
// --remote), keeps its digest and tags; every chart is pulled back by helm
// byte-identical and lints; the values-airgap files point at the mirror.
// A second push uploads no blob.
func TestPushDemo(t *testing.T) {
	p := demo(t)
	host, c := testRegistry(t, nil)
	c0, err := inspect.Scan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	o := opts(host + "/airgap")
	o.ValuesDir = t.TempDir()
	rep, err := Push(context.Background(), p, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs.Uploaded == 0 || rep.Blobs.Existing != 0 {
		t.Errorf("first push: blobs %+v, want all uploaded", rep.Blobs)
	}
	wantRefs := map[string]string{
		host + "/airgap/stellaops/airgap-controller:1.4.2": "",
		host + "/airgap/stellaops/mirror-agent:0.9.1":      "",
		host + "/airgap/stellaops/toolbox:2.0.0":           "",
		host + "/airgap/charts/airgap-controller:1.4.2":    "",
		host + "/airgap/charts/mirror-agent:0.9.1":         "",
	}
	for _, im := range c0.Report.Images {
		wantRefs[host+"/airgap/"+im.Tags[0]] = im.LayoutDigest
	}
	if len(rep.Refs) != 5 {
		t.Fatalf("refs %+v, want 5", rep.Refs)
	}
	crane, haveCrane := tooltest.Find(t, "crane")
	helm, haveHelm := tooltest.Find(t, "helm")
	for _, r := range rep.Refs {
		want, ok := wantRefs[r.Ref]
		if !ok {
			t.Errorf("unexpected ref %s", r.Ref)
			continue
		}
		if want != "" && r.Digest != want {
			t.Errorf("%s: digest %s, the pack's is %s", r.Ref, r.Digest, want)
		}
		if _, err := name.ParseReference(r.Ref); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "image" {
			if err := demopack.ValidatePushed(r.Ref); err != nil {
				t.Error(err)
			}
			if haveCrane {
				if out, err := exec.Command(crane, "validate", "--remote", r.Ref).CombinedOutput(); err != nil {
					t.Errorf("crane validate --remote %s: %v\n%s", r.Ref, err, out)
				}
			}
			continue
		}
		if !haveHelm {
			continue
		}
		dir := t.TempDir()
		i := strings.LastIndex(r.Ref, ":")
		repo, ver := r.Ref[:i], r.Ref[i+1:]
		cmd := exec.Command(helm, "pull", "oci://"+repo, "--version", ver, "--plain-http", "-d", dir)
		cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_CACHE_HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm pull %s: %v\n%s", r.Ref, err, out)
			continue
		}
		tgz := filepath.Join(dir, r.Name+"-"+ver+".tgz")
		got, err := os.ReadFile(tgz)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(got)
		for _, ch := range c0.Report.Charts {
			if ch.Name == r.Name && ch.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("helm pull %s: sha256 %x, the pack's chart is %s", r.Ref, sum, ch.SHA256)
			}
		}
		if out, err := exec.Command(helm, "lint", tgz).CombinedOutput(); err != nil {
			t.Errorf("helm lint %s: %v\n%s", tgz, err, out)
		}
		values := filepath.Join(o.ValuesDir, r.Name+"-"+ver+".values-airgap.yaml")
		if out, err := exec.Command(helm, "template", "x", tgz, "-f", values).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("image: \""+host+"/airgap/library/nginx:"+ver+"\"")) {
			t.Errorf("helm template %s -f %s: %v; want the mirror's image reference in:\n%s", tgz, values, err, out)
		}
	}
	if !haveCrane || !haveHelm {
		t.Logf("crane (%v) or helm (%v) missing: checked in process only", haveCrane, haveHelm)
	}
	if len(rep.ValuesFiles) != 2 {
		t.Fatalf("values files %v, want 2", rep.ValuesFiles)
	}
	b, err := os.ReadFile(filepath.Join(o.ValuesDir, "airgap-controller-1.4.2.values-airgap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]map[string]string
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if got := v["image"]["repository"]; got != host+"/airgap/library/nginx" || len(v) != 1 || len(v["image"]) != 1 {
		t.Errorf("values-airgap:\n%s\nwant only image.repository: %s/airgap/library/nginx", b, host)
	}

	// The second push finds every blob, reads each back, uploads none.
	before := c.uploads.Load()
	rep2, err := Push(context.Background(), p, opts(host+"/airgap"))
	if err != nil {
		t.Fatal(err)
	}
	if n := c.uploads.Load() - before; n != 0 || rep2.Blobs.Uploaded != 0 {
		t.Errorf("second push: %d upload requests, report %+v; want none", n, rep2.Blobs)
	}
	if rep2.Blobs.Existing != rep.Blobs.Uploaded || rep2.Blobs.Checked != rep2.Blobs.Existing {
		t.Errorf("second push: blobs %+v, want the %d uploaded before found and checked", rep2.Blobs, rep.Blobs.Uploaded)
	}
	// With --trust-existing it reads nothing back either.
	gets := c.blobGets.Load()
	o3 := opts(host + "/airgap")
	o3.TrustExisting = true
	if _, err := Push(context.Background(), p, o3); err != nil {
		t.Fatal(err)
	}
	if n, u := c.blobGets.Load()-gets, c.uploads.Load()-before; n != 0 || u != 0 {
		t.Errorf("third push (trust existing): %d blob GETs, %d uploads; want none", n, u)
	}
}

// TestRefusesBadPack: a pack that fails verification, or whose sha256 is
// not the expected one, is refused before the registry sees one request.
func TestRefusesBadPack(t *testing.T) {
	p := demo(t)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(good)
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0xff
	truncated := good[:len(good)-100]
	for _, tc := range []struct {
		name    string
		data    []byte
		sha     string
		wantErr string
	}{
		{"flipped byte", corrupt, "", "fails verification"},
		{"truncated", truncated, "", "fails verification"},
		{"appended", append(bytes.Clone(good), "extra"...), "", "fails verification"},
		{"wrong --sha256", good, strings.Repeat("0", 64), "--sha256 expects"},
		{"good", good, hex.EncodeToString(sum[:]), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, c := testRegistry(t, nil)
			path := filepath.Join(t.TempDir(), demopack.Name)
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			o := opts(host)
			o.SHA256 = tc.sha
			_, err := Push(context.Background(), path, o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Push: %v, want an error containing %q", err, tc.wantErr)
			}
			if n := c.all.Load(); n != 0 {
				t.Errorf("the registry served %d requests for a refused pack", n)
			}
		})
	}
}

// TestLyingRegistry: a registry that answers HEAD 200 for a blob it does
// not serve (or serves wrong) is caught by the read-back.
func TestLyingRegistry(t *testing.T) {
	p := demo(t)
	c0, err := inspect.Scan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	layer := c0.Report.Layers[0]
	for _, tc := range []struct {
		name    string
		get     func(w http.ResponseWriter)
		wantErr string
	}{
		{"missing", func(w http.ResponseWriter) { http.Error(w, "no", http.StatusNotFound) }, "which the registry said it has"},
		{"wrong bytes", func(w http.ResponseWriter) { w.Write(make([]byte, layer.Size)) }, "serves"},
		{"short", func(w http.ResponseWriter) { w.Write([]byte("x")) }, "serves 1 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, _ := testRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.Digest) {
					return false
				}
				switch r.Method {
				case http.MethodHead:
					w.Header().Set("Content-Length", strconv.FormatInt(layer.Size, 10))
					w.Header().Set("Docker-Content-Digest", layer.Digest)
					w.WriteHeader(http.StatusOK)
					return true
				case http.MethodGet:
					tc.get(w)
					return true
				}
				return false
			})
			_, err := Push(context.Background(), p, opts(host+"/x"))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), layer.Digest) {
				t.Fatalf("Push: %v, want an error about %s containing %q", err, layer.Digest, tc.wantErr)
			}
		})
	}
	// A HEAD whose length disagrees with the pack is caught without a GET.
	host, _ := testRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/blobs/"+layer.Digest) {
			w.Header().Set("Content-Length", "1")
			w.WriteHeader(http.StatusOK)
			return true
		}
		return false
	})
	o := opts(host + "/x")
	o.TrustExisting = true
	if _, err := Push(context.Background(), p, o); err == nil || !strings.Contains(err.Error(), "with 1 bytes") {
		t.Fatalf("Push: %v, want the length disagreement", err)
	}
}
