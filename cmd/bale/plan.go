package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

// planFlags are the flags of every command that resolves a spec.
type planFlags struct {
	jobs     int
	lock     string
	offline  bool
	insecure []string
	net      netFlags
	root     string
	strict   bool
	eval     evalLimits
}

func (f *planFlags) register(cmd *cobra.Command) {
	f.eval.register(cmd)
	fs := cmd.Flags()
	fs.IntVar(&f.jobs, "jobs", 8, "inputs resolved at once")
	fs.StringVar(&f.lock, "lock", "", "re-use the pinned digests of this earlier plan instead of resolving tags; an input missing from it is an error")
	fs.BoolVar(&f.offline, "offline", false, "refuse any network access: local sources and the lock only")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry HOST[:PORT] reachable over plain HTTP (loopback always is); repeatable")
	f.net.register(cmd)
	fs.BoolVar(&f.strict, "strict", false, "treat lint warnings (an image by tag without a digest, a chart without a version) as errors; bale pin writes the pins")
	fs.StringVar(&f.root, "root", "", "workspace root plan paths are relative to (default: nearest ancestor with cue.mod or .git)")
}

// resolver builds the resolver for a spec.
func (f *planFlags) resolver(root string) (*source.Resolver, error) {
	opts, err := f.sourceOptions()
	if err != nil {
		return nil, err
	}
	opts.Root = root
	return source.New(opts)
}

// sourceOptions are the resolver's options the flags give.
func (f *planFlags) sourceOptions() (source.Options, error) {
	o, err := f.net.options()
	if err != nil {
		return source.Options{}, err
	}
	o.Insecure, o.Offline = f.insecure, f.offline
	return o, nil
}

// byteSize is a flag holding a byte count as parseSize reads it (1024,
// 1KiB, 2.5MB), or 0.
type byteSize int64

func (b *byteSize) Set(s string) error {
	if strings.TrimSpace(s) == "0" {
		*b = 0
		return nil
	}
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if n < 1024 || n%1024 != 0 || u == "GiB" {
			return strconv.FormatInt(n, 10) + u
		}
		n /= 1024
	}
	return ""
}

func (b *byteSize) Type() string { return "size" }

// planned is a plan with its canonical bytes and id.
type planned struct {
	// root is the workspace root the plan's local paths are relative to.
	root string
	name string
	sp   *plan.Sealed
	// src is the resolver that planned it, nil for a plan read from a
	// file: a build reads its inputs through it, keeping its registry
	// tokens and connections.
	src *source.Resolver
}

// load loads the one spec at path, under --root, printing its
// diagnostics; with --strict, lint warnings are errors. It returns the
// spec and its workspace root.
func (f *planFlags) load(ctx context.Context, path string, stderr io.Writer) (*spec.Instance, string, error) {
	args := []string{}
	if path != "" {
		args = append(args, path)
	}
	// --root confines the CUE loader's reads as well as the plan's paths.
	var root string
	if f.root != "" {
		var err error
		if root, err = filepath.Abs(f.root); err != nil {
			return nil, "", err
		}
	}
	inst, err := loadOne(ctx, args, spec.Options{Root: root}, f.eval, f.strict, stderr)
	if err != nil {
		return nil, "", err
	}
	if root == "" {
		root = planner.FindRoot(inst.Dir)
	}
	return inst, root, nil
}

// makePlan loads the one spec at path and plans it.
func (f *planFlags) makePlan(ctx context.Context, path string, stderr io.Writer, progress bool) (*planned, error) {
	inst, root, err := f.load(ctx, path, stderr)
	if err != nil {
		return nil, err
	}
	return f.planInstance(ctx, inst, root, stderr, progress)
}

// planInstance plans a loaded spec whose workspace root is root.
func (f *planFlags) planInstance(ctx context.Context, inst *spec.Instance, root string, stderr io.Writer, progress bool) (*planned, error) {
	src, err := f.sourceOptions()
	if err != nil {
		return nil, err
	}
	opts := planner.Options{Root: root, Jobs: f.jobs, Offline: f.offline}
	if f.lock != "" {
		lp, err := readPlan(f.lock)
		if err != nil {
			return nil, err
		}
		opts.Lock = lp.sp.Plan()
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		ts, err := spec.ParseTimestamp(v)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		opts.SourceDateEpoch = &ts.Time
		// CI systems export SOURCE_DATE_EPOCH; the artifact then differs
		// from one built without it, so say which timestamp wins.
		if own, ok := specEpoch(inst.Spec); ok && !own.Equal(ts.Time) {
			fmt.Fprintf(stderr, "bale: SOURCE_DATE_EPOCH=%s overrides the spec's sourceDateEpoch %s: building with %s\n",
				v, own.UTC().Format(time.RFC3339), ts.Time.UTC().Format(time.RFC3339))
		}
	}
	if progress {
		opts.Progress = progressLine(stderr, "resolve")
	}
	sp, r, err := planner.PlanInstance(ctx, inst, src, opts)
	if err != nil {
		return nil, f.explain(stderr, inst, err)
	}
	return &planned{root: root, name: inst.Name, sp: sp, src: r}, nil
}

