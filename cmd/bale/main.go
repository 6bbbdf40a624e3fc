// Command bale builds byte-stable release and air-gap content from CUE
// specs. It is flags around the planner, executor and server packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// exitError carries an exit code other than 1 (bale diff exits 2 when
// plans differ), or a failure already reported on stderr.
type exitError struct {
	code     int
	reported bool
	err      error
}

func (e *exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func main() { os.Exit(runProcess()) }

// exitInterrupted is the exit status after Ctrl-C or SIGTERM: 128 + SIGINT,
// as shells report a command ended by it.
const exitInterrupted = 130

// runProcess runs bale on the process's arguments: the first Ctrl-C (or
// SIGTERM) cancels the command, which stops promptly, keeping in the cache
// what was fully fetched and verified; a second one ends the process at
// once.
func runProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // the next signal has its default effect
	}()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bale: interrupted; what was fetched and verified is kept in the cache, and a partly fetched blob resumes where it stopped")
		return exitInterrupted
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.reported {
			fmt.Fprintln(stderr, "bale:", terminalSafe(ee.Error()))
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "bale:", terminalSafe(err.Error()))
	return 1
}

// terminalSafe escapes what a terminal would act on rather than show:
// control characters (bar line breaks and tabs), bidirectional overrides,
// line and paragraph separators, invalid UTF-8. An error may carry text a
// server chose (a registry's error message, a name it serves), and that
// text must not move the cursor, retitle the window or hide itself.
func terminalSafe(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[0])
		case r == '\n' || r == '\t' || unicode.IsPrint(r):
			b.WriteString(s[:n])
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
		s = s[n:]
	}
	return b.String()
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "bale",
		Short: "Build byte-stable release and air-gap content from CUE specs",
		Long: `bale turns a CUE spec into byte-stable artifacts: bootstrap packs (Helm charts,
OCI images, signatures), release bundles (tarball, SPDX SBOM, cosign
signatures, SLSA provenance) and offline kits.

Every input is resolved to a digest and written to a content-addressed plan
that CI can diff; the same plan gives the same bytes on any machine.`,
		Example: `  bale vet specs/...                 # check every spec below specs/
  bale eval specs/airgap --format json
  bale version`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       readVersion().text(),
	}
	// --version prints what bale version prints.
	root.SetVersionTemplate("{{.Version}}")
	root.SetOut(stdout)
	root.SetErr(stderr)
	// --cpuprofile is for finding where time goes; hidden from --help.
	var profile string
	var profFile *os.File
	root.PersistentFlags().StringVar(&profile, "cpuprofile", "", "write a CPU profile to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if profile == "" {
			return nil
		}
		f, err := os.Create(profile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		profFile = f
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if profFile != nil {
			pprof.StopCPUProfile()
			profFile.Close()
		}
	}
	root.AddCommand(newInit(), newVet(), newEval(), newPlan(), newDiff(), newBuild(), newPin(), newVerify(), newInspect(), newPush(), newPublish(), newPull(), newCache(), newServe(), newVersion())
	withUsage(root)
	return root
}

// withUsage makes every usage error of c and its subcommands (a wrong
// number of arguments, an unknown or malformed flag) end with the
// command's usage line: SilenceUsage keeps the full help out of real
// failures, but a person who typed the command wrong needs the right form.
func withUsage(c *cobra.Command) {
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, err) })
	if args := c.Args; args != nil {
		c.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return usageError(c, err)
			}
			return nil
		}
	}
	completeFormat(c)
	for _, sub := range c.Commands() {
		withUsage(sub)
	}
}

// completeFormat makes shell completion offer the values of c's --format
// flag, as its usage line lists them ("output format: text, json or
// markdown"), so one place says them.
func completeFormat(c *cobra.Command) {
	f := c.Flags().Lookup("format")
	if f == nil {
		return
	}
	_, list, ok := strings.Cut(f.Usage, "output format: ")
	if !ok {
		return
	}
	var values []string
	for _, part := range strings.Split(strings.ReplaceAll(list, " or ", ", "), ", ") {
		if v := strings.TrimSpace(part); v != "" {
			values = append(values, v)
		}
	}
	_ = c.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// usageError adds c's usage line to err.
func usageError(c *cobra.Command, err error) error {
	return fmt.Errorf("%w\nUsage: %s\nRun '%s --help' for more", err, c.UseLine(), c.CommandPath())
}
