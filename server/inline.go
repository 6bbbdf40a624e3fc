package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/source"
)

// Inline spec limits' defaults.
const (
	defaultInlineTimeout = 30 * time.Second
	defaultInlineMemory  = 512 << 20
	// maxInlinePlan caps the plan a child may print: a spec at the count
	// caps plans to a few MiB.
	maxInlinePlan = 32 << 20
	// maxInlineStderr caps what of a child's error message is kept.
	maxInlineStderr = 16 << 10
)

// inlineName is the file name an inline spec's positions are given in.
const inlineName = "inline.cue"

// InlineOptions configures EvalInline.
type InlineOptions struct {
	// Dir is the empty workspace the spec is planned in; nothing in it is
	// read, since an inline spec may name no local path.
	Dir string
	// Resolve configures resolving the spec's remote inputs (Root is Dir).
	// EvalInline sets PublicOnly: a client's spec reaches only public
	// addresses and Resolve.AllowHosts.
	Resolve source.Options
	// Evaluated, if not nil, is called once the CUE evaluation is over and
	// only planning (network access) is left.
	Evaluated func()
}

// EvalInline evaluates an inline spec, CUE source a client sent, checks
// that it names only remote inputs, and plans it; it returns the plan's
// bytes. It is what the child process of an inline POST runs (bale serve
// eval-inline): CUE's evaluator cannot be bounded from inside a process,
// so the server runs it in one it can kill. The spec is read from memory
// only (spec.Parse): it cannot import a package other than CUE's standard
// library, nor embed a file.
func EvalInline(ctx context.Context, src []byte, opts InlineOptions) ([]byte, error) {
	inst, diags, err := spec.Parse(ctx, inlineName, src, opts.Dir)
	if opts.Evaluated != nil {
		opts.Evaluated()
	}
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		var b strings.Builder
		for _, d := range diags {
			if d.Severity == spec.SeverityError {
				b.WriteString(d.String())
				b.WriteByte('\n')
			}
		}
		return nil, errors.New(strings.TrimSpace(b.String()))
	}
	if err := RemoteOnly(inst.Spec); err != nil {
		return nil, err
	}
	ropts := opts.Resolve
	ropts.PublicOnly = true
	sp, _, err := planner.PlanInstance(ctx, inst, ropts, planner.Options{Root: opts.Dir, Offline: ropts.Offline})
	if err != nil {
		return nil, fmt.Errorf("plan inline spec: %w", err)
	}
	if err := planRemoteOnly(sp.Plan()); err != nil {
		return nil, err
	}
	return sp.Bytes(), nil
}

// RemoteOnly refuses a spec that names anything on the machine that plans
// it: a local file, directory, layout or tarball, a Go module built from
// source, a signing key file. It names the first such field.
func RemoteOnly(s *spec.Spec) error {
	refuse := func(field, what string) error {
		return fmt.Errorf("%s: %s; an inline spec may name only remote inputs (registry images, chart repositories, URLs with digests), never a path on the server", field, what)
	}
	if bp := s.BootstrapPack; bp != nil {
		for i, img := range bp.Images {
			switch {
			case img.Layout != nil:
				return refuse(fmt.Sprintf("bootstrapPack.images[%d].layout", i), "an OCI layout on disk")
			case img.Tarball != nil:
				return refuse(fmt.Sprintf("bootstrapPack.images[%d].tarball", i), "an image tarball on disk")
			}
		}
		for i, c := range bp.Charts {
			switch {
			case c.Path != "":
				return refuse(fmt.Sprintf("bootstrapPack.charts[%d].path", i), "a chart on disk")
			case c.Values != nil:
				return refuse(fmt.Sprintf("bootstrapPack.charts[%d].values", i), "a values file on disk")
			}
		}
		if len(bp.Signatures) > 0 {
			return refuse("bootstrapPack.signatures[0].path", "a signature file on disk")
		}
		for i, b := range bp.Bundles {
			if b.Path != "" {
				return refuse(fmt.Sprintf("bootstrapPack.bundles[%d].path", i), "a bundle on disk")
			}
		}
	}
	if rel := s.Release; rel != nil {
		if k := rel.Signing.Key; k != "" && k != "env://"+sign.EnvKey {
			return refuse("release.signing.key", fmt.Sprintf("%q: the server signs with its own key (env://%s)", k, sign.EnvKey))
		}
		if rel.Signing.DevKey != nil {
			return refuse("release.signing.devKey", "a key file on disk")
		}
		if len(rel.Runner.Go) > 0 {
			return refuse("release.runner.go[0]", "a Go build from a module on disk")
		}
		for i, f := range rel.Runner.Files {
			if f.Path != "" {
				return refuse(fmt.Sprintf("release.runner.files[%d].path", i), "a file on disk")
			}
		}
		if ds := rel.Dataset; ds != nil {
			for i, f := range ds.Files {
				if f.Path != "" {
					return refuse(fmt.Sprintf("release.dataset.files[%d].path", i), "a file on disk")
				}
			}
		}
	}
	return nil
}