// explain prints a planning failure for a person: every input that failed
// on a line of its own at its place in the spec, as vet prints diagnostics,
// and what to do about the failures a flag or a command decides.
func (f *planFlags) explain(stderr io.Writer, inst *spec.Instance, err error) error {
	var ie *planner.InputError
	if !errors.As(err, &ie) {
		return err
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var moved []string
	for _, e := range errs {
		fmt.Fprintln(stderr, e)
		if errors.Is(e, source.ErrMoved) && errors.As(e, &ie) && !slices.Contains(moved, ie.Name) {
			moved = append(moved, ie.Name)
		}
	}
	if len(moved) > 0 {
		slices.Sort(moved)
		fmt.Fprintf(stderr, "bale: a digest the spec pins is no longer its source's (a moved tag, a republished chart): review the change, then re-pin with: %s\n", f.pinUpdate(inst, moved))
	}
	switch {
	case errors.Is(err, source.ErrOffline) && f.lock == "":
		fmt.Fprintln(stderr, "bale: --offline resolves only local sources; pass --lock PLAN, a plan made online, to take registry and URL inputs from it")
	case errors.Is(err, source.ErrOutsideRoot):
		fmt.Fprintln(stderr, rootHint)
	}
	return &exitError{code: 1, reported: true}
}

// pinUpdate is the bale pin command that re-pins the inputs names of the
// spec inst, as the user would type it.
func (f *planFlags) pinUpdate(inst *spec.Instance, names []string) string {
	cmd := "bale pin --update=" + strings.Join(names, ",")
	if dir := relName(inst.Dir); dir != "." {
		cmd += " " + dir
	}
	if f.root != "" {
		cmd += " --root " + f.root
	}
	return cmd
}

// rootHint is what plan and vet say about a local path outside the
// workspace root.
const rootHint = "bale: local paths must stay inside the workspace root: the nearest directory above the spec holding cue.mod or .git; name another with --root"

// specEpoch returns the build timestamp spec s names, if any.
func specEpoch(s *spec.Spec) (time.Time, bool) {
	switch {
	case s == nil:
		return time.Time{}, false
	case s.BootstrapPack != nil:
		return s.BootstrapPack.SourceDateEpoch.Time, true
	case s.Release != nil:
		return s.Release.SourceDateEpoch.Time, true
	}
	return time.Time{}, false
}

// isTerminal reports whether w is a terminal: progress lines and colour
// are for people, not for logs and pipes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// loadOne loads the one spec args name, printing its diagnostics
// (warnings included) to stderr; spec errors end the command with exit 1.
func loadOne(ctx context.Context, args []string, opts spec.Options, lim evalLimits, strict bool, stderr io.Writer) (*spec.Instance, error) {
	insts, diags, err := lim.load(ctx, stderr, args, opts)
	if err != nil {
		return nil, err
	}
	if strict {
		for i := range diags {
			diags[i].Severity = spec.SeverityError
		}
	}
	for _, d := range diags {
		fmt.Fprintln(stderr, d.String())
	}
	if diags.HasErrors() {
		return nil, &exitError{code: 1, reported: true}
	}
	if len(insts) != 1 {
		return nil, fmt.Errorf("%d specs matched %v; name exactly one", len(insts), args)
	}
	return insts[0], nil
}

// readPlan reads and checks a plan file.
func readPlan(path string) (*planned, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	defer f.Close()
	sp, err := plan.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &planned{name: path, sp: sp}, nil
}

// progressLine reports progress: a rewritten line on a terminal, nothing
// elsewhere (CI logs want the result, not a line per input).
func progressLine(w io.Writer, what string) func(key string, done, total int) {
	if !isTerminal(w) {
		return nil
	}
	return func(key string, done, total int) {
		fmt.Fprintf(w, "\r\x1b[K%s %d/%d %s", what, done, total, key)
		if done == total {
			fmt.Fprint(w, "\r\x1b[K")
		}
	}
}

// planOptions are bale plan's flags.
type planOptions struct {
	plan   planFlags
	out    string
	format string
	quiet  bool
}

// planResult is the plan made and where it went ("" for standard output).
type planResult struct {
	pl  *planned
	out string
}

func newPlan() *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan [PATH]",
		Short: "Resolve every input to a digest and write the plan",
		Long: `plan loads one spec, resolves every image, chart and file to a digest, and
writes the plan: canonical JSON listing every pinned input and every step the
build will run. The plan id is the sha256 of the plan file's bytes, so
"sha256sum plan.json" recomputes it.

A digest pinned in the spec that disagrees with its source is an error, never
a silent re-pin. With --lock, tags are not resolved again: the digests of the
earlier plan are used, and an input missing from it is an error. With
--offline nothing is fetched over the network.

Every request follows at most 10 redirects and is given up on when its
headers or next body byte take longer than --timeout, when its body averages
below --speed-limit over a --speed-time window, or when it is not done within
--request-timeout; such a request is not retried.

SOURCE_DATE_EPOCH in the environment overrides the spec's build timestamp;
plan and build then say so on standard error, naming both values.`,
		Example: `  bale plan specs/airgap -o plan.json
  bale plan specs/airgap --lock plan.json --offline -o plan.json
  bale plan specs/airgap --format json | jq .planId`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			r, err := o.run(cmd.Context(), path, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), cmd.ErrOrStderr(), r)
		},
	}
	o.plan.register(cmd)
	cmd.Flags().StringVarP(&o.out, "output", "o", "", "write the plan to this file; - or none for standard output")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "no progress on standard error")
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text or json")
	return cmd
}

