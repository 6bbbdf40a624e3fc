// Package planner turns a loaded spec into a plan: it resolves every input
// to a digest, concurrently and with a bound, and lays out the steps the
// executor runs.
package planner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bale-build/bale/archive"
	"github.com/bale-build/bale/gobuild"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

// Resolver pins spec inputs. planner/source.Resolver implements it.
type Resolver interface {
	Image(ctx context.Context, specDir string, img spec.Image) (plan.Input, error)
	Chart(ctx context.Context, specDir string, c spec.Chart) (plan.Input, error)
	File(ctx context.Context, specDir, kind, name string, f spec.File) (plan.Input, error)
	Signature(ctx context.Context, specDir string, s spec.SignatureFile) (plan.Input, error)
	Bundle(ctx context.Context, specDir string, b spec.BundleRef) (plan.Input, error)
}

// Options tunes planning.
type Options struct {
	// Resolver pins inputs; required.
	Resolver Resolver
	// Root is the workspace root; local paths in the plan are relative to
	// it. Empty means FindRoot of the spec's directory.
	Root string
	// Jobs bounds concurrent resolutions; 0 means 8.
	Jobs int
	// Lock, when set, supplies the digests of an earlier plan: inputs are
	// resolved by those digests instead of by tag, and an input missing
	// from the lock is an error.
	Lock *plan.Plan
	// SourceDateEpoch, when set, overrides the spec's build timestamp (the
	// SOURCE_DATE_EPOCH environment variable, parsed by the caller).
	SourceDateEpoch *time.Time
	// Offline says the resolver may not use the network. With a Lock, an
	// input fetched over the network is then taken from the lock as it
	// stands, provided the spec still names the same source.
	Offline bool
	// Progress, when set, is told about each input as it is resolved.
	Progress func(key string, done, total int)
	// GoVersion returns the Go toolchain version that builds the runner's
	// Go binaries; nil means the go command's (go env GOVERSION).
	GoVersion func(context.Context) (string, error)
}

// FindRoot returns the workspace root for a spec directory: the nearest
// ancestor holding cue.mod or .git, else dir itself. Plans record paths
// relative to it, so a plan is the same from any checkout location and any
// working directory.
func FindRoot(dir string) string { return spec.FindRoot(dir) }

// PlanInstance plans inst with a resolver made from src, whose Root and
// Offline are set to the workspace root and opts.Offline (opts.Resolver is
// replaced), and returns the sealed plan with that resolver: a build of
// the plan reads its inputs through it, keeping what planning learnt
// (registry tokens, connections). It is the one way from a loaded spec to a
// plan for the CLI, the server and inline evaluation.
func PlanInstance(ctx context.Context, inst *spec.Instance, src source.Options, opts Options) (*plan.Sealed, *source.Resolver, error) {
	if opts.Root == "" {
		opts.Root = FindRoot(inst.Dir)
	}
	src.Root, src.Offline = opts.Root, opts.Offline
	r, err := source.New(src)
	if err != nil {
		return nil, nil, fmt.Errorf("plan %s: %w", inst.Name, err)
	}
	opts.Resolver = r
	sp, err := Plan(ctx, inst, opts)
	if err != nil {
		return nil, nil, err
	}
	return sp, r, nil
}

