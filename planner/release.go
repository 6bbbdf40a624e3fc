package planner

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/bale-build/bale/gobuild"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
)

// GoResolver is implemented by a Resolver that can pin Go source trees
// (source.Resolver does); a spec whose runner builds Go binaries
// needs one.
type GoResolver interface {
	GoSource(ctx context.Context, specDir, name string, g spec.GoBuild) (plan.Input, error)
}

// goJobs lists the go inputs of a release: one per Go build, named
// RUNNER/DEST.
func goJobs(dir string, rel *spec.Release) []job {
	var jobs []job
	for i, g := range rel.Runner.Go {
		g := g
		name := rel.Runner.Name + "/" + g.Dest
		field := fmt.Sprintf("runner.go[%d]", i)
		jobs = append(jobs, job{key: plan.KindGo + "/" + name, field: field, name: g.Dest, path: "release." + field, resolve: func(ctx context.Context, r Resolver, _ *plan.Input) (plan.Input, error) {
			gr, ok := r.(GoResolver)
			if !ok {
				return plan.Input{}, fmt.Errorf("go %s: this resolver cannot pin Go source trees", name)
			}
			// A locked plan pins the tree too: the digest is recomputed and
			// a changed tree is a changed plan either way.
			return gr.GoSource(ctx, dir, name, g)
		}})
	}
	return jobs
}

