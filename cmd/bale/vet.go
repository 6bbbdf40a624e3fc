package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/source"
)

// vetOptions are bale vet's flags.
type vetOptions struct {
	format string
	strict bool
	root   string
	eval   evalLimits
}

// vetRun is what vet found: the specs that loaded and every diagnostic.
type vetRun struct {
	insts []*spec.Instance
	diags spec.Diagnostics
	// outside is set when a local path leaves its workspace root.
	outside bool
}

func newVet() *cobra.Command {
	var o vetOptions
	cmd := &cobra.Command{
		Use:   "vet [PATH...]",
		Short: "Check specs against bale's schemas",
		Long: `vet loads each spec and checks it against bale's embedded schemas: types,
closed structs (an unknown field is an error), digests, safe names, exactly
one source per image and chart, no duplicates, and that every local path the
spec names exists and stays inside the workspace root, as plan requires (the
nearest directory above the spec holding cue.mod or .git, or --root).
Nothing is fetched.

PATH is a .cue file, a directory holding one CUE package, or DIR/... for every
package below DIR (testdata and directories starting with '.' or '_' are
skipped). The default is the current directory.

Every problem of the run is printed as file:line:col: message, paths relative
to the working directory. Lint findings (an image by tag without a pinned
digest, a chart without a pinned version) print as warnings; --strict makes
them errors.

With --format json, vet prints one object: formatVersion (currently 1; it
changes only when a field is removed or changes meaning), valid, specs (path
and digest of each) and diagnostics (file, line, column, severity, message).

Exit status: 0 valid, 1 invalid or failed.`,
		Example: `  bale vet specs/...
  bale vet specs/airgap/pack.cue --strict
  bale vet specs/... --format json | jq '.diagnostics[] | select(.severity=="error")'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := o.run(cmd.Context(), args, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), cmd.ErrOrStderr(), r)
		},
	}
	o.eval.register(cmd)
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text or json")
	cmd.Flags().BoolVar(&o.strict, "strict", false, "treat lint warnings as errors")
	cmd.Flags().StringVar(&o.root, "root", "", "workspace root local paths must stay below, as for plan (default: nearest ancestor with cue.mod or .git)")
	return cmd
}

// run loads and checks the specs args name; with --strict, lint warnings
// are errors.
func (o *vetOptions) run(ctx context.Context, args []string, stderr io.Writer) (*vetRun, error) {
	if err := checkFormat(o.format, "text", "json"); err != nil {
		return nil, err
	}
	var root string
	if o.root != "" {
		var err error
		if root, err = filepath.Abs(o.root); err != nil {
			return nil, err
		}
	}
	insts, diags, err := o.eval.load(ctx, stderr, args, spec.Options{Root: root})
	if err != nil {
		return nil, err
	}
	// A spec that names a file that is not there, or outside the
	// workspace plan confines it to, is not buildable here, whatever its
	// types say.
	r := &vetRun{insts: insts}
	for _, in := range insts {
		inRoot := root
		if inRoot == "" {
			inRoot = planner.FindRoot(in.Dir)
		}
		diags = append(diags, in.CheckPaths(func(p string) error {
			_, err := source.InRoot(inRoot, in.Dir, p)
			r.outside = r.outside || errors.Is(err, source.ErrOutsideRoot)
			return err
		})...)
	}
	if o.strict {
		for i := range diags {
			diags[i].Severity = spec.SeverityError
		}
	}
	r.diags = diags
	return r, nil
}

// render prints the diagnostics (text: on stderr, then "ok" per valid
// spec; json: one object); any error exits 1.
func (o *vetOptions) render(stdout, stderr io.Writer, r *vetRun) error {
	if o.format == "json" {
		res := vetResult{FormatVersion: vetFormatVersion, Valid: !r.diags.HasErrors(), Diagnostics: r.diags}
		for _, in := range r.insts {
			res.Specs = append(res.Specs, vetSpec{Path: in.Name, Digest: in.Digest})
		}
		if res.Diagnostics == nil {
			res.Diagnostics = spec.Diagnostics{}
		}
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	} else {
		for _, d := range r.diags {
			fmt.Fprintln(stderr, d.String())
		}
		if r.outside {
			fmt.Fprintln(stderr, rootHint)
		}
		if !r.diags.HasErrors() {
			for _, in := range r.insts {
				fmt.Fprintf(stdout, "ok  %s  %s\n", in.Name, in.Digest)
			}
		}
	}
	if !r.diags.HasErrors() {
		return nil
	}
	n := 0
	for _, d := range r.diags {
		if d.Severity == spec.SeverityError {
			n++
		}
	}
	return &exitError{code: 1, reported: o.format == "json", err: fmt.Errorf("vet: %d error(s)", n)}
}

// vetFormatVersion is the formatVersion of vet's JSON output. It changes
// when a field is removed or changes meaning, not when one is added.
const vetFormatVersion = 1

// vetResult is vet's JSON output.
type vetResult struct {
	FormatVersion int              `json:"formatVersion"`
	Valid         bool             `json:"valid"`
	Specs         []vetSpec        `json:"specs"`
	Diagnostics   spec.Diagnostics `json:"diagnostics"`
}

type vetSpec struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func checkFormat(got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return fmt.Errorf("--format %q: want one of %v", got, allowed)
}