// run plans the spec at path and writes the plan to -o, if given.
func (o *planOptions) run(ctx context.Context, path string, stderr io.Writer) (*planResult, error) {
	if err := checkFormat(o.format, "text", "json"); err != nil {
		return nil, err
	}
	out := o.out
	if out == "-" {
		out = "" // standard output, as without -o
	}
	pl, err := o.plan.makePlan(ctx, path, stderr, !o.quiet)
	if err != nil {
		return nil, err
	}
	if out != "" {
		if err := atomicfile.WriteFile(out, pl.sp.Bytes()); err != nil {
			return nil, err
		}
	}
	return &planResult{pl: pl, out: out}, nil
}

// render prints the plan's summary (json: one object), and the plan itself
// when it went to no file.
func (o *planOptions) render(stdout, stderr io.Writer, r *planResult) error {
	sum := summarize(r.pl)
	if o.format == "json" {
		sum.Path = r.out
		return writeJSON(stdout, sum)
	}
	if r.out == "" {
		// Without -o the plan itself is the output, for pipes.
		_, err := stdout.Write(r.pl.sp.Bytes())
		fmt.Fprintf(stderr, "plan %s  %s, %s, %s from sources\n", r.pl.sp.ID(), count(sum.Inputs, "input"), count(sum.Steps, "step"), humanBytes(sum.Bytes))
		return err
	}
	fmt.Fprintf(stdout, "%s  %s\n", r.pl.sp.ID(), r.out)
	fmt.Fprintf(stdout, "%s, %s, %s from sources\n", count(sum.Inputs, "input"), count(sum.Steps, "step"), humanBytes(sum.Bytes))

	return nil
}

// planSummary is plan's JSON output.
type planSummary struct {
	PlanID string `json:"planId"`
	Path   string `json:"path,omitempty"`
	Spec   string `json:"spec"`
	Inputs int    `json:"inputs"`
	Steps  int    `json:"steps"`
	Bytes  int64  `json:"bytes"`
}

func summarize(pl *planned) planSummary {
	s := planSummary{PlanID: pl.sp.ID(), Spec: pl.sp.Plan().Spec.Digest, Inputs: len(pl.sp.Plan().Inputs), Steps: len(pl.sp.Plan().Steps)}
	// A blob two images share is fetched once.
	seen := map[string]bool{}
	for _, in := range pl.sp.Plan().Inputs {

		if in.Image != nil {
			for _, m := range in.Image.Manifests {
				for _, b := range m.Blobs() {
					if !seen[b.Digest] {
						seen[b.Digest] = true
						s.Bytes += b.Size
					}
				}
			}
			continue
		}
		s.Bytes += in.Size
	}
	return s
}

// count says "1 chart", "2 charts", "0 entries": n and the noun, plural
// unless n is 1.
func count(n int, noun string) string {
	switch {
	case n == 1:
	case strings.HasSuffix(noun, "y"):
		noun = strings.TrimSuffix(noun, "y") + "ies"
	default:
		noun += "s"
	}
	return strconv.Itoa(n) + " " + noun
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
