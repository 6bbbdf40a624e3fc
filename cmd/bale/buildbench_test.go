package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
)

// BenchmarkProcessBuildPack measures, in one run and side by side, the
// whole-process cold `bale build` of a generated workload, the warm rebuild,
// and the floor: copying the same source bytes with cp and hashing them
// with sha256sum. The workload is BALE_BENCH_GIB GiB (default 1) of
// incompressible layer data across 20 images in an OCI layout, plus 3
// charts. Goals: cold within 1.3x the floor, warm under 5% of cold, peak
// RSS under 256 MiB and flat across workload sizes.
func BenchmarkProcessBuildPack(b *testing.B) {
	gib := 1.0
	if v := os.Getenv("BALE_BENCH_GIB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("BALE_BENCH_GIB=%q: want a positive number", v)
		}
		gib = f
	}
	bin := buildBale(b)
	work := b.TempDir()
	total := int64(gib * (1 << 30))
	writeWorkload(b, work, 20, total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run := filepath.Join(work, fmt.Sprintf("run%d", i))
		// Each measurement starts with no dirty pages left by the one
		// before: otherwise bale's fsyncs wait on the floor's writeback.
		syncDisk(b)
		floor := timeCmd(b, work, "sh", "-c", "cp -r oci "+run+"-floor && sha256sum "+run+"-floor/blobs/sha256/* >/dev/null")
		syncDisk(b)
		args := []string{"build", "spec", "-q", "-o", run + "-out", "--cache", run + "-cache", "--root", work}
		cold, coldRSS := timeBale(b, bin, work, args...)
		syncDisk(b)
		warm, warmRSS := timeBale(b, bin, work, args...)
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(warm.Seconds(), "warm-s")
		b.ReportMetric(cold.Seconds()/floor.Seconds(), "cold/floor")
		b.ReportMetric(100*warm.Seconds()/cold.Seconds(), "warm%cold")
		b.ReportMetric(float64(coldRSS)/1024, "cold-rss-MiB")
		b.ReportMetric(float64(warmRSS)/1024, "warm-rss-MiB")
		b.ReportMetric(float64(total)/(1<<20)/cold.Seconds(), "cold-MiB/s")
		for _, d := range []string{"-floor", "-out", "-cache"} {
			os.RemoveAll(run + d)
		}
	}
}

// syncDisk flushes dirty pages, outside any timed region.
func syncDisk(b *testing.B) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	if out, err := exec.Command("sync").CombinedOutput(); err != nil {
		b.Fatalf("sync: %v\n%s", err, out)
	}
}

func timeCmd(b *testing.B, dir, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return time.Since(start)
}

// timeBale runs bale and returns the wall time and peak RSS in KiB. The
// peak is the child's own VmHWM, sampled from /proc while it runs: exec
// starts a new address space, so VmHWM counts only bale, whereas
// ru_maxrss also counts the pages the child shared with this benchmark
// process between fork and exec.
func timeBale(b *testing.B, bin, dir string, args ...string) (time.Duration, int64) {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if kib := vmHWM(cmd.Process.Pid); kib > peak {
			peak = kib
		}
		select {
		case err := <-done:
			d := time.Since(start)
			if err != nil {
				b.Fatalf("bale %v: %v\n%s", args, err, out.Bytes())
			}
			return d, peak
		case <-tick.C:
		}
	}
}

// vmHWM is a running process's peak resident set in KiB, 0 if unknown.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// writeWorkload writes dir/oci (an OCI layout of n images whose layers
// hold total bytes of pseudo-random, incompressible data), dir/charts (3
// charts made as helm create makes them) and dir/spec/pack.cue.
func writeWorkload(b *testing.B, dir string, n int, total int64) {
	b.Helper()
	blobs := filepath.Join(dir, "oci", "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		b.Fatal(err)
	}
	put := func(data []byte) (string, int64) {
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(blobs, h), data, 0o644); err != nil {
			b.Fatal(err)
		}
		return "sha256:" + h, int64(len(data))
	}
	rng := rand.NewChaCha8([32]byte{'b', 'a', 'l', 'e'})
	perImage := total / int64(n)
	var manifests []map[string]any
	var spec strings.Builder
	spec.WriteString("package bench\n\nbootstrapPack: {\n\tsourceDateEpoch: \"2025-01-01T00:00:00Z\"\n\timages: [\n")
	for i := 0; i < n; i++ {
		var layers []map[string]any
		var diffIDs []string
		for _, size := range []int64{perImage / 2, perImage - perImage/2} {
			// A random layer: streamed to disk, hashed on the way.
			f, err := os.CreateTemp(blobs, "layer")
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.CopyN(io.MultiWriter(f, h), rng, size); err != nil {
				b.Fatal(err)
			}
			f.Close()
			d := hex.EncodeToString(h.Sum(nil))
			if err := os.Rename(f.Name(), filepath.Join(blobs, d)); err != nil {
				b.Fatal(err)
			}
			layers = append(layers, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + d, "size": size})
			diffIDs = append(diffIDs, "sha256:"+d)
		}
		cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
		cd, cs := put(cfg)
		man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": layers})
		md, ms := put(man)
		ref := fmt.Sprintf("bench/app%02d:1.0", i)
		manifests = append(manifests, map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": ref}})
		fmt.Fprintf(&spec, "\t\t{name: \"app%02d\", layout: {path: \"../oci\", refName: %q}, tags: [%q]},\n", i, ref, ref)
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
	if err := os.WriteFile(filepath.Join(dir, "oci", "index.json"), idx, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci", "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		b.Fatal(err)
	}
	spec.WriteString("\t]\n\tcharts: [\n")
	if err := os.MkdirAll(filepath.Join(dir, "charts"), 0o755); err != nil {
		b.Fatal(err)
	}
	for _, c := range []string{"api", "worker", "gateway"} {
		if _, err := chartutil.Create(c, filepath.Join(dir, "charts")); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&spec, "\t\t{name: %q, path: \"../charts/%s\", version: \"0.1.0\"},\n", c, c)
	}
	spec.WriteString("\t]\n}\n")
	if err := os.MkdirAll(filepath.Join(dir, "spec"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec", "pack.cue"), []byte(spec.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}
