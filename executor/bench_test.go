package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
)

// benchImages is how many images the benchmark layout holds.
const benchImages = 4

// writeBlob streams r into the layout's blob directory and returns its
// descriptor, without holding the blob in memory.
func writeBlob(b *testing.B, dir string, r io.Reader, mt types.MediaType) v1.Descriptor {
	b.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.CreateTemp(blobs, "tmp-")
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	hexSum := hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(f.Name(), filepath.Join(blobs, hexSum)); err != nil {
		b.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Size: n, Digest: v1.Hash{Algorithm: "sha256", Hex: hexSum}}
}

// benchFixture writes an OCI layout of benchImages images whose layers
// total totalMB MiB of incompressible random bytes, and its plan.
func benchFixture(b *testing.B, dir string, totalMB, level int) *fixture {
	b.Helper()
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		b.Fatal(err)
	}
	layerSize := int64(totalMB) << 20 / (2 * benchImages)
	p := basePlan(level)
	for i := range benchImages {
		var m v1.Manifest
		m.SchemaVersion = 2
		m.MediaType = types.OCIManifestSchema1
		cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}, "config": map[string]any{"Env": []string{fmt.Sprintf("I=%d", i)}}})
		m.Config = writeBlob(b, string(lp), bytes.NewReader(cfg), types.OCIConfigJSON)
		for j := range 2 {
			m.Layers = append(m.Layers, writeBlob(b, string(lp), io.LimitReader(randomReader(uint64(i*2+j+1)), layerSize), types.OCILayer))
		}
		raw, _ := json.Marshal(m)
		d := writeBlob(b, string(lp), bytes.NewReader(raw), types.OCIManifestSchema1)
		name := fmt.Sprintf("img%d", i)
		if err := lp.AppendDescriptor(d); err != nil {
			b.Fatal(err)
		}
		pm := plan.Manifest{Digest: d.Digest.String(), Size: d.Size, MediaType: string(d.MediaType),
			Config: plan.Blob{Digest: m.Config.Digest.String(), Size: m.Config.Size, MediaType: string(m.Config.MediaType)}}
		for _, l := range m.Layers {
			pm.Layers = append(pm.Layers, plan.Blob{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
		}
		p.Inputs = append(p.Inputs, plan.Input{
			Kind: plan.KindImage, Name: name, Digest: d.Digest.String(), Size: d.Size, MediaType: string(d.MediaType),
			Source: plan.Source{Type: plan.SourceLayout, Path: "oci"},
			Image:  &plan.Image{Tags: []string{"registry.example/bench/" + name + ":1"}, Manifests: []plan.Manifest{pm}},
		})
	}
	plan.SortInputs(p.Inputs)
	p.Steps = packSteps(b, p, nil)
	fx := &fixture{dir: dir, plan: p, src: &testSource{root: dir}}
	fx.planID = planID(b, p)
	return fx
}

// BenchmarkBuildPack builds a pack of benchImages images whose layers total
// BALE_BENCH_MB MiB (default 64) of incompressible data, at gzip level
// BALE_BENCH_LEVEL (default 1, the schema's default). "cold" starts from an
// empty store every time: fetch into the store, write the pack, link it
// out. "warm" reuses the store: every step is cached, so it measures
// checking the cache and verifying and linking the artifacts. MB/s is layer
// megabytes per second.
func BenchmarkBuildPack(b *testing.B) {
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("BALE_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	level := 1
	if v, err := strconv.Atoi(os.Getenv("BALE_BENCH_LEVEL")); err == nil {
		level = v
	}
	fx := benchFixture(b, b.TempDir(), mb, level)
	work := b.TempDir()
	run := func(b *testing.B, cache string) *Result {
		out, err := os.MkdirTemp(work, "out-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(out)
		store, err := cas.Open(cache)
		if err != nil {
			b.Fatal(err)
		}
		res, err := Execute(context.Background(), fx.sealed(b), fx.src, Options{OutDir: out, Store: store})
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	b.Run(fmt.Sprintf("cold/%dMB/level=%d", mb, level), func(b *testing.B) {
		b.SetBytes(int64(mb) << 20)
		b.ReportAllocs()
		for b.Loop() {
			cache, _ := os.MkdirTemp(work, "cache-")
			run(b, cache)
			b.StopTimer()
			os.RemoveAll(cache)
			b.StartTimer()
		}
	})
	b.Run(fmt.Sprintf("warm/%dMB/level=%d", mb, level), func(b *testing.B) {
		cache, _ := os.MkdirTemp(work, "cache-")
		run(b, cache)
		b.SetBytes(int64(mb) << 20)
		b.ReportAllocs()
		for b.Loop() {
			if res := run(b, cache); res.StepsRun != 0 {
				b.Fatalf("warm build ran %d steps", res.StepsRun)
			}
		}
	})
}
