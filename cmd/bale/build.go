package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/source"
)

// buildOptions are bale build's flags.
type buildOptions struct {
	plan     planFlags
	planPath string
	out      string
	cacheDir string
	format   string
	quiet    bool
}

// buildResult is what a build made, for render.
type buildResult struct {
	planID string
	res    *executor.Result
}

func newBuild() *cobra.Command {
	var o buildOptions
	cmd := &cobra.Command{
		Use:   "build [PATH | --plan plan.json]",
		Short: "Build a spec's artifacts, byte for byte the same every time",
		Long: `build plans a spec (or takes a plan made by bale plan) and executes it into
the output directory. For a bootstrap pack it writes NAME.tar (a gzip'd tar of
charts/, images/ as an OCI layout with a docker-save manifest.json,
signatures/ and pack-index.json) and NAME.tar.sha256 for sha256sum -c.

Every blob passes through a content-addressed cache (--cache; default
$XDG_CACHE_HOME/bale) and every step's result is recorded by step id, so
building a plan again runs no step. Artifacts appear under their final names
only when complete. Blobs fetched at build time are held to the same network
limits as plan's (--timeout, --speed-limit, --speed-time, --request-timeout,
at most 10 redirects).

It prints each artifact's artifactSha256 (sha256 of the file), the pack's
rootHash (sha256 of its pack index), its size and the plan id.`,
		Example: `  bale build specs/airgap -o out
  bale plan specs/airgap -o plan.json && bale build --plan plan.json -o out
  bale build specs/airgap -o out --format json | jq -r .artifactSha256
  (cd out && sha256sum -c bootstrap-pack-v1.tar.sha256)`,
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
			return o.render(cmd.OutOrStdout(), r)
		},
	}
	o.plan.register(cmd)
	flags := cmd.Flags()
	flags.StringVar(&o.planPath, "plan", "", "execute this plan instead of planning a spec; nothing is resolved again")
	flags.StringVarP(&o.out, "output", "o", "out", "output directory")
	flags.StringVar(&o.cacheDir, "cache", "", "content-addressed cache directory (default $XDG_CACHE_HOME/bale)")
	flags.StringVar(&o.format, "format", "text", "output format: text or json")
	flags.BoolVarP(&o.quiet, "quiet", "q", false, "no progress on standard error")
	return cmd
}

