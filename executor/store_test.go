package executor

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/bale-build/bale/executor/cas"
)

// coreStore is a store with only the cas.Store methods: none of the
// optional capabilities (sync, lock, reflinks, partial downloads), as an
// object store would offer. It counts blob reads to show the build goes
// through it.
type coreStore struct {
	cas.Store
	opens atomic.Int64
}

func (c *coreStore) Open(ctx context.Context, h v1.Hash) (io.ReadCloser, int64, error) {
	c.opens.Add(1)
	return c.Store.Open(ctx, h)
}

// TestBuildOnCoreStore: the executor builds through the cas.Store
// interface alone, and the bytes are those of a build on the local store
// with every capability; a second build into a fresh directory runs no
// step and takes every artifact from the core store.
func TestBuildOnCoreStore(t *testing.T) {
	t.Parallel()
	fx := makeFixture(t, t.TempDir(), fixtureOpts{})
	want := t.TempDir()
	build(t, fx, want, t.TempDir(), 0)

	dir, err := cas.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	core := &coreStore{Store: dir}
	for i, out := range []string{t.TempDir(), t.TempDir()} {
		res, err := Execute(context.Background(), fx.sealed(t), fx.src, Options{OutDir: out, Store: core})
		if err != nil {
			t.Fatalf("build %d on the core store: %v", i, err)
		}
		if i == 1 && res.StepsRun != 0 {
			t.Errorf("second build ran %d steps", res.StepsRun)
		}
		got, exp := readArtifacts(t, out), readArtifacts(t, want)
		if len(got) != len(exp) {
			t.Fatalf("build %d wrote %v, want %v", i, sortedNames(got), sortedNames(exp))
		}
		for name, b := range exp {
			if !bytes.Equal(got[name], b) {
				t.Errorf("build %d: %s differs from the local store's build", i, name)
			}
		}
	}
	if core.opens.Load() == 0 {
		t.Error("no blob was read through the core store")
	}
}
