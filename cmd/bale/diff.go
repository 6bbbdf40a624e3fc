package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/planner/diff"
)

// diffOptions are bale diff's flags.
type diffOptions struct {
	plan   planFlags
	format string
}

func newDiff() *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show what changed between two plans",
		Long: `diff compares two plans: inputs added, removed and re-pinned (old -> new
digest, and which platforms of an index), sources changed, build timestamp
and builder changes, steps added and removed, and the outputs whose content
differs, by path: + added, - removed, ~ changed; unchanged outputs are not
listed. A blob's content is its digest; an output the build computes (an
index.json, the pack) is known by its recipe's digest (the step, the inputs
it reads, the timestamp and the builder).

Either side may be a plan file (*.json) or a spec, which is planned first
(with the same flags as bale plan). Online, a spec's tags are resolved
again, so the diff shows tags that moved. With --offline and no --lock, the
plan file on the other side is the lock: the diff shows what the spec
changed.

Exit status (the terraform plan -detailed-exitcode convention):
  0  no change
  2  changes
  1  error`,
		Example: `  bale diff old-plan.json plan.json
  bale diff plan.json specs/airgap                    # did a tag move since plan.json?
  bale diff plan.json specs/airgap --offline          # did the spec change since plan.json?
  bale diff main.json pr.json --format markdown > comment.md`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := o.run(cmd.Context(), [2]string{args[0], args[1]}, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), r)
		},
	}
	o.plan.register(cmd)
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text, json or markdown")
	return cmd
}

// run reads or plans both sides and compares them.
func (o *diffOptions) run(ctx context.Context, args [2]string, stderr io.Writer) (*diff.Report, error) {
	if err := checkFormat(o.format, "text", "json", "markdown"); err != nil {
		return nil, err
	}
	pf := o.plan
	// A plan and a spec, offline: the plan is the lock, so a registry
	// input is compared as the plan pinned it and the question answered
	// is "did the spec change?".
	if pf.offline && pf.lock == "" {
		for _, a := range args {
			if strings.HasSuffix(a, ".json") {
				pf.lock = a
				break
			}
		}
	}
	var sides [2]*planned
	for i, a := range args {
		var err error
		if strings.HasSuffix(a, ".json") {
			sides[i], err = readPlan(a)
		} else {
			sides[i], err = pf.makePlan(ctx, a, stderr, false)
		}
		if err != nil {
			return nil, err
		}
	}
	return diff.Plans(args[0], args[1], sides[0].sp.ID(), sides[1].sp.ID(), sides[0].sp.Plan(), sides[1].sp.Plan()), nil
}

// render writes the report in --format; a non-empty one exits 2.
func (o *diffOptions) render(w io.Writer, r *diff.Report) error {
	var err error
	switch o.format {
	case "json":
		err = r.JSON(w)
	case "markdown":
		err = r.Markdown(w)
	default:
		err = r.Text(w, isTerminal(w) && os.Getenv("NO_COLOR") == "")
	}
	if err != nil {
		return fmt.Errorf("write diff: %w", err)
	}
	if !r.Empty() {
		return &exitError{code: 2, reported: true}
	}
	return nil
}
