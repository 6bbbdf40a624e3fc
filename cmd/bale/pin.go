package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/planner/pin"
)

// pinOptions are bale pin's flags.
type pinOptions struct {
	plan   planFlags
	check  bool
	dryRun bool
	quiet  bool
}

// pinResult is what bale pin found and did.
type pinResult struct {
	pins    []pin.Pin
	edits   []pin.Edit
	written bool
}

func newPin() *cobra.Command {
	var o pinOptions
	cmd := &cobra.Command{
		Use:   "pin [PATH]",
		Short: "Write resolved digests and chart versions into the spec",
		Long: `pin resolves the spec as bale plan does and writes what it left open back
into its CUE source: a digest beside every image named by tag (or OCI layout
without refName); for every chart, the exact version resolved when the spec
gives none or a range ("^1.4"), and the digest of its archive (the index's
or registry's, or a directory's tree digest) when it gives none. Then
vet --strict, plan --strict and build --strict accept the spec, and a chart
republished under the same version fails the build.

The source is edited as CUE syntax and printed with cue/format: comments and
the rest of the file stay. pin prints a unified diff of every file it
changes; --dry-run prints it and writes nothing.

--check resolves nothing (no network): it lists every input the spec leaves
unpinned, at its place in the spec, and exits 1 if there is any.`,
		Example: `  bale pin specs/airgap
  bale pin specs/airgap --dry-run
  bale pin specs/airgap --check        # in CI: fail when something is unpinned`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			res, err := o.run(cmd, path)
			if err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
		},
	}
	o.plan.register(cmd)
	cmd.Flags().BoolVar(&o.check, "check", false, "resolve nothing: list what is unpinned and exit 1 if anything is")
	cmd.Flags().BoolVarP(&o.dryRun, "dry-run", "n", false, "print the diff, write nothing")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "no progress on standard error")
	return cmd
}

// run finds what the spec leaves open and, unless checking, resolves and
// writes it.
func (o *pinOptions) run(cmd *cobra.Command, path string) (*pinResult, error) {
	ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
	inst, root, err := o.plan.load(ctx, path, stderr)
	if err != nil {
		return nil, err
	}
	res := &pinResult{pins: pin.Missing(inst)}
	if o.check || len(res.pins) == 0 {
		for _, p := range res.pins {
			// The field is missing: point at the one it would follow.
			file, line, col := inst.Pos(p.Anchor())
			why := "not pinned"
			if p.Range != "" {
				why = fmt.Sprintf("%q is a range, not pinned", p.Range)
			}
			fmt.Fprintf(stderr, "%s:%d:%d: %s: %s (%s)\n", file, line, col, p.Path, why, p.Input)
		}
		return res, nil
	}
	pl, err := o.plan.planInstance(ctx, inst, root, stderr, !o.quiet)
	if err != nil {
		return nil, err
	}
	if err := pin.Resolve(res.pins, pl.sp.Plan()); err != nil {
		return nil, err
	}
	if res.edits, err = pin.Apply(inst, res.pins); err != nil {
		return nil, err
	}
	if o.dryRun {
		return res, nil
	}
	for _, e := range res.edits {
		if !e.Changed() {
			continue
		}
		if err := atomicfile.WriteFile(e.File, e.New); err != nil {
			return nil, err
		}
	}
	res.written = true
	return res, nil
}

// render prints the diff and a summary.
func (o *pinOptions) render(stdout, stderr io.Writer, res *pinResult) error {
	if o.check {
		if len(res.pins) > 0 {
			return &exitError{code: 1, err: fmt.Errorf("pin --check: %d input(s) not pinned; run bale pin", len(res.pins))}
		}
		fmt.Fprintln(stdout, "every input is pinned")
		return nil
	}
	if len(res.pins) == 0 {
		fmt.Fprintln(stdout, "every input is pinned; nothing to write")
		return nil
	}
	for _, e := range res.edits {
		if err := e.Diff(stdout, relName(e.File)); err != nil {
			return err
		}
	}
	verb := "pinned"
	if !res.written {
		verb = "would pin (--dry-run)"
	}
	for _, p := range res.pins {
		fmt.Fprintf(stderr, "%s %s: %s\n", verb, p.Path, strconv.Quote(p.Value))
	}
	return nil
}

// relName shows a file relative to the working directory when it is below
// it.
func relName(p string) string {
	if wd, err := filepath.Abs("."); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && filepath.IsLocal(r) {
			return r
		}
	}
	return p
}
