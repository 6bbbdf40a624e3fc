package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/executor/atomicfile"
	"github.com/bale-build/bale/planner/resolve"
)

// buildDir is where plan id's artifacts are built; exports link to them.
func (s *Server) buildDir(planID string) string {
	return filepath.Join(s.cfg.DataDir, "builds", strings.TrimPrefix(planID, "sha256:"))
}

// exportDir is exports/{tenant}/{exportId}, as the contract's handoff lays
// exports out.
func (s *Server) exportDir(e exportRecord) string {
	return filepath.Join(s.cfg.DataDir, "exports", e.Tenant, e.ID)
}

// runBuild is a build job: it builds plan planID (unless a finished build
// is on disk) and finishes every export waiting for it. On shutdown it
// returns the context's error, so River runs it again at the next start.
func (s *Server) runBuild(ctx context.Context, planID string, attempt int) error {
	log := s.log.With("planId", planID, "profile", "bootstrap", "attempt", attempt)
	if b, err := s.store.build(ctx, planID); err == nil && b.Status == statusSucceeded && s.buildPresent(b) {
		return s.finishPending(ctx, planID, b)
	}
	started, err := s.store.startExports(ctx, planID)
	if err != nil {
		return err
	}
	for _, e := range started {
		log.Info("export running", "exportId", e.ID, "tenant", e.Tenant)
	}
	rec, err := s.store.plan(ctx, planID)
	if err != nil {
		return fmt.Errorf("build %s: %w", planID, err)
	}
	p, _, err := s.readPlan(planID)
	if err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	ropts := s.cfg.Resolve
	ropts.Root = rec.Root
	src, err := resolve.New(ropts)
	if err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	log.Info("build started")
	res, err := executor.Execute(ctx, p, planID, src, executor.Options{OutDir: s.buildDir(planID), Store: s.cache, Jobs: s.cfg.Jobs})
	if err != nil {
		if ctx.Err() != nil {
			log.Info("build interrupted; it runs again", "err", s.scrub(err.Error()))
			return err
		}
		return s.buildFailed(ctx, planID, err)
	}
	var b buildRecord
	for _, a := range res.Artifacts {
		if a.RootHash != "" {
			b = buildRecord{PlanID: planID, Status: statusSucceeded, File: a.Path, ArtifactSHA256: a.SHA256,
				RootHash: a.RootHash, Size: a.Size, StepsRun: res.StepsRun, Finished: time.Now().UTC()}
		}
	}
	if b.Status == "" {
		return s.buildFailed(ctx, planID, errNotBootstrap)
	}
	if err := s.store.putBuild(ctx, b); err != nil {
		return err
	}
	s.metrics.builds.WithLabelValues(statusSucceeded).Inc()
	log.Info("build succeeded", "rootHash", b.RootHash, "artifactSha256", b.ArtifactSHA256, "size", b.Size, "stepsRun", b.StepsRun)
	return s.finishPending(ctx, planID, b)
}

// buildFailed records a build's failure on every export waiting for it.
// The job is cancelled, not retried: a later request for the plan queues a
// new build.
func (s *Server) buildFailed(ctx context.Context, planID string, cause error) error {
	reason := s.scrub(cause.Error())
	s.metrics.builds.WithLabelValues(statusFailed).Inc()
	s.log.Warn("build failed", "planId", planID, "profile", "bootstrap", "reason", reason)
	if err := s.store.putBuild(ctx, buildRecord{PlanID: planID, Status: statusFailed, Reason: reason, Finished: time.Now().UTC()}); err != nil {
		return err
	}
	pend, err := s.store.pendingExports(ctx, planID)
	if err != nil {
		return err
	}
	for _, e := range pend {
		e.Status, e.Reason, e.Finished = statusFailed, reason, time.Now().UTC()
		if ok, err := s.store.finishExport(ctx, e); err != nil {
			return err
		} else if ok {
			s.exportFinished(e)
		}
	}
	return river.JobCancel(cause)
}

// buildPresent reports whether build b's artifact is still on disk.
func (s *Server) buildPresent(b buildRecord) bool {
	fi, err := os.Stat(filepath.Join(s.buildDir(b.PlanID), b.File))
	return err == nil && fi.Size() == b.Size
}

// finishPending lays out every export of plan planID still waiting.
func (s *Server) finishPending(ctx context.Context, planID string, b buildRecord) error {
	pend, err := s.store.pendingExports(ctx, planID)
	if err != nil {
		return err
	}
	for _, e := range pend {
		if _, err := s.finish(ctx, e, b); err != nil {
			return err
		}
	}
	return nil
}

// finish lays out export e from build b and records it succeeded.
func (s *Server) finish(ctx context.Context, e exportRecord, b buildRecord) (exportRecord, error) {
	if err := s.layOut(e, b); err != nil {
		return e, fmt.Errorf("export %s: %w", e.ID, err)
	}
	rec, err := s.store.plan(ctx, e.PlanID)
	if err != nil {
		return e, err
	}
	e.Status, e.File, e.ArtifactSHA256, e.RootHash, e.Size = statusSucceeded, b.File, b.ArtifactSHA256, b.RootHash, b.Size
	e.BuildTime, e.Finished = rec.BuildTime, time.Now().UTC()
	ok, err := s.store.finishExport(ctx, e)
	if err != nil {
		return e, err
	}
	if ok {
		s.exportFinished(e)
	}
	return e, nil
}

// exportFinished logs and counts an export's outcome.
func (s *Server) exportFinished(e exportRecord) {
	ms := float64(e.Finished.Sub(e.Created).Microseconds()) / 1000
	s.metrics.completed.WithLabelValues(e.Status).Inc()
	s.metrics.duration.Observe(ms)
	attrs := []any{"exportId", e.ID, "profile", "bootstrap", "tenant", e.Tenant, "planId", e.PlanID, "status", e.Status, "durationMs", ms}
	if e.Status == statusSucceeded {
		attrs = append(attrs, "rootHash", e.RootHash, "artifactSha256", e.ArtifactSHA256, "size", e.Size)
		s.log.Info("export succeeded", attrs...)
		return
	}
	s.log.Warn("export failed", append(attrs, "reason", e.Reason)...)
}

// layOut puts the build's pack and checksum file in the export's directory
// all at once: both are linked (or copied) into a temporary directory that
// is then renamed to exports/{tenant}/{exportId}.
func (s *Server) layOut(e exportRecord, b buildRecord) error {
	dst := s.exportDir(e)
	if _, err := os.Stat(filepath.Join(dst, b.File)); err == nil {
		return nil
	}
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+e.ID+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, name := range []string{b.File, b.File + ".sha256"} {
		if err := linkOrCopy(filepath.Join(s.buildDir(b.PlanID), name), filepath.Join(tmp, name)); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(filepath.Join(dst, b.File)); serr == nil {
			return nil // laid out by a concurrent finisher
		}
		return err
	}
	return atomicfile.SyncDir(parent)
}

// linkOrCopy hard-links src to dst (both are the server's own, never
// changed once written), or copies it across file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