// Plan resolves inst's inputs, lays out its steps and returns the plan
// sealed (validated, with its canonical bytes and id).
func Plan(ctx context.Context, inst *spec.Instance, opts Options) (*plan.Sealed, error) {
	if opts.Resolver == nil {
		return nil, errors.New("plan: no resolver")
	}
	root := opts.Root
	if root == "" {
		root = FindRoot(inst.Dir)
	}
	specDir, err := filepath.Rel(root, inst.Dir)
	if err != nil || !plan.ValidPath(filepath.ToSlash(specDir)) && specDir != "." {
		return nil, fmt.Errorf("plan %s: spec directory is not below the workspace root %s", inst.Name, root)
	}
	s := inst.Spec
	var epoch spec.Timestamp
	switch {
	case s.BootstrapPack != nil:
		epoch = s.BootstrapPack.SourceDateEpoch
	case s.Release != nil:
		epoch = s.Release.SourceDateEpoch
	}
	if s.BootstrapPack != nil && s.Release != nil && !s.BootstrapPack.SourceDateEpoch.Time.Equal(s.Release.SourceDateEpoch.Time) {
		return nil, fmt.Errorf("plan %s: bootstrapPack and release name different sourceDateEpoch values; one plan has one build timestamp", inst.Name)
	}
	ts := epoch.Time
	if opts.SourceDateEpoch != nil {
		ts = *opts.SourceDateEpoch
	}
	p := &plan.Plan{
		FormatVersion:   plan.FormatVersion,
		Spec:            plan.SpecRef{Digest: inst.Digest},
		SourceDateEpoch: ts.UTC().Format(time.RFC3339),
		Builder:         plan.Builder{Tar: TarLayout, Compressor: archive.Compressor},
	}
	jobs := collect(inst.Dir, s)
	inputs, err := resolveAll(ctx, jobs, opts)
	if err != nil {
		var ie *InputError
		if !errors.As(err, &ie) {
			return nil, fmt.Errorf("plan %s: %w", inst.Name, err)
		}
		// Each failure names its place in the spec, as vet's diagnostics
		// do; the spec's name would only repeat the file's.
		placeErrors(err, inst)
		return nil, err
	}
	plan.SortInputs(inputs)
	for i := 1; i < len(inputs); i++ {
		if inputs[i].Key() == inputs[i-1].Key() {
			return nil, fmt.Errorf("plan %s: two inputs named %s", inst.Name, inputs[i].Key())
		}
	}
	p.Inputs = inputs
	if s.BootstrapPack != nil {
		if err := bootstrapSteps(p, s.BootstrapPack); err != nil {
			return nil, fmt.Errorf("plan %s: %w", inst.Name, err)
		}
	}
	if s.Release != nil {
		goVersion := opts.GoVersion
		if goVersion == nil {
			goVersion = func(ctx context.Context) (string, error) { return gobuild.Version(ctx, "", nil) }
		}
		if err := releaseSteps(ctx, p, s.Release, goVersion); err != nil {
			return nil, fmt.Errorf("plan %s: %w", inst.Name, err)
		}
	}
	if p.Steps == nil {
		p.Steps = []plan.Step{}
	}
	sp, err := plan.Seal(p)
	if err != nil {
		return nil, fmt.Errorf("plan %s: internal error: %w", inst.Name, err)
	}
	return sp, nil
}

// TarLayout names the tar layout rules of archive and the pack's gzip
// member layout (archive.MemberLayout); it changes when they do, so the
// change shows in bale diff and misses every cached step.
const TarLayout = "bale-tar/1 (ustar, sorted, explicit dirs, 0/0, 0644/0755, mtime=sourceDateEpoch), " + archive.MemberLayout + " (gzip members of at most 1 MiB of one entry each)"

// InputError is the failure to pin one input, placed where the spec names
// it: "pack.cue:12:9: images[0] app1: registry.example/app1:9.9: tag 9.9
// not found in registry.example/app1 (tags: 1.0, 1.1)".
type InputError struct {
	// File, Line and Column are the position of the input's source in
	// the spec (File relative to the working directory it was loaded
	// from).
	File         string
	Line, Column int
	// Field is the input's place in the spec, such as "images[0]" or
	// "release.runner.files[2]".
	Field string
	// Name is the input's name.
	Name string
	// Err is what went wrong; a *source.Error for a source that failed.
	Err error

	pos string // the CUE path Pos looks up
}

func (e *InputError) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Column)
	}
	fmt.Fprintf(&b, "%s %s: ", e.Field, e.Name)
	var re *source.Error
	if !errors.As(e.Err, &re) {
		b.WriteString(e.Err.Error())
		return b.String()
	}
	b.WriteString(re.Source + ": ")
	var le *source.LocalError
	if errors.As(re.Err, &le) && errors.Is(le, fs.ErrNotExist) {
		// The source is the path as the spec wrote it; the element the
		// file system lacked (a parent, relative to the workspace root)
		// would only confuse.
		b.WriteString("no such file or directory")
		return b.String()
	}
	b.WriteString(re.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error.
func (e *InputError) Unwrap() error { return e.Err }

// placeErrors fills in the spec position of every InputError in err.
func placeErrors(err error, inst *spec.Instance) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		if ie, ok := e.(*InputError); ok && ie.File == "" {
			ie.File, ie.Line, ie.Column = inst.Pos(ie.pos)
		}
	}
}

