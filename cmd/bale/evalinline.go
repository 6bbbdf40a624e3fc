package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/internal/capread"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/server"
	"github.com/bale-build/bale/source"
)

// newEvalInline is the child process bale serve runs for an inline spec: it
// reads the spec on standard input, evaluates it under the evaluation
// limits, refuses local inputs, plans it and prints the plan. Past a limit
// the guard exits 1, which ends only this process.
func newEvalInline() *cobra.Command {
	var (
		limits   evalLimits
		dir      string
		offline  bool
		insecure []string
		allow    []string
	)
	cmd := &cobra.Command{
		Use:    "eval-inline --dir EMPTY_DIR",
		Short:  "Evaluate and plan an inline spec from standard input (bale serve runs it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Before the spec is read: nothing of it runs uncapped.
			if err := server.LimitInlineMemory(int64(limits.memory)); err != nil {
				return err
			}
			src, err := capread.ReadAll(cmd.InOrStdin(), spec.MaxSourceBytes)
			if err != nil {
				return fmt.Errorf("read inline spec: %w", err)
			}
			stop := guardEval(cmd.ErrOrStderr(), limits, os.Exit)
			defer stop()
			b, err := server.EvalInline(cmd.Context(), src, server.InlineOptions{
				Dir:       dir,
				Resolve:   source.Options{Offline: offline, Insecure: insecure, AllowHosts: allow},
				Evaluated: stop,
			})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	limits.register(cmd)
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "", "the empty workspace to plan in")
	fs.BoolVar(&offline, "offline", false, "refuse any network access")
	fs.StringSliceVar(&insecure, "insecure-registry", nil, "registry HOST[:PORT] reachable over plain HTTP; repeatable")
	fs.StringSliceVar(&allow, "allow-host", nil, "HOST[:PORT] reachable although not a public address; repeatable")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
