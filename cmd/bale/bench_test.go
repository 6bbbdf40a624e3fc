package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bale-build/bale/plan"
)

// buildBale compiles the bale binary for whole-process benchmarks.
func buildBale(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "bale")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runBale(b *testing.B, bin, dir string, wantCode int, args ...string) {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.Fatal(err)
	}
	if code != wantCode {
		b.Fatalf("bale %v: exit %d, want %d\n%s", args, code, wantCode, out)
	}
}

// BenchmarkProcessVet is `bale vet specs/...` as a user runs it.
func BenchmarkProcessVet(b *testing.B) {
	bin := buildBale(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runBale(b, bin, "../..", 0, "vet", "specs/...")
	}
}

// BenchmarkProcessDiff10000 is `bale diff` of two plans with 10,000 image
// inputs each, a tenth of them re-pinned. Goal: under 1 s on 2 cores.
func BenchmarkProcessDiff10000(b *testing.B) {
	bin := buildBale(b)
	dir := b.TempDir()
	for _, side := range []struct {
		name  string
		shift int
	}{{"old.json", 0}, {"new.json", 5}} {
		p := bigPlan(10000, side.shift)
		data, err := plan.Marshal(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, side.name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runBale(b, bin, dir, 2, "diff", "old.json", "new.json")
	}
}

// bigPlan makes a plan of n single-platform images; shift re-pins every
// tenth one.
func bigPlan(n, shift int) *plan.Plan {
	p := &plan.Plan{
		FormatVersion:   plan.FormatVersion,
		Spec:            plan.SpecRef{Digest: plan.ID(nil)},
		SourceDateEpoch: "2025-01-01T00:00:00Z",
		Builder:         plan.Builder{Tar: "bale-tar/1", Compressor: "github.com/klauspost/compress@v1.20.3"},
		Targets:         []plan.Target{},
	}
	for i := 0; i < n; i++ {
		d := i * 10
		if i%10 == 0 {
			d += shift
		}
		dg := func(k int) string { return plan.ID([]byte(fmt.Sprint(k))) }
		p.Inputs = append(p.Inputs, plan.Input{
			Kind: plan.KindImage, Name: fmt.Sprintf("img-%05d", i),
			Source: plan.Source{Type: plan.SourceRegistry, Ref: fmt.Sprintf("r.example/app%d:1", i)},
			Digest: dg(d), Size: 500,
			Image: &plan.Image{Tags: []string{fmt.Sprintf("r.example/app%d:1", i)}, Manifests: []plan.Manifest{{
				Platform: "linux/amd64", Digest: dg(d), Size: 500, MediaType: "application/vnd.oci.image.manifest.v1+json",
				Config: plan.Blob{Digest: dg(d + 1), Size: 100}, Layers: []plan.Blob{{Digest: dg(d + 2), Size: 1 << 20}},
			}}},
		})
	}
	plan.SortInputs(p.Inputs)
	p.Steps = []plan.Step{}
	return p
}
