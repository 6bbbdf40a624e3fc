package main

import (
	"github.com/spf13/cobra"

	"github.com/bale-build/bale/planner/spec"
)

func newEval() *cobra.Command {
	var (
		format string
		lim    evalLimits
	)
	cmd := &cobra.Command{
		Use:   "eval [PATH]",
		Short: "Print a spec as bale sees it, defaults filled in",
		Long: `eval loads one spec, checks it like vet, and prints it with every default
filled in. JSON output is canonical (fields in schema order, two-space
indentation, trailing newline): the same spec prints the same bytes however
it is formatted, and its sha256 is the spec digest that plans record.`,
		Example: `  bale eval specs/airgap
  bale eval specs/aoc --format cue
  bale eval specs/airgap | sha256sum     # the spec digest`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "json", "cue"); err != nil {
				return err
			}
			inst, err := loadOne(cmd.Context(), args, spec.Options{}, lim, false, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var out []byte
			if format == "cue" {
				if out, err = inst.CUE(); err != nil {
					return err
				}
			} else {
				out = inst.JSON()
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	lim.register(cmd)
	cmd.Flags().StringVar(&format, "format", "json", "output format: json or cue")
	return cmd
}
