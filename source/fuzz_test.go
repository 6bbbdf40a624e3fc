package source

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bale-build/bale/planner/spec"
)

// FuzzDockerTarball feeds arbitrary bytes to the docker-save tarball
// scanner and, when it accepts them, to go-containerregistry's loader the
// way the resolver uses it: nothing may panic, and nothing the scanner
// accepts may make the loader read a config past MaxConfigSize.
func FuzzDockerTarball(f *testing.F) {
	f.Add(dockerTar(f, member{name: "config.json", body: tarConfig}, member{name: "layer.tar.gz", body: tarLayer},
		member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")}))
	f.Add(dockerTar(f, member{name: "config.json", body: tarConfig}, member{name: "blobs/l", body: tarLayer},
		member{name: "l/layer.tar", typeflag: tar.TypeSymlink, linkname: "../blobs/l"},
		member{name: "manifest.json", body: tarManifest("config.json", "l/layer.tar")}))
	f.Add(dockerTar(f, member{name: "config.json", body: tarConfig, sparse: 1 << 30}, member{name: "manifest.json", body: tarManifest("config.json")}))
	if b, err := os.ReadFile(filepath.Join("..", "testdata", "images", "toolbox.tar")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := scanDockerTar(bg, bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(m) != 1 {
			return
		}
		opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		img, err := tarball.Image(opener, nil)
		if err != nil {
			return
		}
		if cfg, err := img.RawConfigFile(); err == nil && len(cfg) > MaxConfigSize {
			t.Fatalf("loader read a %d-byte config", len(cfg))
		}
		_, _ = img.RawManifest()
		if ls, err := img.Layers(); err == nil {
			for _, l := range ls {
				if rc, err := l.Compressed(); err == nil {
					_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
					rc.Close()
				}
			}
		}
	})
}

// FuzzLayout writes arbitrary index.json and manifest bytes into an OCI
// layout in a temp workspace (the manifest stored under its digest, next
// to a real config and layer) and pins it: nothing may panic, and a pinned
// image must be valid.
func FuzzLayout(f *testing.F) {
	config := []byte(`{"os":"linux","architecture":"amd64"}`)
	layer := []byte("layer")
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)},
	})
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{desc("application/vnd.oci.image.manifest.v1+json", manifest)}})
	f.Add(index, manifest)
	nested, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digestOf(manifest), "size": len(manifest),
			"platform": map[string]any{"os": "linux", "architecture": "amd64"}}}})
	f.Add(index, nested)
	f.Add([]byte(`{"manifests":[{"digest":"sha256:../../x","size":9223372036854775807}]}`), manifest)
	root := f.TempDir()
	r := newResolver(f, Options{Root: root, Offline: true})
	f.Fuzz(func(t *testing.T, index, manifest []byte) {
		dir := filepath.Join(root, "lay")
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "index.json"), index)
		for _, b := range [][]byte{manifest, config, layer} {
			writeFile(t, filepath.Join(dir, "blobs", "sha256", digestOf(b)[len("sha256:"):]), b)
		}
		// An index entry may name the manifest by digest: make that
		// reachable whatever the fuzzer does to index.json.
		in, err := r.Image(bg, root, spec.Image{Name: "fuzz", Layout: &spec.LayoutSource{Path: "lay"}})
		if err != nil {
			return
		}
		mustValid(t, in)
	})
}
