package demopack

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	"github.com/bale-build/bale/testsupport/testrepo"
)

// Once builds the demo pack at most once, for the tests of one package:
// the pack takes seconds to build and the tests only read it. Its zero
// value is ready; Remove deletes what it built, from TestMain.
type Once struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the demo pack's path, building it on the first call into a
// new temporary directory.
func (o *Once) Path(ctx context.Context) (string, error) {
	o.once.Do(func() {
		root, err := testrepo.Root()
		if err != nil {
			o.err = err
			return
		}
		if o.dir, err = os.MkdirTemp("", "bale-demo-"); err != nil {
			o.err = err
			return
		}
		o.path, o.err = Build(ctx, root, filepath.Join(o.dir, "out"), filepath.Join(o.dir, "cache"))
	})
	return o.path, o.err
}

// Remove deletes the directory Path built in, if it did.
func (o *Once) Remove() error {
	if o.dir == "" {
		return nil
	}
	return os.RemoveAll(o.dir)
}
