package source

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/bale-build/bale/gobuild"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// GoSource pins the source tree of a Go module a runner bundle builds a
// binary from: a directory below the workspace root, reached without
// symbolic links, holding go.mod, pinned by its tree digest
// (gobuild.TreeDigest).
func (r *Resolver) GoSource(ctx context.Context, specDir, name string, g spec.GoBuild) (plan.Input, error) {
	in, err := r.goSource(ctx, specDir, name, g)
	if err != nil {
		return plan.Input{}, inputErr(plan.KindGo, name, g.Module, err)
	}
	return in, nil
}

func (r *Resolver) goSource(ctx context.Context, specDir, name string, g spec.GoBuild) (plan.Input, error) {
	rel, err := r.local(specDir, g.Module)
	if err != nil {
		return plan.Input{}, err
	}
	dir, err := r.GoSourceDir(ctx, plan.Input{Kind: plan.KindGo, Source: plan.Source{Type: plan.SourceDir, Path: rel}})
	if err != nil {
		return plan.Input{}, err
	}
	d, err := gobuild.TreeDigest(ctx, dir)
	if err != nil {
		return plan.Input{}, err
	}
	return plan.Input{Kind: plan.KindGo, Name: name, Source: plan.Source{Type: plan.SourceDir, Path: rel}, Digest: d}, nil
}

// GoSourceDir returns the local directory of a go input, checked to be
// below the workspace root with no symbolic link on the way. The executor
// snapshots it and checks the snapshot's digest against the plan's.
func (r *Resolver) GoSourceDir(ctx context.Context, in plan.Input) (string, error) {
	if in.Kind != plan.KindGo || in.Source.Type != plan.SourceDir {
		return "", fmt.Errorf("input %s is not a go source directory", in.Key())
	}
	d, err := r.openDir(in.Source.Path)
	if err != nil {
		return "", err
	}
	d.Close()
	return filepath.Join(r.root, filepath.FromSlash(in.Source.Path)), nil
}
