package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bale-build/bale/internal/fixtures"
)

// BenchmarkProcessReleaseAOC measures the whole-process `bale build
// specs/aoc` of the real release: cold (empty cache and output: the Go
// build, the kit and its signatures, the key decryption) and warm (nothing
// changed: no step runs, no key is decrypted). Goals: cold < 1 s, warm <
// 100 ms. The Go build cache is the machine's, as in a developer's rebuild.
func BenchmarkProcessReleaseAOC(b *testing.B) {
	bin := buildBale(b)
	b.Setenv("COSIGN_KEY", "")
	b.Setenv("COSIGN_ALLOW_DEV_KEY", "1")
	b.Setenv("COSIGN_PASSWORD", fixtures.DevKeyPassword)
	root := repoDir()
	work := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run := filepath.Join(work, fmt.Sprintf("run%d", i))
		args := []string{"build", "specs/aoc", "-q", "-o", run + "-out", "--cache", run + "-cache"}
		syncDisk(b)
		cold, coldRSS := timeBale(b, bin, root, args...)
		syncDisk(b)
		warm, warmRSS := timeBale(b, bin, root, args...)
		b.ReportMetric(cold.Seconds()*1000, "cold-ms")
		b.ReportMetric(warm.Seconds()*1000, "warm-ms")
		b.ReportMetric(float64(coldRSS)/1024, "cold-rss-MiB")
		b.ReportMetric(float64(warmRSS)/1024, "warm-rss-MiB")
		os.RemoveAll(run + "-out")
		os.RemoveAll(run + "-cache")
	}
}

// BenchmarkProcessReleaseDataset measures the cold whole-process build of
// a release whose dataset is BALE_BENCH_GIB GiB (default 1) of ndjson text
// in 4 files, beside the floor `tar c FILES | gzip -1 | sha256sum`
// measured in the same run. Goals: cold <= 1.3x the floor, peak RSS < 256
// MiB.
func BenchmarkProcessReleaseDataset(b *testing.B) {
	gib := 1.0
	if v := os.Getenv("BALE_BENCH_GIB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("BALE_BENCH_GIB=%q: want a positive number", v)
		}
		gib = f
	}
	bin := buildBale(b)
	b.Setenv("COSIGN_KEY", "")
	b.Setenv("COSIGN_ALLOW_DEV_KEY", "1")
	b.Setenv("COSIGN_PASSWORD", fixtures.DevKeyPassword)
	work := b.TempDir()
	total := int64(gib * (1 << 30))
	writeDatasetWorkload(b, work, total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run := filepath.Join(work, fmt.Sprintf("run%d", i))
		syncDisk(b)
		floor := timeCmd(b, filepath.Join(work, "data"), "sh", "-c", "tar c part-0.ndjson part-1.ndjson part-2.ndjson part-3.ndjson | gzip -1 | sha256sum >/dev/null")
		syncDisk(b)
		cold, rss := timeBale(b, bin, work, "build", "spec", "-q", "-o", run+"-out", "--cache", run+"-cache", "--root", work)
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(cold.Seconds()/floor.Seconds(), "cold/floor")
		b.ReportMetric(float64(rss)/1024, "cold-rss-MiB")
		b.ReportMetric(float64(total)/(1<<20)/cold.Seconds(), "cold-MiB/s")
		os.RemoveAll(run + "-out")
		os.RemoveAll(run + "-cache")
	}
}

// writeDatasetWorkload writes work/data/part-{0..3}.ndjson (total bytes of
// advisory-like records), a runner file, the development key pair and
// work/spec/release.cue naming them.
func writeDatasetWorkload(b *testing.B, work string, total int64) {
	b.Helper()
	for _, d := range []string{"data", "spec", "keys", ".git"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"openssl", "glibc", "curl", "zlib", "busybox", "libxml2", "sqlite", "nginx", "critical", "high", "medium", "low", "fixed", "affected", "not_affected"}
	for part := 0; part < 4; part++ {
		f, err := os.Create(filepath.Join(work, "data", fmt.Sprintf("part-%d.ndjson", part)))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var n int64
		for id := 0; n < total/4; id++ {
			line := fmt.Sprintf(`{"id":"CVE-2025-%06d","package":"%s","severity":"%s","status":"%s","score":%.1f,"digest":"sha256:%016x%016x"}`+"\n",
				part*10_000_000+id, words[r.IntN(8)], words[8+r.IntN(4)], words[12+r.IntN(3)], r.Float64()*10, r.Uint64(), r.Uint64())
			k, _ := w.WriteString(line)
			n += int64(k)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	root := repoDir()
	for _, k := range []string{"cosign.dev.key", "cosign.dev.pub"} {
		data, err := os.ReadFile(filepath.Join(root, "testdata", "keys", k))
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(work, "keys", k), data, 0o644)
	}
	os.WriteFile(filepath.Join(work, "data", "runner.sh"), []byte("#!/bin/sh\necho runner\n"), 0o755)
	spec := `package bench

release: {
	name:            "bench-release"
	sourceDateEpoch: "2025-01-01T00:00:00Z"
	signing: {
		key: "env://COSIGN_KEY"
		devKey: {key: "../keys/cosign.dev.key", publicKey: "../keys/cosign.dev.pub"}
	}
	runner: {
		name:    "bench-runner"
		version: "1.0.0"
		files: [{path: "../data/runner.sh", dest: "bin/runner", mode: 0o755}]
	}
	dataset: {
		name: "bench-dataset"
		hash: "bench"
		files: [
			{path: "../data/part-0.ndjson", dest: "part-0.ndjson"},
			{path: "../data/part-1.ndjson", dest: "part-1.ndjson"},
			{path: "../data/part-2.ndjson", dest: "part-2.ndjson"},
			{path: "../data/part-3.ndjson", dest: "part-3.ndjson"},
		]
	}
	offlineKit: name: "bench-kit"
}
`
	if err := os.WriteFile(filepath.Join(work, "spec", "release.cue"), []byte(spec), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkProcessVerifyKit compares the whole-process `bale verify` of the
// AOC kit (directory and archive) with `sh verify.sh` (sha256sum and, when
// cosign2 is on PATH or in BALE_COSIGN2, every signature with cosign).
func BenchmarkProcessVerifyKit(b *testing.B) {
	bin := buildBale(b)
	b.Setenv("COSIGN_KEY", "")
	b.Setenv("COSIGN_ALLOW_DEV_KEY", "1")
	b.Setenv("COSIGN_PASSWORD", fixtures.DevKeyPassword)
	out := filepath.Join(b.TempDir(), "aoc")
	runBale(b, bin, repoDir(), 0, "build", "specs/aoc", "-q", "-o", out, "--cache", b.TempDir())
	cosign := os.Getenv("BALE_COSIGN2")
	if cosign == "" {
		cosign, _ = exec.LookPath("cosign2")
	}
	if cosign != "" {
		b.Setenv("COSIGN", cosign)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir, _ := timeBale(b, bin, out, "verify", out)
		arch, _ := timeBale(b, bin, out, "verify", filepath.Join(out, "aoc-offline-kit.tar.gz"))
		script := timeCmd(b, out, "sh", "verify.sh")
		b.ReportMetric(dir.Seconds()*1000, "bale-verify-dir-ms")
		b.ReportMetric(arch.Seconds()*1000, "bale-verify-archive-ms")
		b.ReportMetric(script.Seconds()*1000, "verify.sh-ms")
	}
}