// planRemoteOnly checks an inline spec's plan again, by its inputs: each
// must come from a registry, a chart repository or a URL. It catches a
// local source RemoteOnly did not know of.
func planRemoteOnly(p *plan.Plan) error {
	for _, in := range p.Inputs {
		switch in.Source.Type {
		case plan.SourceRegistry, plan.SourceRepository, plan.SourceOCI, plan.SourceURL:
			if in.Kind != plan.KindGo && in.Kind != plan.KindKey {
				continue
			}
		}
		return fmt.Errorf("input %s: source %q is not remote; an inline spec may name only remote inputs", in.Key(), in.Source.Type)
	}
	return nil
}

// errInlineDisabled is an inline spec sent to a server that cannot
// evaluate one in a child process.
var errInlineDisabled = errors.New("inline specs are not enabled on this server")

// errInlineBusy is an inline spec that found every evaluation slot taken
// for inlineSlotWait: the client is told to come back rather than queued
// behind an unbounded line of children.
var errInlineBusy = errors.New("every inline evaluation slot is busy")

// inlineSlotWait is how long an inline spec waits for a free slot.
const inlineSlotWait = 5 * time.Second

// takeSlot takes a place in slots, waiting for one at most
// inlineSlotWait (or until the test's clock, Config.inlineWait, says):
// it reports false if the wait ended first. The wait starts only when no
// place is free at once.
func (s *Server) takeSlot(ctx context.Context, slots chan struct{}) (bool, error) {
	select {
	case slots <- struct{}{}:
		return true, nil
	default:
	}
	wait := s.cfg.inlineWait
	if wait == nil {
		wait = func() <-chan time.Time { return time.After(inlineSlotWait) }
	}
	select {
	case slots <- struct{}{}:
		return true, nil
	case <-wait():
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// inlineRoot is the workspace root recorded for inline plans: an empty
// directory, since their inputs are all remote.
func (s *Server) inlineRoot() string { return filepath.Join(s.cfg.DataDir, "inline") }

// errInlineTenantBusy is an inline spec whose tenant holds its whole
// share of the evaluation slots for inlineSlotWait.
var errInlineTenantBusy = errors.New("this tenant's inline evaluation slots are busy")

// inlineShare takes one of tenant's share of the inline slots, waiting at
// most inlineSlotWait: a tenant holds at most InlineSlots-1 evaluations
// (at least 1), so its slow specs cannot take every slot from the other
// tenants.
func (s *Server) inlineShare(ctx context.Context, tenant string) (release func(), err error) {
	s.inlineMu.Lock()
	share := s.inlineShares[tenant]
	if share == nil {
		share = make(chan struct{}, max(s.cfg.InlineSlots-1, 1))
		s.inlineShares[tenant] = share
	}
	s.inlineMu.Unlock()
	ok, err := s.takeSlot(ctx, share)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, errInlineTenantBusy
	}
	return func() { <-share }, nil
}

// planInline evaluates and plans tenant's inline spec in a child process
// under the inline limits and stores the plan. Concurrent requests with
// the same source share one child.
func (s *Server) planInline(ctx context.Context, tenant, src string) (*planned, error) {
	if len(s.cfg.InlineCommand) == 0 {
		return nil, errInlineDisabled
	}
	release, err := s.inlineShare(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defer release()
	sum := sha256.Sum256([]byte(src))
	v, err, _ := s.planning.Do("inline:"+hex.EncodeToString(sum[:]), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.InlineTimeout)
		defer cancel()
		ok, err := s.takeSlot(ctx, s.inlineSlots)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, errInlineBusy
		}
		defer func() { <-s.inlineSlots }()
		b, err := s.runInline(ctx, src)
		if err != nil {
			return nil, err
		}
		sp, err := plan.Read(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("inline plan: %w", err)
		}
		if err := planRemoteOnly(sp.Plan()); err != nil {
			return nil, &specError{msg: err.Error()}
		}
		rec, err := planFacts(sp, s.inlineRoot())
		if err != nil {
			return nil, err
		}
		// Its build must not reach further than its planning could: a
		// spec may pin digests, and then only the build connects.
		rec.PublicOnly = true
		if err := s.writePlan(rec.ID, b); err != nil {
			return nil, err
		}
		return &planned{rec: rec, sp: sp}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*planned), nil
}

