package executor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/source"
	"github.com/bale-build/bale/verify"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden digests in testdata/")

// The resolver is the executor's production Source.
var (
	_ executor.Source        = (*source.Resolver)(nil)
	_ executor.BlobFiler     = (*source.Resolver)(nil)
	_ executor.RawBlobOpener = (*source.Resolver)(nil)
)

// TestRealSpecPipeline runs the whole pipeline on the repository's own
// air-gap spec and fixtures: spec → planner (real resolver) → plan →
// Execute → bale verify, twice with separate stores, for identical bytes.
func TestRealSpecPipeline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	p, r := planSpec(t, root, filepath.Join(root, "specs", "airgap"))
	var outs []string
	for range 2 {
		store, err := cas.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		res, err := executor.Execute(ctx, p, r, executor.Options{OutDir: out, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := verify.Pack(ctx, filepath.Join(out, res.Artifacts[0].Path))
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		if rep.RootHash != res.Artifacts[0].RootHash {
			t.Errorf("root hash: verify %s, build %s", rep.RootHash, res.Artifacts[0].RootHash)
		}
		outs = append(outs, out)
	}
	// The golden digests: any change to the pack's bytes fails here, loudly,
	// until it is accepted with go test ./executor -run TestRealSpecPipeline -update.
	pack, _ := os.ReadFile(filepath.Join(outs[0], "bootstrap-pack-v1.tar"))
	rep, err := verify.Pack(ctx, filepath.Join(outs[0], "bootstrap-pack-v1.tar"))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("artifactSha256 %x\nrootHash %s\nsize %d\n", sha256.Sum256(pack), rep.RootHash, len(pack))
	golden := filepath.Join("testdata", "airgap-pack.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./executor -run TestRealSpecPipeline -update)", err)
	}
	if got != string(want) {
		t.Errorf("the real spec's pack changed:\n got %s\nwant %s(if intended: go test ./executor -run TestRealSpecPipeline -update)", got, want)
	}
	for _, name := range []string{"bootstrap-pack-v1.tar", "bootstrap-pack-v1.tar.sha256"} {
		a, _ := os.ReadFile(filepath.Join(outs[0], name))
		b, _ := os.ReadFile(filepath.Join(outs[1], name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between builds", name)
		}
	}
}
