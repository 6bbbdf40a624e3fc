package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/planner/diff"
)

func newDiff() *cobra.Command {
	var (
		pf     planFlags
		format string
	)
	cmd := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show what changed between two plans",
		Long: `diff compares two plans: inputs added, removed and re-pinned (old -> new
digest, and which platforms), sources changed, build timestamp and builder
changes, steps and outputs changed.

Either side may be a plan file (*.json) or a spec, which is planned first
(with the same flags as bale plan).

Exit status (the terraform plan -detailed-exitcode convention):
  0  no change
  2  changes
  1  error`,
		Example: `  bale diff old-plan.json plan.json
  bale diff plan.json specs/airgap --offline          # is the lock still current?
  bale diff main.json pr.json --format markdown > comment.md`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "text", "json", "markdown"); err != nil {
				return err
			}
			var sides [2]*planned
			for i, a := range args {
				var err error
				if strings.HasSuffix(a, ".json") {
					sides[i], err = readPlan(a)
				} else {
					sides[i], err = pf.makePlan(cmd.Context(), a, cmd.ErrOrStderr(), false)
				}
				if err != nil {
					return err
				}
			}
			r := diff.Plans(args[0], args[1], sides[0].id, sides[1].id, sides[0].plan, sides[1].plan)
			w := cmd.OutOrStdout()
			var err error
			switch format {
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
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "output format: text, json or markdown")
	return cmd
}
