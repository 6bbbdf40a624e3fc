package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// writeLayout writes an OCI layout whose index.json is index and whose
// blobs are the given contents.
func writeLayout(t *testing.T, dir string, index any, blobs ...[]byte) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	b, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "index.json"), b)
	for _, blob := range blobs {
		writeFile(t, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digestOf(blob), "sha256:")), blob)
	}
}

func desc(mt string, b []byte) map[string]any {
	return map[string]any{"mediaType": mt, "digest": digestOf(b), "size": len(b)}
}

func TestLayoutHostileDigest(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// Something a traversal would reach.
	writeFile(t, filepath.Join(root, "x"), []byte(`{"schemaVersion":2}`))
	writeLayout(t, filepath.Join(root, "a", "b", "layout"), map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest":    "sha256:../../../../x",
			"size":      19,
		}},
	})
	r := newResolver(t, Options{Root: root})
	_, err := r.Image(bg, root, spec.Image{Name: "evil", Layout: &spec.LayoutSource{Path: "a/b/layout"}})
	if err == nil || !strings.Contains(err.Error(), `"sha256:../../../../x"`) {
		t.Fatalf("err = %v", err)
	}
	// OpenBlob refuses a hostile digest in a plan too.
	in := plan.Input{Kind: plan.KindImage, Name: "evil", Source: plan.Source{Type: plan.SourceLayout, Path: "a/b/layout"},
		Digest: "sha256:../../../../x", Image: &plan.Image{}}
	if _, _, err := r.OpenBlob(bg, in, in.Digest); err == nil {
		t.Fatal("OpenBlob took a hostile digest")
	}
}