// job resolves one input.
type job struct {
	key string
	// path is the CUE path of the input's source field in the spec
	// ("bootstrapPack.images[0].ref"), field its short place
	// ("images[0]") and name its name, for errors.
	path, field, name string
	resolve           func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error)
	// remote is set for an input fetched over the network: it says
	// whether a locked input pins the source the spec names now.
	remote func(lock plan.Input) bool
}

// collect lists the inputs of a spec.
func collect(dir string, s *spec.Spec) []job {
	var jobs []job
	if bp := s.BootstrapPack; bp != nil {
		for i, img := range bp.Images {
			img := img
			field := fmt.Sprintf("images[%d]", i)
			j := job{key: plan.KindImage + "/" + img.Name, field: field, name: img.Name, path: "bootstrapPack." + field + "." + imageSource(img), resolve: func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error) {
				if lock != nil {
					img = lockImage(img, lock)
				}
				return r.Image(ctx, dir, img)
			}}
			if ref := img.Ref; ref != "" {
				j.remote = func(l plan.Input) bool { return l.Source.Type == plan.SourceRegistry && l.Source.Ref == ref }
			}
			jobs = append(jobs, j)
		}
		for i, c := range bp.Charts {
			c := c
			field := fmt.Sprintf("charts[%d]", i)
			j := job{key: plan.KindChart + "/" + c.Name, field: field, name: c.Name, path: "bootstrapPack." + field + "." + c.SourceField(), resolve: func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error) {
				if lock != nil {
					c.Digest = lock.Digest
				}
				return r.Chart(ctx, dir, c)
			}}
			switch {
			case c.Repository != "":
				j.remote = func(l plan.Input) bool {
					return l.Source.Type == plan.SourceRepository && l.Source.Ref == c.Repository && l.Chart != nil && l.Chart.Version == c.Version
				}
			case c.OCI != "":
				j.remote = func(l plan.Input) bool {
					return l.Source.Type == plan.SourceOCI && l.Source.Ref == source.OCIChartRef(c.OCI, c.Version)
				}
			}
			jobs = append(jobs, j)
			if v := c.Values; v != nil {
				jobs = append(jobs, job{key: plan.KindValues + "/" + c.Name, resolve: func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error) {
					f := spec.File{Path: v.Path, Digest: v.Digest, Mode: 0o644}
					if lock != nil {
						f.Digest = lock.Digest
					}
					return r.File(ctx, dir, plan.KindValues, c.Name, f)
				}})
			}
		}
		for i, sig := range bp.Signatures {
			sig := sig
			field := fmt.Sprintf("signatures[%d]", i)
			jobs = append(jobs, job{key: plan.KindSignature + "/" + sig.Name, field: field, name: sig.Name, path: "bootstrapPack." + field + ".path", resolve: func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error) {
				if lock != nil {
					sig.Digest = lock.Digest
				}
				return r.Signature(ctx, dir, sig)
			}})
		}
		for i, b := range bp.Bundles {
			b := b
			field := fmt.Sprintf("bundles[%d]", i)
			jobs = append(jobs, job{key: plan.KindBundle + "/" + b.Name, field: field, name: b.Name, path: "bootstrapPack." + field, resolve: func(ctx context.Context, r Resolver, _ *plan.Input) (plan.Input, error) {
				return r.Bundle(ctx, dir, b)
			}})
		}
	}
	if rel := s.Release; rel != nil {
		addFiles := func(at, bundle string, files []spec.File) {
			for i, f := range files {
				f := f
				name := bundle + "/" + f.Dest
				field := fmt.Sprintf("%s[%d]", at, i)
				src := "path"
				if f.URL != "" {
					src = "url"
				}
				j := job{key: plan.KindFile + "/" + name, field: field, name: f.Dest, path: "release." + field + "." + src, resolve: func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error) {
					if lock != nil {
						f.Digest = lock.Digest
					}
					return r.File(ctx, dir, plan.KindFile, name, f)
				}}
				if f.URL != "" {
					j.remote = func(l plan.Input) bool {
						return l.Source.Type == plan.SourceURL && l.Source.URL == f.URL && l.Digest == f.Digest
					}
				}
				jobs = append(jobs, j)
			}
		}
		addFiles("runner.files", rel.Runner.Name, rel.Runner.Files)
		jobs = append(jobs, goJobs(dir, rel)...)
		if rel.Dataset != nil {
			addFiles("dataset.files", rel.Dataset.Name, rel.Dataset.Files)
		}
		if dk := rel.Signing.DevKey; dk != nil {
			for _, k := range []struct{ name, path, field string }{{"dev.key", dk.Key, "key"}, {"dev.pub", dk.PublicKey, "publicKey"}} {
				k := k
				jobs = append(jobs, job{key: plan.KindKey + "/" + k.name, field: "release.signing.devKey." + k.field, name: k.name, path: "release.signing.devKey." + k.field, resolve: func(ctx context.Context, r Resolver, lock *plan.Input) (plan.Input, error) {
					f := spec.File{Path: k.path, Mode: 0o644}
					if lock != nil {
						f.Digest = lock.Digest
					}
					return r.File(ctx, dir, plan.KindKey, k.name, f)
				}})
			}
		}
	}
	return jobs
}

