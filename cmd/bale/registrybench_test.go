package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chartutil"
)

// BenchmarkProcessBuildRegistry measures, whole process and in one run,
// bale's cold build from a registry against the floor and against Hauler,
// then the rebuilds: one image changed, nothing changed into a fresh
// output directory, nothing changed into the same directory.
//
// The registry is go-containerregistry's pkg/registry on a real loopback
// socket, holding BALE_BENCH_IMAGES images (default 20), each a shared
// base layer (a real gzip'd tar of text files) plus BALE_BENCH_MIB MiB
// (default 50) of incompressible data; the spec adds 2 `helm create`
// charts. The floor is `cp -r` of the same blob files, `sha256sum` of the
// copies, and `sync`. Hauler is compared when BALE_BENCH_HAULER names its
// binary (`store sync` then `store save`, fresh store).
//
// Goals (issue 9): cold <= 0.6x Hauler, flat in the number of images; one
// image changed <= 0.15x cold; fresh directory <= cp of the artifacts;
// no-op <= one hash pass over them.
func BenchmarkProcessBuildRegistry(b *testing.B) {
	n := envInt(b, "BALE_BENCH_IMAGES", 20)
	mib := envInt(b, "BALE_BENCH_MIB", 50)
	bin := buildBale(b)
	work := b.TempDir()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// Blobs live on disk, as a registry's do, and the floor copies the
	// same files.
	regDir := filepath.Join(work, "registry")
	if err := os.MkdirAll(filepath.Join(regDir, "sha256"), 0o755); err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(regDir)))}
	go srv.Serve(ln)
	defer srv.Close()
	host := ln.Addr().String()

	w := newRegistryWorkload(b, work, host, n, int64(mib)<<20)
	hauler := os.Getenv("BALE_BENCH_HAULER")

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run := filepath.Join(work, fmt.Sprintf("run%d", i))
		syncDisk(b)
		floor := timeCmd(b, work, "sh", "-c", "cp -r registry/sha256 "+run+"-floor && sha256sum "+run+"-floor/* >/dev/null && sync")
		syncDisk(b)
		args := []string{"build", "spec", "-q", "-o", run + "-out", "--cache", run + "-cache", "--root", work}
		coldArgs := args
		if p := os.Getenv("BALE_BENCH_CPUPROFILE"); p != "" {
			// Where the cold build's time goes (go tool pprof).
			coldArgs = append(slices.Clone(args), "--cpuprofile", p)
		}
		cold, coldRSS := timeBale(b, bin, work, coldArgs...)
		syncDisk(b)
		noop, _ := timeBale(b, bin, work, args...)
		syncDisk(b)
		fresh, _ := timeBale(b, bin, work, "build", "spec", "-q", "-o", run+"-fresh", "--cache", run+"-cache", "--root", work)
		syncDisk(b)
		cpArtifacts := timeCmd(b, work, "sh", "-c", "cp -r "+run+"-out "+run+"-cp && sync")
		hashArtifacts := timeCmd(b, work, "sh", "-c", "sha256sum "+run+"-out/* >/dev/null")

		var haulerTime time.Duration
		if hauler != "" {
			syncDisk(b)
			haulerTime = timeCmd(b, work, "sh", "-c", fmt.Sprintf(
				"%s store sync --store %s-store -f hauler.yaml >/dev/null 2>&1 && %s store save --store %s-store --filename %s-hauler.tar.zst >/dev/null 2>&1 && sync",
				hauler, run, hauler, run, run))
		}

		// One image changed: a new top layer for image 0, the spec
		// re-planned, the warm cache reused.
		w.change(b, i)
		syncDisk(b)
		changedArgs := args
		if p := os.Getenv("BALE_BENCH_CPUPROFILE"); p != "" {
			changedArgs = append(slices.Clone(args), "--cpuprofile", p+".change1")
		}
		changed, _ := timeBale(b, bin, work, changedArgs...)

		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(cold.Seconds()/floor.Seconds(), "cold/floor")
		if haulerTime > 0 {
			b.ReportMetric(haulerTime.Seconds(), "hauler-s")
			b.ReportMetric(cold.Seconds()/haulerTime.Seconds(), "cold/hauler")
		}
		b.ReportMetric(changed.Seconds()/cold.Seconds(), "change1/cold")
		// Without reflinks a rebuild writes the whole pack again: its
		// floor is a copy of the artifacts.
		b.ReportMetric(changed.Seconds()/cpArtifacts.Seconds(), "change1/cp")
		b.ReportMetric(fresh.Seconds()/cpArtifacts.Seconds(), "fresh/cp")
		b.ReportMetric(noop.Seconds()/hashArtifacts.Seconds(), "noop/hash")
		b.ReportMetric(float64(coldRSS)/1024, "cold-rss-MiB")
		for _, d := range []string{"-floor", "-out", "-cache", "-fresh", "-cp", "-store", "-hauler.tar.zst"} {
			os.RemoveAll(run + d)
		}
		w.restore(b)
	}
}

