// Package demopack builds the repository's own bootstrap pack (specs/airgap
// over testdata/) the way `bale build` does, for tests of the commands that
// read packs: they get a real pack, not a hand-made one.
package demopack

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

// SpecDir is the air-gap spec's directory relative to the repository root.
const SpecDir = "specs/airgap"

// Name is the file name of the pack the air-gap spec builds.
const Name = "bootstrap-pack-v1.tar"

// Build plans and builds the air-gap spec of the repository at root into
// outDir, with a store in cacheDir, offline, and returns the pack's path.
func Build(ctx context.Context, root, outDir, cacheDir string) (string, error) {
	insts, diags, err := spec.Load(ctx, []string{filepath.Join(root, SpecDir)}, spec.Options{WorkDir: root})
	if err != nil {
		return "", fmt.Errorf("load %s: %w", SpecDir, err)
	}
	if len(insts) != 1 {
		return "", fmt.Errorf("load %s: %d instances: %w", SpecDir, len(insts), diags)
	}
	p, r, err := planner.PlanInstance(ctx, insts[0], source.Options{}, planner.Options{Root: root, Offline: true})
	if err != nil {
		return "", fmt.Errorf("plan %s: %w", SpecDir, err)
	}
	store, err := cas.Open(cacheDir)
	if err != nil {
		return "", err
	}
	if _, err := executor.Execute(ctx, p, r, executor.Options{OutDir: outDir, Store: store}); err != nil {
		return "", fmt.Errorf("build %s: %w", SpecDir, err)
	}
	return filepath.Join(outDir, Name), nil
}