// imageSource names the field holding an image's source.
func imageSource(img spec.Image) string {
	switch {
	case img.Layout != nil:
		return "layout"
	case img.Tarball != nil:
		return "tarball"
	}
	return "ref"
}

// lockImage pins an image to its locked digest, so the registry is asked
// for that digest rather than for the tag, which may have moved.
func lockImage(img spec.Image, lock *plan.Input) spec.Image {
	img.Digest = lock.Digest
	if img.Ref != "" {
		if len(img.Tags) == 0 && lock.Image != nil {
			img.Tags = lock.Image.Tags
		}
		repo := img.Ref
		if i := strings.Index(repo, "@"); i >= 0 {
			repo = repo[:i]
		}
		// Drop a tag (a colon after the last slash), keep a port.
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		img.Ref = repo + "@" + lock.Digest
	}
	return img
}

// resolveAll runs the jobs with at most opts.Jobs at once. It reports every
// failure, not only the first, so one run shows all that is wrong. It
// returns only when every worker it started has returned, cancelled or
// not: nothing it started outlives it, and Progress is never called after.
func resolveAll(ctx context.Context, jobs []job, opts Options) ([]plan.Input, error) {
	n := opts.Jobs
	if n <= 0 {
		n = 8
	}
	var locked map[string]plan.Input
	if opts.Lock != nil {
		locked = make(map[string]plan.Input, len(opts.Lock.Inputs))
		for _, in := range opts.Lock.Inputs {
			locked[in.Key()] = in
		}
	}
	out := make([]plan.Input, len(jobs))
	errs := make([]error, len(jobs))
	// A plain Group, not WithContext: one input's failure must not cancel
	// the others, so that one run reports them all.
	var g errgroup.Group
	g.SetLimit(n)
	var (
		mu   sync.Mutex
		done int
	)
	for i, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		var lock *plan.Input
		if locked != nil {
			in, ok := locked[j.key]
			if !ok {
				errs[i] = j.fail(fmt.Errorf("input %s is not in the lock plan; plan without --lock to pin it", j.key))
				continue
			}
			lock = &in
			if opts.Offline && j.remote != nil {
				// The network is off: the lock is the only source of
				// this input's facts, as long as it pins what the spec
				// names.
				if !j.remote(in) {
					errs[i] = j.fail(fmt.Errorf("input %s: the spec names a different source than the lock plan (%s); plan online to pin it", j.key, lockSource(in.Source)))
					continue
				}
				out[i] = in
				continue
			}
		}
		// Go waits for a free slot; the workers holding them see the
		// cancel through ctx, so the wait ends soon after one.
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			in, err := j.resolve(ctx, opts.Resolver, lock)
			if err == nil && lock != nil {
				// The plan records the source as the spec says, not the
				// digest reference the lock made of it: a locked plan of
				// an unchanged spec is the same plan.
				in.Source = lock.Source
			}
			out[i] = in
			if err != nil && ctx.Err() == nil {
				errs[i] = j.fail(err)
			} else if err != nil {
				errs[i] = err
			}
			if opts.Progress != nil {
				mu.Lock()
				done++
				opts.Progress(j.key, done, len(jobs))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait() // the workers report through errs
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// fail places err at the job's input in the spec.
func (j job) fail(err error) error {
	return &InputError{Field: j.field, Name: j.name, Err: err, pos: j.path}
}

// lockSource renders a locked source for an error message.
func lockSource(s plan.Source) string {
	for _, v := range []string{s.Ref, s.URL, s.Path} {
		if v != "" {
			return s.Type + " " + v
		}
	}
	return s.Type
}

// bootstrapSteps lays out the steps of a bootstrap pack, each step's
// outputs by plan.Outputs: the rules the executor builds by and Validate
// checks.
func bootstrapSteps(p *plan.Plan, bp *spec.BootstrapPack) error {
	target := plan.Target{
		Kind:        plan.TargetBootstrapPack,
		Name:        bp.Name,
		Compression: plan.Compression{Algorithm: bp.Compression.Algorithm, Level: bp.Compression.Level},
	}
	tarName := plan.PackArtifact(target)
	target.Artifacts = []string{tarName, tarName + ".sha256"}
	add := func(s plan.Step) (string, error) {
		ins := make([]plan.Input, len(s.Inputs))
		for i, k := range s.Inputs {
			ins[i], _ = p.Input(k)
		}
		var err error
		if s.Outputs, err = plan.Outputs(target, s, ins); err != nil {
			return "", err
		}
		s.ID = plan.StepID(s)
		p.Steps = append(p.Steps, s)
		return s.ID, nil
	}
	var entrySteps, imageKeys, imageSteps []string
	for _, in := range p.Inputs {
		var s plan.Step
		switch in.Kind {
		case plan.KindChart:
			s = plan.Step{Action: plan.ActionChart, Params: map[string]string{plan.ParamName: in.Name, plan.ParamVersion: in.Chart.Version}}
		case plan.KindImage:
			s = plan.Step{Action: plan.ActionImage, Params: map[string]string{plan.ParamName: in.Name}}
		case plan.KindValues:
			c, ok := p.Input(plan.KindChart + "/" + in.Name)
			if !ok || c.Chart == nil {
				return fmt.Errorf("values file %s: no chart %s", in.Source.Path, in.Name)
			}
			s = plan.Step{Action: plan.ActionValues, Params: map[string]string{plan.ParamName: in.Name, plan.ParamVersion: c.Chart.Version}}
		case plan.KindSignature:
			s = plan.Step{Action: plan.ActionCopy, Params: map[string]string{plan.ParamName: in.Name}}
		default:
			continue
		}
		s.Inputs = []string{in.Key()}
		id, err := add(s)
		if err != nil {
			return err
		}
		if in.Kind == plan.KindImage {
			imageKeys = append(imageKeys, in.Key())
			imageSteps = append(imageSteps, id)
		} else {
			entrySteps = append(entrySteps, id)
		}
	}
	layout, err := add(plan.Step{Action: plan.ActionOCILayout, Inputs: imageKeys, Needs: imageSteps})
	if err != nil {
		return err
	}
	entrySteps = append(append(entrySteps, imageSteps...), layout)
	sort.Strings(entrySteps)
	kinds := make(map[string]string, len(bp.Bundles))
	for _, b := range bp.Bundles {
		kinds[b.Name] = b.Kind
	}
	var bundles []string
	indexParams := map[string]string{plan.ParamName: bp.Name}
	for _, in := range p.Inputs {
		if in.Kind == plan.KindBundle {
			bundles = append(bundles, in.Key())
			indexParams[plan.ParamBundleKindPrefix+in.Name] = kinds[in.Name]
		}
	}
	index, err := add(plan.Step{Action: plan.ActionPackIndex, Inputs: bundles, Needs: entrySteps, Params: indexParams})
	if err != nil {
		return err
	}
	archiveStep, err := add(plan.Step{
		Action: plan.ActionPack,
		Needs:  append(slices.Clone(entrySteps), index),
		Params: map[string]string{plan.ParamName: bp.Name, plan.ParamCompression: bp.Compression.Algorithm, plan.ParamLevel: strconv.Itoa(bp.Compression.Level)},
	})
	if err != nil {
		return err
	}
	if _, err := add(plan.Step{Action: plan.ActionChecksum, Needs: []string{archiveStep}, Params: map[string]string{plan.ParamName: tarName}}); err != nil {
		return err
	}
	p.Targets = append(p.Targets, target)
	return nil
}
