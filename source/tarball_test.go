package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/pack"
	"github.com/bale-build/bale/planner/spec"
)

// member is one entry of a crafted docker-save tarball.
type member struct {
	name     string
	body     []byte
	typeflag byte
	linkname string
	// size, if not zero, is the size the header declares; the body is
	// written as given, so the archive ends early.
	size int64
	// sparse, if not zero, makes the entry an old-GNU sparse file whose
	// expanded size is sparse: a tiny archive declaring a huge body.
	sparse int64
}

// dockerTar writes a tar of members, in order.
func dockerTar(t testing.TB, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: m.typeflag,
			Linkname: m.linkname, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if m.sparse != 0 {
			h.Format = tar.FormatGNU
		}
		if m.size != 0 {
			h.Size = m.size
		}
		if err := tw.Flush(); err != nil { // the previous entry's padding
			t.Fatal(err)
		}
		start := buf.Len()
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if m.sparse != 0 {
			makeSparse(buf.Bytes()[start:start+512], int64(len(m.body)), m.sparse)
		}
		if m.size != 0 {
			// A truncated archive: the header and what body there is.
			buf.Write(m.body)
			return buf.Bytes()
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// makeSparse turns a GNU-format regular file header block into an old-GNU
// sparse header ('S') holding data bytes at offset 0 and a hole up to
// realsize, as GNU tar --sparse writes it.
func makeSparse(blk []byte, data, realsize int64) {
	blk[156] = tar.TypeGNUSparse
	copy(blk[386:398], fmt.Sprintf("%011o\x00", 0))
	copy(blk[398:410], fmt.Sprintf("%011o\x00", data))
	copy(blk[483:495], fmt.Sprintf("%011o\x00", realsize))
	copy(blk[148:156], "        ")
	sum := 0
	for _, b := range blk {
		sum += int(b)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// tarManifest returns a docker manifest.json naming config and layers.
func tarManifest(config string, layers ...string) []byte {
	b, _ := json.Marshal([]map[string]any{{"Config": config, "RepoTags": []string{"example.com/evil:1"}, "Layers": layers}})
	return b
}

var (
	tarLayer  = makeTgz(&testing.T{}, []tarEntry{{name: "etc/hello", body: "hi\n"}})
	tarConfig = func() []byte {
		zr, err := gzip.NewReader(bytes.NewReader(tarLayer))
		if err != nil {
			panic(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			panic(err)
		}
		return []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digestOf(raw) + `"]}}`)
	}()
)

// TestDockerTarballHostile: every hostile docker-save tarball is refused
// before go-containerregistry reads it, with an error naming the entry.
func TestDockerTarballHostile(t *testing.T) {
	t.Parallel()
	good := func(extra ...member) []byte {
		ms := append([]member{{name: "config.json", body: tarConfig}, {name: "layer.tar.gz", body: tarLayer}}, extra...)
		return dockerTar(t, append(ms, member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")})...)
	}
	for _, tc := range []struct {
		name string
		tar  []byte
		want string
	}{
		{"sparse 2 GiB config", dockerTar(t,
			member{name: "config.json", body: tarConfig, sparse: 2 << 30},
			member{name: "layer.tar.gz", body: tarLayer},
			member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")}),
			`"config.json": unsafe archive entry: sparse entries are not allowed`},
		{"sparse layer", dockerTar(t,
			member{name: "config.json", body: tarConfig},
			member{name: "layer.tar.gz", body: tarLayer, sparse: 6 << 30},
			member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")}),
			`"layer.tar.gz": unsafe archive entry: sparse entries are not allowed`},
		{"config larger than its cap", dockerTar(t,
			member{name: "config.json", body: bytes.Repeat([]byte(" "), MaxConfigSize+1)},
			member{name: "layer.tar.gz", body: tarLayer},
			member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")}),
			`image 0 config: "config.json" declares 16777217 bytes, more than the 16777216-byte limit`},
		{"config reached through a link larger than its cap", dockerTar(t,
			member{name: "big", body: bytes.Repeat([]byte(" "), MaxConfigSize+1)},
			member{name: "config.json", typeflag: tar.TypeSymlink, linkname: "big"},
			member{name: "layer.tar.gz", body: tarLayer},
			member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")}),
			`image 0 config: "config.json" declares 16777217 bytes`},
		{"manifest.json larger than its cap", dockerTar(t,
			member{name: "manifest.json", body: []byte("[]"), size: pack.MaxManifestSize + 1}),
			"manifest.json declares 4194305 bytes, more than the 4194304-byte limit"},
		{"declared size 2^63-1", dockerTar(t,
			member{name: "layer.tar.gz", body: tarLayer, size: math.MaxInt64}),
			`"layer.tar.gz": archive limit exceeded: declares 9223372036854775807 bytes, more than the 8589934592-byte limit`},
		{"truncated", dockerTar(t, member{name: "layer.tar.gz", body: tarLayer, size: 1 << 20}),
			"truncated archive"},
		{"duplicate", good(member{name: "./config.json", body: []byte("{}")}), `"./config.json": unsafe archive entry: duplicate name`},
		{"hard link", good(member{name: "passwd", typeflag: tar.TypeLink, linkname: "/etc/passwd"}), `"passwd": unsafe archive entry: hard link`},
		{"device", good(member{name: "dev", typeflag: tar.TypeChar}), `"dev": unsafe archive entry: entry type`},
		{"traversal name", good(member{name: "../../etc/x", body: []byte("x")}), `"../../etc/x": unsafe archive entry`},
		{"symlink cycle", dockerTar(t,
			member{name: "a", typeflag: tar.TypeSymlink, linkname: "b"},
			member{name: "b", typeflag: tar.TypeSymlink, linkname: "a"},
			member{name: "manifest.json", body: tarManifest("a")}),
			`config: "a": more than 16 symbolic links, or a cycle`},
		{"missing layer", dockerTar(t,
			member{name: "config.json", body: tarConfig},
			member{name: "manifest.json", body: tarManifest("config.json", "nope.tar")}),
			`layer 0: "nope.tar" is not in the tarball`},
		{"manifest.json symlink", dockerTar(t, member{name: "manifest.json", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}),
			"manifest.json is a symbolic link"},
		{"no manifest.json", dockerTar(t, member{name: "x", body: []byte("x")}), "no manifest.json"},
		{"not json", dockerTar(t, member{name: "manifest.json", body: []byte("{")}), "tarball manifest.json: unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, "evil.tar"), tc.tar)
			r := newResolver(t, Options{Root: root, Offline: true})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := r.Image(bg, root, spec.Image{Name: "evil", Tarball: &spec.TarballSource{Path: "evil.tar"}})
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "evil.tar") {
				t.Fatalf("err = %v, want it to name evil.tar and say %q", err, tc.want)
			}
			// The inputs above are at most 17 MiB; what matters is that
			// nothing is allocated in proportion to what headers declare.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 40<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
		})
	}
	// The crafted tarball is otherwise sound: without the hostile entry it
	// loads, so the cases above fail for their entry, not for the frame.
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "ok.tar"), good())
	r := newResolver(t, Options{Root: root, Offline: true})
	in, err := r.Image(bg, root, spec.Image{Name: "ok", Tarball: &spec.TarballSource{Path: "ok.tar"}})
	if err != nil {
		t.Fatal(err)
	}
	if in.Image.Tags[0] != "example.com/evil:1" {
		t.Fatalf("tags %v", in.Image.Tags)
	}
	// A docker-style symbolic link to a repeated layer is followed inside
	// the archive.
	linked := dockerTar(t, member{name: "config.json", body: tarConfig}, member{name: "blobs/l.tar.gz", body: tarLayer},
		member{name: "l1/layer.tar.gz", typeflag: tar.TypeSymlink, linkname: "../blobs/l.tar.gz"},
		member{name: "manifest.json", body: tarManifest("config.json", "l1/layer.tar.gz")})
	writeFile(t, filepath.Join(root, "linked.tar"), linked)
	lin, err := r.Image(bg, root, spec.Image{Name: "ok", Tarball: &spec.TarballSource{Path: "linked.tar"}})
	if err != nil {
		t.Fatal(err)
	}
	if lin.Image.Manifests[0].Layers[0].Digest != digestOf(tarLayer) {
		t.Fatalf("layer %s, want %s", lin.Image.Manifests[0].Layers[0].Digest, digestOf(tarLayer))
	}
}

// TestSparseTarballMemoryBounded is the reported attack: a 10 KiB tarball
// whose config is a sparse 2 GiB entry made `bale plan` allocate 4.6 GB.
func TestSparseTarballMemoryBounded(t *testing.T) {
	t.Parallel()
	evil := dockerTar(t,
		member{name: "config.json", body: tarConfig, sparse: 2 << 30},
		member{name: "layer.tar.gz", body: tarLayer},
		member{name: "manifest.json", body: tarManifest("config.json", "layer.tar.gz")})
	if len(evil) > 10<<10 {
		t.Fatalf("crafted tarball is %d bytes", len(evil))
	}
	// The attack is real: a tar reader sees a 2 GiB config.
	if hdr, err := tar.NewReader(bytes.NewReader(evil)).Next(); err != nil || hdr.Size != 2<<30 {
		t.Fatalf("crafted config entry: %v, %v", hdr, err)
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "evil.tar"), evil)
	r := newResolver(t, Options{Root: root, Offline: true})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.Image(bg, root, spec.Image{Name: "evil", Tarball: &spec.TarballSource{Path: "evil.tar"}})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "sparse entries are not allowed") {
		t.Fatalf("err = %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("allocated %d KiB", alloc>>10)
	}
}

// TestHugeDeclaredSize: a descriptor declaring 2^63-1 bytes gets a message
// saying so (it used to overflow into "content is 0 bytes"), at plan time
// and when a hand-edited plan declares it.
func TestHugeDeclaredSize(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	config := []byte(`{"os":"linux","architecture":"amd64"}`)
	huge := func(b []byte) map[string]any {
		d := desc("application/vnd.oci.image.layer.v1.tar+gzip", b)
		d["size"] = int64(math.MaxInt64)
		return d
	}
	layerHuge, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{huge([]byte("layer"))},
	})
	configHuge, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        huge(config),
		"layers":        []any{},
	})
	r := newResolver(t, Options{Root: root, Offline: true})
	for _, tc := range []struct {
		name  string
		index map[string]any
		blobs [][]byte
		want  string
	}{
		{"layer", map[string]any{"schemaVersion": 2, "manifests": []any{desc("application/vnd.oci.image.manifest.v1+json", layerHuge)}},
			[][]byte{layerHuge, config}, "layer 0 " + digestOf([]byte("layer")) + ": declared size 9223372036854775807 exceeds the 8589934592-byte limit"},
		{"config", map[string]any{"schemaVersion": 2, "manifests": []any{desc("application/vnd.oci.image.manifest.v1+json", configHuge)}},
			[][]byte{configHuge, config}, "config " + digestOf(config) + ": declared size 9223372036854775807 exceeds the 16777216-byte limit"},
		{"index.json entry", map[string]any{"schemaVersion": 2, "manifests": []any{huge(layerHuge)}},
			[][]byte{layerHuge, config}, "index.json: entry 0 " + digestOf(layerHuge) + ": declared size 9223372036854775807 exceeds the 4194304-byte limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeLayout(t, filepath.Join(root, tc.name), tc.index, tc.blobs...)
			_, err := r.Image(bg, root, spec.Image{Name: "huge", Layout: &spec.LayoutSource{Path: tc.name}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}

	// A plan edited to declare 2^63-1 for a layer the layout holds.
	layer := []byte("layer")
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)},
	})
	writeLayout(t, filepath.Join(root, "ok"), map[string]any{"schemaVersion": 2, "manifests": []any{desc("application/vnd.oci.image.manifest.v1+json", m)}}, m, config, layer)
	in, err := r.Image(bg, root, spec.Image{Name: "ok", Layout: &spec.LayoutSource{Path: "ok"}})
	if err != nil {
		t.Fatal(err)
	}
	in.Image.Manifests[0].Layers[0].Size = math.MaxInt64
	want := "the plan gives blob " + digestOf(layer) + " a size of 9223372036854775807 bytes, outside 0..8589934592"
	if _, _, err := r.OpenBlob(bg, in, digestOf(layer)); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("OpenBlob: err = %v, want %q", err, want)
	}
	if _, ok := r.BlobFile(bg, in, digestOf(layer)); ok {
		t.Fatal("BlobFile vouched for a blob of size 2^63-1")
	}
}
