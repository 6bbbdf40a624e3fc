package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

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
	// update names the inputs whose pins --update re-resolves;
	// updateAll is --update without names.
	update []string
}

// updateAll is --update's value when it is given without names: re-pin
// every input.
const updateAll = "*"

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

A digest the spec pins is never changed silently: when a tag moves or a
chart is republished under its version, plan and build fail with "spec
pins X but the source has Y". --update=NAME,... re-pins the images and
charts of those names (--update alone: every image and chart) from their
sources, with the same diff; review it before committing the spec.

--check resolves nothing (no network): it lists every input the spec leaves
unpinned, at its place in the spec, and exits 1 if there is any.`,
		Example: `  bale pin specs/airgap
  bale pin specs/airgap --dry-run
  bale pin specs/airgap --check        # in CI: fail when something is unpinned
  bale pin specs/airgap --update=web   # the tag of image web moved: re-pin it`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 && slices.Equal(o.update, []string{updateAll}) {
				return fmt.Errorf("pin takes one PATH, got %q: name the inputs to re-pin as --update=%s", args, strings.Join(args[1:], ","))
			}
			return cobra.MaximumNArgs(1)(cmd, args)
		},
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
	cmd.Flags().StringSliceVar(&o.update, "update", nil, "re-pin the images and charts `NAMES` (--update=web,api) from their sources; --update alone: all of them")
	cmd.Flags().Lookup("update").NoOptDefVal = updateAll
	cmd.MarkFlagsMutuallyExclusive("check", "update")
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
	// What is planned: the spec, or for --update a copy without the pins
	// to re-resolve.
	planned := inst
	if o.update != nil {
		names := o.update
		if slices.Equal(names, []string{updateAll}) {
			names = nil
		}
		upd, pins, err := pin.Update(inst, names)
		if err != nil {
			return nil, err
		}
		planned, res.pins = upd, append(res.pins, pins...)
	}
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
	pl, err := o.plan.planInstance(ctx, planned, root, stderr, !o.quiet)
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
	if !slices.ContainsFunc(res.edits, pin.Edit.Changed) {
		if o.update != nil {
			fmt.Fprintln(stdout, "every input is pinned and every pin matches its source; nothing to write")
		} else {
			fmt.Fprintln(stdout, "every input is pinned; nothing to write")
		}
		return nil
	}
	for _, e := range res.edits {
		if err := e.Diff(stdout, relName(e.File)); err != nil {
			return err
		}
	}
	verb, reverb := "pinned", "re-pinned"
	if !res.written {
		verb, reverb = "would pin (--dry-run)", "would re-pin (--dry-run)"
	}
	for _, p := range res.pins {
		switch {
		case p.Pinned == "":
			fmt.Fprintf(stderr, "%s %s: %s\n", verb, p.Path, strconv.Quote(p.Value))
		case p.Pinned != p.Value:
			fmt.Fprintf(stderr, "%s %s: %s (was %s)\n", reverb, p.Path, strconv.Quote(p.Value), strconv.Quote(p.Pinned))
		}
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
