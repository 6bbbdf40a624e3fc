package executor_test

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

// flippingRegistry is go-containerregistry's registry on a loopback
// socket, wrapped by a handler that, while flip is set, flips one byte of
// every blob response for digest target.
type flippingRegistry struct {
	host   string
	target atomic.Value // string digest
	flip   atomic.Bool
}

func startFlippingRegistry(t testing.TB) *flippingRegistry {
	t.Helper()
	fr := &flippingRegistry{}
	fr.target.Store("")
	next := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d := fr.target.Load().(string)
		if !fr.flip.Load() || d == "" || req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, "/blobs/"+d) {
			next.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if len(body) > 0 {
			body[len(body)/2] ^= 0x01
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	fr.host = u.Host
	return fr
}

// registryPlan pushes a random image with one layer of layerBytes to the
// registry and plans a pack holding it from a spec in a temp workspace.
func registryPlan(t testing.TB, fr *flippingRegistry, layerBytes int64) (*plan.Sealed, *source.Resolver, v1.Hash) {
	t.Helper()
	img, err := random.Image(layerBytes, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(fr.host + "/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()

	root := t.TempDir()
	os.Mkdir(filepath.Join(root, ".git"), 0o755)
	specDir := filepath.Join(root, "spec")
	os.MkdirAll(specDir, 0o755)
	src := `package p

bootstrapPack: {
	name:            "reg-pack"
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	images: [{name: "app", ref: "` + fr.host + `/team/app:1"}]
}
`
	if err := os.WriteFile(filepath.Join(specDir, "pack.cue"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, r := planSpec(t, root, specDir)
	return sp, r, layer
}

// planSpec plans the one spec in specDir of the workspace at root with the
// production resolver, as `bale plan` does. The plan goes through its file
// form, as `bale build --plan` reads it. (The package's internal tests
// have planWorkspace for the same, offline.)
func planSpec(t testing.TB, root, specDir string) (*plan.Sealed, *source.Resolver) {
	t.Helper()
	ctx := context.Background()
	insts, diags, err := spec.Load(ctx, []string{specDir}, spec.Options{})
	if err != nil || len(insts) != 1 {
		t.Fatalf("load spec: %v (%d instances) %v", err, len(insts), diags)
	}
	r, err := source.New(source.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Plan(ctx, insts[0], planner.Options{Resolver: r, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	// Through the file form, as bale build --plan reads it.
	if p, err = plan.Read(bytes.NewReader(p.Bytes())); err != nil {
		t.Fatal(err)
	}
	return p, r
}

// TestRegistryWrongBytes: with each fetched byte hashed once, by the store,
// a registry serving a flipped byte still fails the build, and nothing of
// it reaches the cache or the output directory.
func TestRegistryWrongBytes(t *testing.T) {
	t.Parallel()
	fr := startFlippingRegistry(t)
	p, r, layer := registryPlan(t, fr, 256<<10)
	fr.target.Store(layer.String())
	fr.flip.Store(true)
	cache, out := t.TempDir(), t.TempDir()
	store, err := cas.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	_, err = executor.Execute(context.Background(), p, r, executor.Options{OutDir: out, Store: store})
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") || !strings.Contains(err.Error(), layer.String()) {
		t.Fatalf("build from a registry serving wrong bytes: %v", err)
	}
	if ok, _ := store.Has(layer); ok {
		t.Error("the wrong bytes are in the cache")
	}
	filepath.WalkDir(cache, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".") {
			t.Errorf("left in the cache: %s", path)
		}
		return nil
	})
	if des, _ := os.ReadDir(out); len(des) != 0 {
		t.Errorf("left in the output directory: %v", des)
	}
	// The registry mended, the same cache builds.
	fr.flip.Store(false)
	if _, err := executor.Execute(context.Background(), p, r, executor.Options{OutDir: out, Store: store}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := store.Has(layer); !ok {
		t.Error("the layer is not in the cache")
	}
}

// BenchmarkRegistryFetch fetches one 64 MiB layer from a loopback registry
// into a fresh store: "raw" is the executor's path (OpenRawBlob, hashed once
// by the store), "verified" hashes on the way too (OpenBlob, twice).
func BenchmarkRegistryFetch(b *testing.B) {
	fr := startFlippingRegistry(b)
	const size = 64 << 20
	p, r, layer := registryPlan(b, fr, size)
	in := p.Plan().Inputs[0]
	for _, tc := range []struct {
		name string
		open func(context.Context, plan.Input, string) (io.ReadCloser, int64, error)
	}{
		{"raw", r.OpenRawBlob},
		{"verified", r.OpenBlob},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				store, err := cas.Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				rc, n, err := tc.open(context.Background(), in, layer.String())
				if err != nil {
					b.Fatal(err)
				}
				if err := store.Put(context.Background(), layer, n, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