// run plans the spec at path (or reads --plan) and executes the plan,
// reporting progress on stderr.
func (o *buildOptions) run(ctx context.Context, path string, stderr io.Writer) (*buildResult, error) {
	if err := checkFormat(o.format, "text", "json"); err != nil {
		return nil, err
	}
	// Before planning and fetching, which can take long: an output
	// directory that cannot be written fails now, not after them.
	if err := checkOutDir(o.out); err != nil {
		return nil, err
	}
	pl, err := o.planned(ctx, path, stderr)
	if err != nil {
		return nil, err
	}
	cacheDir := o.cacheDir
	if cacheDir == "" {
		if cacheDir, err = defaultCache(); err != nil {
			return nil, err
		}
	}
	store, err := cas.Open(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	src := pl.src
	if src == nil { // a plan read from a file
		if src, err = o.plan.resolver(pl.root); err != nil {
			return nil, err
		}
	}
	opts := executor.Options{OutDir: o.out, Store: store, Jobs: o.plan.jobs,
		Warn: func(msg string) { fmt.Fprintf(stderr, "warning: %s\n", msg) }}
	if !o.quiet {
		opts.Progress = buildProgress(stderr, pl.sp.Plan())
	}
	res, err := executor.Execute(ctx, pl.sp, src, opts)
	if err != nil {
		if le := (*source.LocalError)(nil); o.planPath != "" && errors.As(err, &le) && errors.Is(le, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w\n(a plan's local paths are relative to its workspace root, here %s: run from the workspace the plan was made in, or pass --root)", err, pl.root)
		}
		return nil, err
	}
	return &buildResult{planID: pl.sp.ID(), res: res}, nil
}

// planned returns the plan to build: --plan's, or the spec's at path.
func (o *buildOptions) planned(ctx context.Context, path string, stderr io.Writer) (*planned, error) {
	switch {
	case o.planPath != "" && path != "":
		return nil, fmt.Errorf("build: give a spec PATH or --plan, not both")
	case o.planPath != "":
		pl, err := readPlan(o.planPath)
		if err != nil {
			return nil, err
		}
		if pl.root, err = o.plan.planRoot(); err != nil {
			return nil, err
		}
		return pl, nil
	}
	return o.plan.makePlan(ctx, path, stderr, !o.quiet)
}

// render prints what the build made, as text or JSON.
func (o *buildOptions) render(w io.Writer, r *buildResult) error {
	res := r.res
	if o.format == "json" {
		out, err := o.jsonOutput(r)
		if err != nil {
			return err
		}
		return writeJSON(w, out)
	}
	for _, a := range res.Artifacts {
		fmt.Fprintf(w, "%s\n", filepath.Join(o.out, a.Path))
		fmt.Fprintf(w, "  artifactSha256  %s\n", a.SHA256)
		if a.RootHash != "" {
			fmt.Fprintf(w, "  rootHash        %s\n", a.RootHash)
		}
		fmt.Fprintf(w, "  size            %d (%s)\n", a.Size, humanBytes(a.Size))
	}
	for _, k := range res.Kits {
		fmt.Fprintf(w, "offline kit %s in %s: archive %s, signing key %s\n", k.Name, o.out, k.Archive, k.SigningKey)
	}
	fmt.Fprintf(w, "planId %s\n", r.planID)
	if res.StepsRun == 0 {
		fmt.Fprintf(w, "nothing to do: all %s cached\n", count(res.StepsCached, "step"))
	} else {
		fmt.Fprintf(w, "%s run, %d cached\n", count(res.StepsRun, "step"), res.StepsCached)
	}
	return nil
}

// buildOutput is build's JSON output. Its top level names the main
// artifact under the names the bootstrap pack contract and bale verify
// use: for a pack, the pack (path, artifactSha256, rootHash, size); for a
// release, the kit archive (path, artifactSha256, size) and the kit
// (kind, name, kitDir, devKey, signingKey). Then the plan id, every
// artifact (a kit's with its kind) and the step counts.
type buildOutput struct {
	Path           string `json:"path,omitempty"`
	ArtifactSha256 string `json:"artifactSha256,omitempty"`
	RootHash       string `json:"rootHash,omitempty"`
	Size           int64  `json:"size,omitempty"`
	// Kind is kit.ManifestKind for a release, as bale verify says.
	Kind   string `json:"kind,omitempty"`
	Name   string `json:"name,omitempty"`
	KitDir string `json:"kitDir,omitempty"`
	// DevKey is set for a release only: false is worth saying there.
	DevKey *bool `json:"devKey,omitempty"`
	// SigningKey is executor.KeyFile, KeyEnv or KeyDev.
	SigningKey string `json:"signingKey,omitempty"`
	PlanID     string `json:"planId"`
	OutDir     string `json:"outDir"`
	*executor.Result
	// Artifacts shadows Result.Artifacts to add each kit file's kind.
	Artifacts []artifactOutput `json:"artifacts"`
}

// artifactOutput is one artifact in build's JSON; Kind is, for a file of
// an offline kit, its kind as offline-kit.json names kinds (kit.KindOf).
type artifactOutput struct {
	executor.Artifact
	Kind string `json:"kind,omitempty"`
}

// jsonOutput fills buildOutput for r. A release's kinds and devKey come
// from the kit manifest the build returned (executor.Kit.Manifest).
func (o *buildOptions) jsonOutput(r *buildResult) (*buildOutput, error) {
	res := r.res
	out := &buildOutput{PlanID: r.planID, OutDir: o.out, Result: res, Artifacts: make([]artifactOutput, len(res.Artifacts))}
	byPath := map[string]executor.Artifact{}
	for i, a := range res.Artifacts {
		out.Artifacts[i].Artifact = a
		byPath[a.Path] = a
		if a.RootHash != "" && out.Path == "" {
			out.Path, out.ArtifactSha256, out.RootHash, out.Size = filepath.Join(o.out, a.Path), a.SHA256, a.RootHash, a.Size
		}
	}
	if len(res.Kits) == 0 {
		return out, nil
	}
	for i := range out.Artifacts {
		for _, k := range res.Kits {
			if kind := k.Manifest.KindOf(out.Artifacts[i].Path); kind != "" {
				out.Artifacts[i].Kind = kind
			}
		}
	}
	if out.Path != "" {
		return out, nil // a pack is the main artifact
	}
	k := res.Kits[0]
	a, ok := byPath[k.Archive]
	if !ok {
		return nil, fmt.Errorf("offline kit %s: the build wrote no archive %s", k.Name, k.Archive)
	}
	dev := k.Manifest.DevKey
	out.Path, out.ArtifactSha256, out.Size = filepath.Join(o.out, a.Path), a.SHA256, a.Size
	out.Kind, out.Name, out.KitDir, out.DevKey, out.SigningKey = k.Manifest.Kind, k.Manifest.Name, o.out, &dev, k.SigningKey
	return out, nil
}

// planRoot is the workspace root a plan file's local paths are relative to:
// --root, else the workspace around the working directory.
func (f *planFlags) planRoot() (string, error) {
	if f.root != "" {
		return filepath.Abs(f.root)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return planner.FindRoot(wd), nil
}

// checkOutDir checks that the output directory dir can be written: if it
// exists, by creating and removing a file in it; if not, by checking that
// its nearest existing ancestor is a directory bale may create entries in.
// A missing directory is not created here, so a build refused later for
// another reason leaves nothing behind.
func checkOutDir(dir string) error {
	if dir == "-" {
		return fmt.Errorf("-o -: build writes a directory, not a stream; name a directory")
	}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("output directory %s is not a directory", dir)
	case err == nil:
		f, err := os.CreateTemp(dir, ".bale-probe-*")
		if err != nil {
			return fmt.Errorf("output directory %s is not writable: %w", dir, err)
		}
		f.Close()
		if err := os.Remove(f.Name()); err != nil {
			return fmt.Errorf("output directory %s: remove probe file: %w", dir, err)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != filepath.Dir(p) {
			continue
		}
		if err != nil {
			return fmt.Errorf("output directory %s: %w", dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("output directory %s cannot be created: %s is not a directory", dir, p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("output directory %s cannot be created in %s: %w", dir, p, err)
		}
		return nil
	}
}

func defaultCache() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory (set --cache or XDG_CACHE_HOME): %w", err)
	}
	return filepath.Join(dir, "bale"), nil
}

// buildProgress reports a build for people. On a terminal it rewrites one
// line: the steps done, the image being fetched with its bytes done and
// total, the fetch rate and the time left; the pack step says it is
// packing. Elsewhere (CI logs) it prints one line per finished step.
func buildProgress(w io.Writer, p *plan.Plan) func(executor.Event) { return newProgress(w, p).event }

// newProgress sets up buildProgress's state for plan p.
func newProgress(w io.Writer, p *plan.Plan) *progress {
	pr := &progress{w: w, tty: isTerminal(w), total: len(p.Steps), now: time.Now, start: time.Now(),
		names: map[string]string{}, imageSize: map[string]int64{}, imageDone: map[string]int64{}}
	for _, s := range p.Steps {
		if n := s.Params[plan.ParamName]; n != "" {
			pr.names[s.ID] = n
		}
	}
	for _, in := range p.Inputs {
		if in.Kind != plan.KindImage || in.Image == nil {
			continue
		}
		seen := map[string]bool{}
		for _, m := range in.Image.Manifests {
			for _, b := range m.Blobs() {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					pr.imageSize[in.Name] += b.Size
				}
			}
		}
		pr.fetchTotal += pr.imageSize[in.Name]
	}
	return pr
}

// progress is buildProgress's state.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	done  int
	// now is the clock rates and redraws are timed by (a test's own).
	now   func() time.Time
	start time.Time
	last  time.Time // the last terminal redraw
	// names maps a step id to the name of what it builds.
	names map[string]string
	// imageSize and imageDone are each image's bytes to fetch and
	// fetched (or found cached); fetchTotal and fetched their sums.
	imageSize, imageDone map[string]int64
	fetchTotal, fetched  int64
	// fetchedNow counts only bytes that arrived in this run, for the rate.
	fetchedNow int64
	// packed counts the pack's entry bytes written since packStart.
	packed    int64
	packStart time.Time
}

// rateLine says "DONE / TOTAL  RATE/s  ETA T" for work started elapsed ago.
func rateLine(done, total int64, elapsed time.Duration) string {
	return fmt.Sprintf("%s / %s", humanBytes(min(done, total)), humanBytes(total)) + rateETA(done, total-done, elapsed)
}

// rateETA says "  RATE/s  ETA T" for done bytes in elapsed and left bytes
// to go, or nothing before half a second or a first byte.
func rateETA(done, left int64, elapsed time.Duration) string {
	if elapsed < 500*time.Millisecond || done == 0 {
		return ""
	}
	rate := float64(done) / elapsed.Seconds()
	s := fmt.Sprintf("  %s/s", humanBytes(int64(rate)))
	if left > 0 {
		s += "  ETA " + time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return s
}

func (pr *progress) event(e executor.Event) {
	switch e.Kind {
	case executor.EventFetched:
		pr.imageDone[e.Subject] += e.Bytes
		pr.fetched += e.Bytes
		pr.fetchedNow += e.Bytes
		if now := pr.now(); pr.tty && now.Sub(pr.last) >= 100*time.Millisecond {
			pr.last = now
			fmt.Fprintf(pr.w, "\r\x1b[K[%d/%d] fetching %s %s", pr.done, pr.total, e.Subject, pr.bytesLine(e.Subject))
		}
	case executor.EventStart:
		if pr.tty && e.Action == plan.ActionPack {
			fmt.Fprintf(pr.w, "\r\x1b[K[%d/%d] packing %s", pr.done, pr.total, pr.names[e.StepID])
		}
	case executor.EventPacked:
		if pr.packStart.IsZero() {
			pr.packStart = pr.now()
		}
		pr.packed += e.Bytes
		if now := pr.now(); pr.tty && now.Sub(pr.last) >= 100*time.Millisecond {
			pr.last = now
			fmt.Fprintf(pr.w, "\r\x1b[K[%d/%d] packing %s %s", pr.done, pr.total, e.Subject, rateLine(pr.packed, e.Total, now.Sub(pr.packStart)))
		}
	case executor.EventDone, executor.EventCached:
		pr.done++
		verb := "built "
		if e.Kind == executor.EventCached {
			verb = "cached"
		}
		name := pr.names[e.StepID]
		if e.Action == plan.ActionImage {
			// Whatever was not fetched was in the cache.
			rest := pr.imageSize[name] - pr.imageDone[name]
			pr.imageDone[name] += rest
			pr.fetched += rest
		}
		if name == "" {
			name = e.Subject
			if i := strings.Index(name, ":"); i >= 0 {
				name = name[i+1:]
			}
		}
		line := fmt.Sprintf("[%d/%d] %s %-10s %9s  %s", pr.done, pr.total, verb, e.Action, humanBytes(e.Bytes), name)
		if pr.tty {
			fmt.Fprintf(pr.w, "\r\x1b[K%s", line)
			if pr.done == pr.total {
				fmt.Fprint(pr.w, "\r\x1b[K")
			}
			return
		}
		fmt.Fprintln(pr.w, line)
	case executor.EventRetry:
		if pr.tty {
			fmt.Fprint(pr.w, "\r\x1b[K")
		}
		fmt.Fprintf(pr.w, "cache entry corrupt, dropped and rebuilding: %v\n", e.Err)
		// The build starts over and reports every step again.
		pr.done = 0
		for k := range pr.imageDone {
			pr.imageDone[k] = 0
		}
		pr.fetched = 0
		pr.packed, pr.packStart = 0, time.Time{}
	}
}

// bytesLine says how far image name's fetch is, with the rate of this run
// and the time left for every image's bytes at that rate.
func (pr *progress) bytesLine(name string) string {
	s := fmt.Sprintf("%s / %s", humanBytes(pr.imageDone[name]), humanBytes(pr.imageSize[name]))
	return s + rateETA(pr.fetchedNow, pr.fetchTotal-pr.fetched, pr.now().Sub(pr.start))
}