func TestAbsurdManifests(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	config := []byte(`{"os":"linux","architecture":"amd64"}`)
	layer := desc("application/vnd.oci.image.layer.v1.tar+gzip", []byte("layer"))
	layers := make([]any, pack.MaxLayers+1)
	for i := range layers {
		layers[i] = layer
	}
	many, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        layers,
	})
	huge, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"annotations":   map[string]string{"pad": strings.Repeat("x", pack.MaxManifestSize)},
	})
	badLayer, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{map[string]any{"mediaType": "x", "digest": "sha256:/etc/passwd", "size": 1}},
	})
	r := newResolver(t, Options{Root: root})
	for _, tc := range []struct {
		name     string
		manifest []byte
		want     string
	}{
		{"too many layers", many, "1001 layers, more than the limit of 1000"},
		{"too large", huge, "byte limit"},
		{"bad layer digest", badLayer, `"sha256:/etc/passwd"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(root, strings.ReplaceAll(tc.name, " ", "-"))
			writeLayout(t, dir, map[string]any{
				"schemaVersion": 2,
				"manifests":     []any{desc("application/vnd.oci.image.manifest.v1+json", tc.manifest)},
			}, tc.manifest, config)
			_, err := r.Image(bg, root, spec.Image{Name: "absurd", Layout: &spec.LayoutSource{Path: filepath.Base(dir)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestPathLeavesRoot(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), []byte("secret"))
	root := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, Options{Root: root})
	for p, want := range map[string]string{
		"../" + filepath.Base(outside) + "/secret": "leaves the workspace root",
		filepath.Join(outside, "secret"):           "leaves the workspace root",
		"link":                                     "link is a symbolic link",
	} {
		_, err := r.File(bg, root, plan.KindFile, "f", spec.File{Path: p})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: err = %v", p, err)
		}
	}
	for _, c := range []spec.Chart{{Name: "c", Path: "../x"}, {Name: "c", Path: "link"}} {
		if _, err := r.Chart(bg, root, c); err == nil || !strings.Contains(err.Error(), "leaves the workspace root") && !strings.Contains(err.Error(), "link is a symbolic link") {
			t.Fatalf("chart %s: err = %v", c.Path, err)
		}
	}
	if _, err := r.Image(bg, root, spec.Image{Name: "i", Layout: &spec.LayoutSource{Path: "../.."}}); err == nil || !strings.Contains(err.Error(), "leaves the workspace root") {
		t.Fatalf("layout: err = %v", err)
	}
	// A plan naming a path outside the root is refused at open time.
	in := plan.Input{Kind: plan.KindFile, Name: "f", Source: plan.Source{Type: plan.SourceFile, Path: "link"}, Digest: digestOf([]byte("secret")), Size: 6}
	if _, _, err := r.OpenFile(bg, in); err == nil || !strings.Contains(err.Error(), "link is a symbolic link") {
		t.Fatalf("OpenFile: err = %v", err)
	}
	in.Source.Path = "../secret"
	if _, _, err := r.OpenFile(bg, in); err == nil {
		t.Fatal("OpenFile took ../")
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	body := []byte("#!/bin/sh\necho hi\n")
	writeFile(t, filepath.Join(root, "runner", "bin", "tool"), body)
	mux := http.NewServeMux()
	mux.HandleFunc("/tool", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r := newResolver(t, Options{Root: root})
	specDir := filepath.Join(root, "runner")

	in, err := r.File(bg, specDir, plan.KindFile, "runner/bin/tool", spec.File{Path: "bin/tool", Dest: "bin/tool", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, in)
	want := plan.Input{Kind: plan.KindFile, Name: "runner/bin/tool", Source: plan.Source{Type: plan.SourceFile, Path: "runner/bin/tool"}, Digest: digestOf(body), Size: int64(len(body))}
	if fmt.Sprint(in) != fmt.Sprint(want) {
		t.Fatalf("input %+v, want %+v", in, want)
	}
	if _, err := r.File(bg, specDir, plan.KindFile, "x", spec.File{Path: "bin/tool", Digest: digestOf(nil)}); err == nil ||
		!strings.Contains(err.Error(), digestOf(nil)) || !strings.Contains(err.Error(), digestOf(body)) {
		t.Fatalf("pin mismatch: err = %v", err)
	}

	// URL files: downloaded and checked against the required digest.
	u, err := r.File(bg, specDir, plan.KindFile, "u", spec.File{URL: srv.URL + "/tool", Digest: digestOf(body)})
	if err != nil {
		t.Fatal(err)
	}
	if u.Source != (plan.Source{Type: plan.SourceURL, URL: srv.URL + "/tool"}) || u.Size != int64(len(body)) {
		t.Fatalf("url input %+v", u)
	}
	if _, err := r.File(bg, specDir, plan.KindFile, "u", spec.File{URL: srv.URL + "/tool"}); err == nil || !strings.Contains(err.Error(), "must carry its digest") {
		t.Fatalf("no digest: err = %v", err)
	}
	if _, err := r.File(bg, specDir, plan.KindFile, "u", spec.File{URL: srv.URL + "/tool", Digest: digestOf(nil)}); err == nil || !strings.Contains(err.Error(), digestOf(body)) {
		t.Fatalf("url mismatch: err = %v", err)
	}
	if _, err := r.File(bg, specDir, plan.KindFile, "u", spec.File{URL: srv.URL + "/missing", Digest: digestOf(nil)}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: err = %v", err)
	}
	rc, _, err := r.OpenFile(bg, u)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readAll(rc); err != nil || string(b) != string(body) {
		t.Fatalf("OpenFile url: %v", err)
	}

	// Keys: a file key is a file input of kind key; an env key is no input.
	k, err := r.File(bg, specDir, plan.KindKey, "dev.pub", spec.File{Path: "bin/tool"})
	if err != nil || k.Kind != plan.KindKey {
		t.Fatalf("key: %+v %v", k, err)
	}
	if _, err := r.File(bg, specDir, plan.KindKey, "signing", spec.File{Path: "env://COSIGN_KEY"}); !errors.Is(err, ErrEnvKey) {
		t.Fatalf("env key: err = %v", err)
	}
	if v, ok := EnvKey("env://COSIGN_KEY"); !ok || v != "COSIGN_KEY" {
		t.Fatalf("EnvKey = %q, %v", v, ok)
	}
	if _, ok := EnvKey("keys/cosign.key"); ok {
		t.Fatal("EnvKey took a path")
	}

	// Changed after planning: same size, other bytes → error at EOF;
	// other size → error at open.
	same := []byte("#!/bin/sh\necho HI\n")
	writeFile(t, filepath.Join(root, "runner", "bin", "tool"), same)
	rc, _, err = r.OpenFile(bg, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "changed since planning") {
		t.Fatalf("same size: err = %v", err)
	}
	rc.Close()
	writeFile(t, filepath.Join(root, "runner", "bin", "tool"), []byte("x"))
	if _, _, err := r.OpenFile(bg, in); err == nil || !strings.Contains(err.Error(), "changed since planning") {
		t.Fatalf("other size: err = %v", err)
	}
}

func TestLayoutAndTarballChangedAfterPlanning(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	img := randomImage(t, "linux", "amd64", "")
	lp, err := layout.Write(filepath.Join(root, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.com/app:1")
	if err := tarball.WriteToFile(filepath.Join(root, "app.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, Options{Root: root, Offline: true})
	lin, err := r.Image(bg, root, spec.Image{Name: "app", Layout: &spec.LayoutSource{Path: "layout"}})
	if err != nil {
		t.Fatal(err)
	}
	tin, err := r.Image(bg, root, spec.Image{Name: "app", Tarball: &spec.TarballSource{Path: "app.tar", Tag: "example.com/app:1"}})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if lin.Digest != d.String() {
		t.Fatalf("layout digest %s, want %s", lin.Digest, d)
	}
	if tin.Image.Tags[0] != "example.com/app:1" {
		t.Fatalf("tarball tags %v", tin.Image.Tags)
	}

	// Overwrite a layer blob in place with other bytes of the same size.
	l := lin.Image.Manifests[0].Layers[0]
	blob := filepath.Join(root, "layout", "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:"))
	b, _ := os.ReadFile(blob)
	b[len(b)-1] ^= 0xff
	writeFile(t, blob, b)
	rc, _, err := r.OpenBlob(bg, lin, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(rc); err == nil || !strings.Contains(err.Error(), "changed since planning") {
		t.Fatalf("layout layer: err = %v", err)
	}
	// Replace the tarball with another image under the same tag.
	if err := tarball.WriteToFile(filepath.Join(root, "app.tar"), tag, randomImage(t, "linux", "amd64", "")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.OpenBlob(bg, tin, tin.Digest); err == nil {
		t.Fatal("tarball manifest changed without error")
	}
	if rc, _, err := r.OpenBlob(bg, tin, tin.Image.Manifests[0].Layers[0].Digest); err == nil {
		if _, err := readAll(rc); err == nil {
			t.Fatal("tarball layer changed without error")
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	host := startRegistry(t, nil)
	const n = 16
	for i := range n {
		push(t, fmt.Sprintf("%s/team/app%d:1", host, i), randomImage(t, "linux", "amd64", ""))
	}
	r, dir := fixtureResolver(t)
	r.opts.Offline = false
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			in, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: fmt.Sprintf("%s/team/app%d:1", host, i)})
			if err == nil {
				var rc io.ReadCloser
				if rc, _, err = r.OpenBlob(bg, in, in.Image.Manifests[0].Layers[0].Digest); err == nil {
					_, err = readAll(rc)
				}
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := r.Chart(bg, dir, spec.Chart{Name: "airgap-controller", Path: fx("charts/airgap-controller")})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