// runInline runs the inline command on src in a new empty directory with
// an empty environment, and returns what it printed: the plan. Its
// output is capped, and it is killed at ctx's deadline; its own guard
// stops it past the evaluation's time or memory limit.
func (s *Server) runInline(ctx context.Context, src string) ([]byte, error) {
	dir, err := os.MkdirTemp(s.inlineRoot(), ".eval-")
	if err != nil {
		return nil, fmt.Errorf("inline workspace: %w", err)
	}
	defer os.RemoveAll(dir)
	args := append([]string(nil), s.cfg.InlineCommand[1:]...)
	args = append(args, "--dir", dir,
		"--eval-timeout", s.cfg.InlineTimeout.String(),
		"--eval-memory", sizeFlag(s.cfg.InlineMemory))
	if s.cfg.Resolve.Offline {
		args = append(args, "--offline")
	}
	for _, h := range s.cfg.Resolve.Insecure {
		args = append(args, "--insecure-registry", h)
	}
	for _, h := range s.cfg.InlineAllowHosts {
		args = append(args, "--allow-host", h)
	}
	ctx, kill := context.WithCancel(ctx)
	defer kill()
	cmd := exec.CommandContext(ctx, s.cfg.InlineCommand[0], args...)
	cmd.Dir = dir
	// No token, key, password or registry credential of the server's
	// reaches the child: HOME is the empty directory.
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "TMPDIR=" + dir}
	cmd.Stdin = strings.NewReader(src)
	stdout := &capBuffer{max: maxInlinePlan, over: kill}
	stderr := &capBuffer{max: maxInlineStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	s.log.Info("inline evaluation", "exit", cmd.ProcessState.String(), "peakRSS", peakRSS(cmd), "memoryLimit", s.cfg.InlineMemory)
	switch {
	case stdout.full:
		return nil, &specError{msg: fmt.Sprintf("the inline spec's plan is over %d bytes; stopped", maxInlinePlan)}
	case ctx.Err() != nil:
		return nil, &specError{msg: fmt.Sprintf("evaluating the inline spec took longer than %s; stopped", s.cfg.InlineTimeout)}
	case err != nil:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, fmt.Errorf("run inline evaluation: %w", err)
		}
		if outOfMemory(stderr.String()) {
			return nil, &specError{msg: fmt.Sprintf("evaluating or planning the inline spec needed more memory than --inline-memory %s allows; stopped", sizeFlag(s.cfg.InlineMemory))}
		}
		if crashed(stderr.String()) {
			// A Go crash's trace names the server's build and source
			// paths: it is for the operator, not the client.
			s.log.Error("inline evaluation crashed", "exit", ee.String(), "stderr", stderr.String())
			return nil, &specError{msg: "evaluating the inline spec crashed the evaluator (" + ee.String() + "); the server's log has the details"}
		}
		msg := strings.TrimSpace(strings.TrimPrefix(stderr.String(), "bale: "))
		// The guard names the child's flags; the client knows the server's.
		msg = strings.NewReplacer("--eval-memory", "--inline-memory", "--eval-timeout", "--inline-timeout").Replace(msg)
		msg = strings.ReplaceAll(msg, dir+string(filepath.Separator), "")
		msg = strings.ReplaceAll(msg, dir, ".")
		if msg == "" {
			msg = "evaluating the inline spec failed: " + ee.String()
		}
		return nil, &specError{msg: s.scrub(msg)}
	}
	return stdout.Bytes(), nil
}

// crashed reports whether a child's standard error is a Go program's
// crash report (a panic, a fatal runtime error, a signal's goroutine
// dump) rather than bale's own error message.
func crashed(stderr string) bool {
	for _, p := range []string{"panic: ", "fatal error: ", "runtime: ", "SIGQUIT", "SIGABRT", "SIGSEGV"} {
		if strings.HasPrefix(stderr, p) {
			return true
		}
	}
	return strings.Contains(stderr, "\ngoroutine ") && strings.Contains(stderr, "\n\t/")
}

// capBuffer keeps the first max bytes written to it. Past them it calls
// over, if set (which kills the child), and otherwise drops the rest.
type capBuffer struct {
	bytes.Buffer
	max  int
	over func()
	full bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.max {
		c.full = true
		c.Buffer.Write(p[:c.max-c.Len()])
		if c.over != nil {
			c.over()
			return 0, io.ErrShortWrite
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}