func envInt(b *testing.B, key string, def int) int {
	b.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

// registryWorkload is the images pushed to the benchmark's registry, whose
// blob files (dir/registry/sha256) are also the floor's input.
type registryWorkload struct {
	dir, host string
	base      v1.Layer
	perImage  int64
	first     v1.Image // image 0 as first pushed, for restore
	rng       *rand.ChaCha8
}

func newRegistryWorkload(b *testing.B, dir, host string, n int, perImage int64) *registryWorkload {
	b.Helper()
	w := &registryWorkload{dir: dir, host: host, perImage: perImage, rng: rand.NewChaCha8([32]byte{'b', 'a', 'l', 'e'})}
	w.base = baseLayer(b)
	var spec, haulerImages strings.Builder
	spec.WriteString("package bench\n\nbootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n\timages: [\n")
	for i := 0; i < n; i++ {
		img := w.image(b)
		if i == 0 {
			w.first = img
		}
		ref := fmt.Sprintf("%s/bench/app%02d:1.0", host, i)
		w.push(b, ref, img)
		fmt.Fprintf(&spec, "\t\t{name: \"app%02d\", ref: %q},\n", i, ref)
		fmt.Fprintf(&haulerImages, "    - name: %s\n", ref)
	}
	spec.WriteString("\t]\n\tcharts: [\n")
	if err := os.MkdirAll(filepath.Join(dir, "charts"), 0o755); err != nil {
		b.Fatal(err)
	}
	for _, c := range []string{"api", "worker"} {
		if _, err := chartutil.Create(c, filepath.Join(dir, "charts")); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&spec, "\t\t{name: %q, path: \"../charts/%s\", version: \"0.1.0\"},\n", c, c)
	}
	spec.WriteString("\t]\n}\n")
	write := func(rel, data string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write("spec/pack.cue", spec.String())
	write("hauler.yaml", "apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n  name: bench\nspec:\n  images:\n"+
		haulerImages.String()+"---\napiVersion: content.hauler.cattle.io/v1\nkind: Charts\nmetadata:\n  name: bench-charts\nspec:\n  charts:\n"+
		"    - name: api\n      repoURL: charts\n    - name: worker\n      repoURL: charts\n")
	return w
}

// image is the shared base layer plus perImage fresh incompressible bytes.
func (w *registryWorkload) image(b *testing.B) v1.Image {
	b.Helper()
	data := make([]byte, w.perImage)
	w.rng.Read(data)
	top := static.NewLayer(data, types.OCILayer)
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), w.base, top)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// push writes img to the registry.
func (w *registryWorkload) push(b *testing.B, ref string, img v1.Image) {
	b.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		b.Fatalf("push %s: %v", ref, err)
	}
}

func (w *registryWorkload) change(b *testing.B, i int) {
	b.Helper()
	w.push(b, fmt.Sprintf("%s/bench/app00:1.0", w.host), w.image(b))
}

func (w *registryWorkload) restore(b *testing.B) {
	b.Helper()
	w.push(b, fmt.Sprintf("%s/bench/app00:1.0", w.host), w.first)
}

// baseLayer is a gzip'd tar of a few MiB of text, like a distribution's
// base layer: compressible, shared by every image.
func baseLayer(b *testing.B) v1.Layer {
	b.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for i := 0; i < 200; i++ {
		var body strings.Builder
		for j := 0; j < 400; j++ {
			fmt.Fprintf(&body, "line %d of file %d: the quick brown fox jumps over the lazy dog\n", j, i)
		}
		h := &tar.Header{Name: fmt.Sprintf("usr/share/doc/pkg%03d/README", i), Mode: 0o644, Size: int64(body.Len()), ModTime: time.Unix(1735689600, 0)}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		io.WriteString(tw, body.String())
	}
	tw.Close()
	gz.Close()
	return static.NewLayer(buf.Bytes(), types.OCILayer)
}