// releaseSteps lays out a release: a go-build step per Go binary and one
// release step writing every file of the kit, whose names it decides here
// from the spec and the pinned inputs. goVersion is the Go toolchain's
// version, recorded in the builder section when the runner builds Go.
func releaseSteps(ctx context.Context, p *plan.Plan, rel *spec.Release, goVersion func(context.Context) (string, error)) error {
	runner := rel.Runner.Name
	dataset := ""
	if rel.Dataset != nil {
		dataset = rel.Dataset.Name
		if dataset == runner {
			return fmt.Errorf("release %s: runner and dataset are both named %s", rel.Name, runner)
		}
	}
	kitName := rel.Name
	if k := rel.OfflineKit; k != nil {
		kitName = k.Name
		if (k.Checksums != "" && k.Checksums != kit.SumsName) || (k.VerifyScript != "" && k.VerifyScript != kit.ScriptName) {
			return fmt.Errorf("release %s: offlineKit.checksums %q and verifyScript %q: this bale writes %s and %s only", rel.Name, k.Checksums, k.VerifyScript, kit.SumsName, kit.ScriptName)
		}
	}
	if !kit.ValidName(runner) || !kit.ValidName(kitName) || (dataset != "" && !kit.ValidName(dataset)) {
		return fmt.Errorf("release %s: runner %q, dataset %q or kit %q is not a plain file name", rel.Name, runner, dataset, kitName)
	}
	bundle := runner + ".tar.gz"
	modes := map[string]int64{}
	for _, f := range rel.Runner.Files {
		modes[runner+"/"+f.Dest] = f.Mode
	}
	if rel.Dataset != nil {
		for _, f := range rel.Dataset.Files {
			modes[dataset+"/"+f.Dest] = f.Mode
		}
	}
	params := map[string]string{
		plan.ParamName:          rel.Name,
		plan.ParamRunner:        runner,
		plan.ParamRunnerVersion: rel.Runner.Version,
		plan.ParamKit:           kitName,
	}
	set := func(k, v string) {
		if v != "" {
			params[k] = v
		}
	}
	set(plan.ParamSupplier, rel.Runner.SBOM.Supplier)
	set(plan.ParamLicense, rel.Runner.SBOM.License)
	set(plan.ParamKey, rel.Signing.Key)
	var inputs, goSteps []string
	var dsFiles []kit.DatasetFile
	runnerDests := map[string]bool{}
	for _, in := range p.Inputs {
		switch in.Kind {
		case plan.KindFile:
			inputs = append(inputs, in.Key())
			if modes[in.Name] == 0o755 {
				params[plan.ParamModePrefix+in.Name] = "0755"
			}
			if d, ok := strings.CutPrefix(in.Name, runner+"/"); ok {
				runnerDests[d] = true
			} else if d, ok := strings.CutPrefix(in.Name, dataset+"/"); ok && dataset != "" {
				dsFiles = append(dsFiles, kit.DatasetFile{Path: d, Size: in.Size, SHA256: digest.Hex(in.Digest)})
			}
		case plan.KindKey:
			inputs = append(inputs, in.Key())
		}
	}
	for _, in := range p.Inputs {
		if in.Kind != plan.KindGo {
			continue
		}
		var g *spec.GoBuild
		for i := range rel.Runner.Go {
			if runner+"/"+rel.Runner.Go[i].Dest == in.Name {
				g = &rel.Runner.Go[i]
			}
		}
		if g == nil {
			return fmt.Errorf("release %s: go input %s is no Go build of the runner", rel.Name, in.Name)
		}
		if runnerDests[g.Dest] {
			return fmt.Errorf("release %s: runner.go dest %s is also a runner file's dest", rel.Name, g.Dest)
		}
		runnerDests[g.Dest] = true
		if err := gobuild.CheckPlatform(g.Package, g.GOOS, g.GOARCH); err != nil {
			return fmt.Errorf("release %s: runner.go %s: %w", rel.Name, g.Dest, err)
		}
		if err := gobuild.CheckLDFlags(g.LDFlags); err != nil {
			return fmt.Errorf("release %s: runner.go %s: %w", rel.Name, g.Dest, err)
		}
		gp := map[string]string{plan.ParamName: g.Dest, plan.ParamPackage: g.Package, plan.ParamGOOS: g.GOOS, plan.ParamGOARCH: g.GOARCH}
		if g.LDFlags != "" {
			gp[plan.ParamLDFlags] = strings.Join(strings.Fields(g.LDFlags), " ")
		}
		s := plan.Step{Action: plan.ActionGoBuild, Inputs: []string{in.Key()}, Params: gp, Outputs: []string{plan.Entry(bundle, g.Dest)}}
		s.ID = plan.StepID(s)
		p.Steps = append(p.Steps, s)
		goSteps = append(goSteps, s.ID)
	}
	if len(goSteps) > 0 {
		v, err := goVersion(ctx)
		if err != nil {
			return fmt.Errorf("release %s: %w", rel.Name, err)
		}
		p.Builder.Go = v
	}
	hash := ""
	if rel.Dataset != nil {
		// A placeholder names the files; the build accepts it only with
		// the development key, which planning cannot know.
		var err error
		if hash, err = kit.DatasetNameHash(rel.Dataset.Hash, kit.DatasetHash(dsFiles), true); err != nil {
			return fmt.Errorf("release %s: dataset %s: %w", rel.Name, dataset, err)
		}
		set(plan.ParamDataset, dataset)
		set(plan.ParamDatasetHash, hash)
		set(plan.ParamBuilderID, rel.Dataset.Provenance.BuilderID)
		set(plan.ParamBuildType, rel.Dataset.Provenance.BuildType)
	}
	n := kit.NamesFor(runner, dataset, hash, kitName)
	arts := []string{n.Runner, n.SBOM, n.RunnerSignature, kit.PublicKeyName, kit.ScriptName, kit.ManifestName, kit.SumsName, kit.SumsSignatureName, n.Archive, n.Archive + ".sha256"}
	if dataset != "" {
		arts = append(arts, n.Dataset, n.DatasetManifest, n.Provenance)
	}
	slices.Sort(arts)
	for i, a := range arts {
		if !kit.ValidName(a) || (i > 0 && arts[i-1] == a) {
			return fmt.Errorf("release %s: kit file name %q is not a plain file name or is used twice", rel.Name, a)
		}
	}
	s := plan.Step{Action: plan.ActionRelease, Inputs: inputs, Needs: goSteps, Params: params, Outputs: arts}
	s.ID = plan.StepID(s)
	p.Steps = append(p.Steps, s)
	p.Targets = append(p.Targets, plan.Target{
		Kind:        plan.TargetRelease,
		Name:        rel.Name,
		Compression: plan.Compression{Algorithm: rel.Compression.Algorithm, Level: rel.Compression.Level},
		Artifacts:   arts,
	})
	return nil
}
