package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/resolve"
)

func newBuild() *cobra.Command {
	var (
		pf       planFlags
		planPath string
		out      string
		cacheDir string
		format   string
		quiet    bool
	)
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
			if err := checkFormat(format, "text", "json"); err != nil {
				return err
			}
			// Before planning and fetching, which can take long: an output
			// directory that cannot be written fails now, not after them.
			if err := checkOutDir(out); err != nil {
				return err
			}
			ctx := cmd.Context()
			stderr := cmd.ErrOrStderr()
			var (
				pl  *planned
				err error
			)
			switch {
			case planPath != "" && len(args) > 0:
				return fmt.Errorf("build: give a spec PATH or --plan, not both")
			case planPath != "":
				if pl, err = readPlan(planPath); err == nil {
					pl.root, err = pf.planRoot()
				}
			default:
				path := ""
				if len(args) == 1 {
					path = args[0]
				}
				pl, err = pf.makePlan(ctx, path, stderr, !quiet)
			}
			if err != nil {
				return err
			}
			if cacheDir == "" {
				if cacheDir, err = defaultCache(); err != nil {
					return err
				}
			}
			store, err := cas.Open(cacheDir)
			if err != nil {
				return fmt.Errorf("open cache: %w", err)
			}
			src, err := pf.resolver(pl.root)
			if err != nil {
				return err
			}
			opts := executor.Options{OutDir: out, Store: store, Jobs: pf.jobs,
				Warn: func(msg string) { fmt.Fprintf(stderr, "warning: %s\n", msg) }}
			if !quiet {
				opts.Progress = buildProgress(stderr, len(pl.plan.Steps))
			}
			res, err := executor.Execute(ctx, pl.plan, pl.id, src, opts)
			if err != nil {
				if le := (*resolve.LocalError)(nil); planPath != "" && errors.As(err, &le) && errors.Is(le, fs.ErrNotExist) {
					return fmt.Errorf("%w\n(a plan's local paths are relative to its workspace root, here %s: run from the workspace the plan was made in, or pass --root)", err, pl.root)
				}
				return err
			}
			if format == "json" {
				o := buildOutput{PlanID: pl.id, OutDir: out, Result: res}
				for _, a := range res.Artifacts {
					if a.RootHash != "" {
						o.Path, o.ArtifactSha256, o.RootHash, o.Size = filepath.Join(out, a.Path), a.SHA256, a.RootHash, a.Size
						break
					}
				}
				return writeJSON(cmd.OutOrStdout(), o)
			}
			w := cmd.OutOrStdout()
			for _, a := range res.Artifacts {
				fmt.Fprintf(w, "%s\n", filepath.Join(out, a.Path))
				fmt.Fprintf(w, "  artifactSha256  %s\n", a.SHA256)
				if a.RootHash != "" {
					fmt.Fprintf(w, "  rootHash        %s\n", a.RootHash)
				}
				fmt.Fprintf(w, "  size            %d (%s)\n", a.Size, humanBytes(a.Size))
			}
			fmt.Fprintf(w, "planId %s\n", pl.id)
			if res.StepsRun == 0 {
				fmt.Fprintf(w, "nothing to do: all %d steps cached\n", res.StepsCached)
			} else {
				fmt.Fprintf(w, "%d steps run, %d cached\n", res.StepsRun, res.StepsCached)
			}
			return nil
		},
	}
	pf.register(cmd)
	fs := cmd.Flags()
	fs.StringVar(&planPath, "plan", "", "execute this plan instead of planning a spec; nothing is resolved again")
	fs.StringVarP(&out, "output", "o", "out", "output directory")
	fs.StringVar(&cacheDir, "cache", "", "content-addressed cache directory (default $XDG_CACHE_HOME/bale)")
	fs.StringVar(&format, "format", "text", "output format: text or json")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress on standard error")
	return cmd
}

// buildOutput is build's JSON output: the pack's facts under the names the
// bootstrap pack contract uses, then every artifact and the step counts.
type buildOutput struct {
	Path           string `json:"path,omitempty"`
	ArtifactSha256 string `json:"artifactSha256,omitempty"`
	RootHash       string `json:"rootHash,omitempty"`
	Size           int64  `json:"size,omitempty"`
	PlanID         string `json:"planId"`
	OutDir         string `json:"outDir"`
	*executor.Result
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

// buildProgress shows one rewritten line on a terminal and one line per
// finished step elsewhere, each with the step's bytes and the running total.
func buildProgress(w io.Writer, total int) func(executor.Event) {
	tty := isTerminal(w)
	done := 0
	var bytes int64
	return func(e executor.Event) {
		switch e.Kind {
		case executor.EventDone, executor.EventCached:
			done++
			bytes += e.Bytes
			verb := "built "
			if e.Kind == executor.EventCached {
				verb = "cached"
			}
			subject := e.Subject
			if i := strings.Index(subject, ":"); i >= 0 {
				subject = subject[i+1:]
			}
			line := fmt.Sprintf("[%d/%d] %s %-10s %9s  (%s total)  %s", done, total, verb, e.Action, humanBytes(e.Bytes), humanBytes(bytes), subject)
			if tty {
				fmt.Fprintf(w, "\r\x1b[K%s", line)
				if done == total {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			}
			fmt.Fprintln(w, line)
		case executor.EventRetry:
			if tty {
				fmt.Fprint(w, "\r\x1b[K")
			}
			fmt.Fprintf(w, "cache entry corrupt, dropped and rebuilding: %v\n", e.Err)
			// The build starts over and reports every step again.
			done, bytes = 0, 0
		}
	}
}
