package executor

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
	"github.com/bale-build/bale/testsupport/testrepo"
)

// The tests in this file run the production path end to end: the
// repository's own air-gap spec and fixtures (specs/airgap, testdata/),
// planned by the planner with planner/source.Resolver, which is also the
// executor's Source — with its blob-file path (BlobFiler) into the store.

// The resolver is the production Source, and takes the blob-file path.
var (
	_ Source    = (*source.Resolver)(nil)
	_ BlobFiler = (*source.Resolver)(nil)
)

// realSpecDir is the air-gap spec's directory relative to a workspace root.
const realSpecDir = "specs/airgap"

// realPlan is a plan of the air-gap spec and the resolver that made it.
type realPlan struct {
	sealed *plan.Sealed
	plan   *plan.Plan
	id     string
	src    *source.Resolver
}

// planWorkspace plans the air-gap spec of the workspace at root, as
// `bale plan` does; epoch, if not nil, overrides the build timestamp as
// SOURCE_DATE_EPOCH does. The plan goes through its file form, as
// `bale build --plan` reads it.
func planWorkspace(ctx context.Context, root string, epoch *time.Time) (*realPlan, error) {
	insts, diags, err := spec.Load(ctx, []string{filepath.Join(root, realSpecDir)}, spec.Options{WorkDir: root})
	if err != nil {
		return nil, err
	}
	if len(insts) != 1 {
		return nil, fmt.Errorf("load spec: %d instances: %w", len(insts), diags)
	}
	r, err := source.New(source.Options{Root: root, Offline: true})
	if err != nil {
		return nil, err
	}
	p, err := planner.Plan(ctx, insts[0], planner.Options{Resolver: r, Root: root, SourceDateEpoch: epoch})
	if err != nil {
		return nil, err
	}
	if p, err = plan.Read(bytes.NewReader(p.Bytes())); err != nil {
		return nil, err
	}
	return &realPlan{sealed: p, plan: p.Plan(), id: p.ID(), src: r}, nil
}

// mustPlanWorkspace is planWorkspace for a test.
func mustPlanWorkspace(t testing.TB, root string, epoch *time.Time) *realPlan {
	t.Helper()
	rp, err := planWorkspace(context.Background(), root, epoch)
	if err != nil {
		t.Fatalf("plan %s: %v", root, err)
	}
	return rp
}

// build executes the plan into outDir with a store at cacheDir.
func (rp *realPlan) build(t testing.TB, outDir, cacheDir string) *Result {
	t.Helper()
	store, err := cas.Open(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Execute(context.Background(), rp.sealed, rp.src, Options{OutDir: outDir, Store: store})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	return res
}

// repoRoot is the repository's root: the workspace of its own specs.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyWorkspace copies the repository's air-gap spec and fixtures into a
// new workspace at dir, bytes and modes kept, so a test may change the
// copy (mtimes, an added image) and never the repository.
func copyWorkspace(t testing.TB, dir string) {
	t.Helper()
	if err := testrepo.CopyTrees(repoRoot(t), dir, realSpecDir, "testdata"); err != nil {
		t.Fatal(err)
	}
	// A workspace marker, as a checkout has.
	if err := os.Mkdir(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// shiftMtimes moves every file's and directory's mtime in dir by d.
func shiftMtimes(t testing.TB, dir string, d time.Duration) {
	t.Helper()
	mt := time.Now().Add(d)
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, mt, mt)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBuildRefusesInconsistentPlan hand-edits the real spec's plan, keeps
// its step ids valid, and builds it as `bale build --plan` does (Decode,
// then Execute): each edit is refused before any step runs, and nothing is
// written. Decode catches what the plan alone shows; the executor, what
// only pack's path rules show.
func TestBuildRefusesInconsistentPlan(t *testing.T) {
	t.Parallel()
	rp := mustPlanWorkspace(t, repoRoot(t), nil)
	stepOf := func(p *plan.Plan, action, input string) *plan.Step {
		for i, s := range p.Steps {
			if s.Action == action && (input == "" || slices.Contains(s.Inputs, input)) {
				return &p.Steps[i]
			}
		}
		t.Fatalf("no %s step", action)
		return nil
	}
	tests := []struct {
		name string
		edit func(p *plan.Plan)
		want string
	}{
		{"image digest swapped for another image's", func(p *plan.Plan) {
			var toolbox plan.Input
			for _, in := range p.Inputs {
				if in.Key() == "image/toolbox" {
					toolbox = in
				}
			}
			for i := range p.Inputs {
				if p.Inputs[i].Key() == "image/airgap-controller" {
					p.Inputs[i].Digest, p.Inputs[i].Size = toolbox.Digest, toolbox.Size
				}
			}
		}, "is not its manifest's"},
		{"image step drops a blob", func(p *plan.Plan) {
			s := stepOf(p, plan.ActionImage, "image/airgap-controller")
			s.Outputs = s.Outputs[1:]
		}, "which the plan does not declare as an output"},
		{"chart entry under another version", func(p *plan.Plan) {
			stepOf(p, plan.ActionChart, "chart/airgap-controller").Outputs = []string{packName + ".tar:charts/airgap-controller-9.9.9.tgz"}
		}, "which the step does not produce"},
		{"signature entry renamed", func(p *plan.Plan) {
			stepOf(p, plan.ActionCopy, "signature/root.json").Outputs = []string{packName + ".tar:signatures/evil.json"}
		}, "which the step does not produce"},
		{"oci-layout drops manifest.json", func(p *plan.Plan) {
			s := stepOf(p, plan.ActionOCILayout, "")
			s.Outputs = slices.DeleteFunc(s.Outputs, func(o string) bool { return strings.HasSuffix(o, "manifest.json") })
		}, "which the plan does not declare"},
		{"target drops its checksum", func(p *plan.Plan) {
			p.Targets[0].Artifacts = p.Targets[0].Artifacts[:1]
		}, "a bootstrap pack has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			canonical, _ := plan.Marshal(rp.plan)
			p, err := plan.Decode(bytes.NewReader(canonical))
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(p)
			restep(p)
			edited, err := plan.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			started := 0
			var sp *plan.Sealed
			if sp, err = plan.Read(bytes.NewReader(edited)); err == nil {
				store, _ := cas.Open(t.TempDir())
				_, err = Execute(context.Background(), sp, rp.src, Options{OutDir: out, Store: store, Progress: func(e Event) {
					if e.Kind == EventStart {
						started++
					}
				}})
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("build of the edited plan: %v; want an error containing %q", err, tt.want)
			}
			if started != 0 {
				t.Errorf("%d steps ran before the plan was refused", started)
			}
			if got := readArtifacts(t, out); len(got) != 0 {
				t.Errorf("left %v", sortedNames(got))
			}
		})
	}
}
