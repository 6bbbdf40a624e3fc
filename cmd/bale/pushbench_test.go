package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// diskRegistry serves go-containerregistry's registry with blobs on disk
// under dir, on a loopback socket, until the benchmark ends.
func diskRegistry(b *testing.B, dir string) string {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(dir)))}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// BenchmarkProcessPush measures, in one run, the whole-process `bale push`
// of a BALE_BENCH_GIB GiB (default 1) pack (20 images of incompressible
// layers, 3 charts) into an empty loopback registry with blobs on disk:
// cold (verify, scan, upload), again (every blob found and read back) and
// again with --trust-existing (HEAD only); beside it `crane push --index`
// of the same OCI layout into another empty registry and, with
// BALE_BENCH_HAULER=/path/to/hauler, Hauler's `store copy` of the same
// images from a synced store into a third. Ratios are against crane.
func BenchmarkProcessPush(b *testing.B) {
	gib := 1.0
	if v := os.Getenv("BALE_BENCH_GIB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("BALE_BENCH_GIB=%q: want a positive number", v)
		}
		gib = f
	}
	crane, err := exec.LookPath("crane")
	if err != nil {
		b.Skip("crane is not on PATH")
	}
	hauler := os.Getenv("BALE_BENCH_HAULER")
	bin := buildBale(b)
	work := b.TempDir()
	total := int64(gib * (1 << 30))
	writeWorkload(b, work, 20, total)
	timeBale(b, bin, work, "build", "spec", "-q", "-o", filepath.Join(work, "out"), "--cache", filepath.Join(work, "cache"), "--root", work)
	pk := filepath.Join(work, "out", "bootstrap-pack-v1.tar")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		run := filepath.Join(work, fmt.Sprintf("run%d", i))
		baleReg := diskRegistry(b, run+"-bale")
		craneReg := diskRegistry(b, run+"-crane")
		b.StartTimer()
		syncDisk(b)
		cold, rss := timeBale(b, bin, work, "push", pk, baleReg+"/bench")
		again, _ := timeBale(b, bin, work, "push", pk, baleReg+"/bench")
		trusted, _ := timeBale(b, bin, work, "push", pk, baleReg+"/bench", "--trust-existing")
		syncDisk(b)
		cr := timeCmd(b, work, crane, "push", "--index", "oci", craneReg+"/bench/all:1.0")
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(again.Seconds(), "again-s")
		b.ReportMetric(trusted.Seconds(), "trusted-s")
		b.ReportMetric(cr.Seconds(), "crane-s")
		b.ReportMetric(cold.Seconds()/cr.Seconds(), "cold/crane")
		b.ReportMetric(float64(rss)/1024, "cold-rss-MiB")
		b.ReportMetric(float64(total)/(1<<20)/cold.Seconds(), "cold-MiB/s")
		if hauler != "" {
			// The store is filled from crane's registry outside the timing;
			// store copy is what stands beside bale push.
			b.StopTimer()
			var images strings.Builder
			for j := 0; j < 20; j++ {
				fmt.Fprintf(&images, "    - name: %s/bench/all:1.0\n", craneReg)
			}
			manifest := filepath.Join(run + "-hauler.yaml")
			os.WriteFile(manifest, []byte("apiVersion: content.hauler.cattle.io/v1\nkind: Images\nmetadata:\n  name: bench\nspec:\n  images:\n"+images.String()), 0o644)
			timeCmd(b, work, "sh", "-c", fmt.Sprintf("%s store sync --store %s-store -f %s >/dev/null 2>&1", hauler, run, manifest))
			haulerReg := diskRegistry(b, run+"-hauler")
			b.StartTimer()
			syncDisk(b)
			h := timeCmd(b, work, hauler, "store", "copy", "--store", run+"-store", "--plain-http", "registry://"+haulerReg)
			b.ReportMetric(h.Seconds(), "hauler-s")
			b.ReportMetric(cold.Seconds()/h.Seconds(), "cold/hauler")
		}
	}
}
