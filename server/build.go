package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/source"
)

// buildDir is where plan id's artifacts are built; exports link to them.
func (s *Server) buildDir(planID string) string {
	return filepath.Join(s.cfg.DataDir, "builds", strings.TrimPrefix(planID, "sha256:"))
}

// buildTemp is where plan id's build keeps its temporary directories (Go
// builds' among them): the server's own, so that what a killed build left
// can be found and removed (see sweepBuild).
func (s *Server) buildTemp(planID string) string {
	return filepath.Join(s.cfg.DataDir, "tmp", strings.TrimPrefix(planID, "sha256:"))
}

// sweepBuild removes what killed builds of plan planID left: temporary
// files in its build directory (a live writer's are locked, and spared)
// and its temporary directory. It is called when the plan's build
// completes, and at start for plans with no live build; nothing else
// writes there.
func (s *Server) sweepBuild(planID string) {
	dir := s.buildDir(planID)
	if n, size, err := atomicfile.RemoveStale(dir, 0, nil); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("sweep build temporaries", "planId", planID, "err", s.scrub(err.Error()))
	} else if n > 0 {
		s.log.Info("swept a killed build's temporary files", "planId", planID, "files", n, "bytes", size)
	}
	if err := os.RemoveAll(s.buildTemp(planID)); err != nil {
		s.log.Warn("sweep build temporaries", "planId", planID, "err", s.scrub(err.Error()))
	}
}

// sweepBuilds sweeps the temporaries of every plan with no live build:
// run at start, before this server's jobs run.
func (s *Server) sweepBuilds(ctx context.Context) error {
	seen := map[string]bool{}
	for _, d := range []string{"builds", "tmp"} {
		des, err := os.ReadDir(filepath.Join(s.cfg.DataDir, d))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sweep build temporaries: %w", err)
		}
		for _, de := range des {
			planID := "sha256:" + de.Name()
			if !de.IsDir() || !digest.Valid(planID) || seen[planID] {
				continue
			}
			seen[planID] = true
			live, err := s.store.building(ctx, buildArgs{}.Kind(), planID)
			if err != nil {
				return err
			}
			if !live {
				s.sweepBuild(planID)
			}
		}
	}
	return nil
}

// exportDir is exports/{tenant}/{exportId}, as the contract's handoff lays
// exports out.
func (s *Server) exportDir(e exportRecord) string {
	return filepath.Join(s.cfg.DataDir, "exports", e.Tenant, e.ID)
}

// runBuild is a build job: it builds plan planID (unless a finished build
// is on disk) and finishes every export waiting for it. On shutdown, or
// when its lease is lost, it returns the context's error and records
// nothing: River runs the job again (a server sharing the database, or
// this one at its next start), or another server has taken it over.
func (s *Server) runBuild(ctx context.Context, planID string, attempt int) error {
	rec, err := s.store.plan(ctx, planID)
	if err != nil {
		return fmt.Errorf("build %s: %w", planID, err)
	}
	log := s.log.With("planId", planID, "profile", profileOf(rec.Kind), "attempt", attempt)
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
	sp, err := s.readPlan(planID)
	if err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	ropts := s.cfg.Resolve
	if ropts.Root, err = s.buildRoot(rec); err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	if rec.PublicOnly {
		ropts.PublicOnly, ropts.AllowHosts = true, s.cfg.InlineAllowHosts
		log = log.With("publicOnly", true)
	}
	src, err := source.New(ropts)
	if err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	tmp := s.buildTemp(planID)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	log.Info("build started")
	res, err := executor.Execute(ctx, sp, src, executor.Options{OutDir: s.buildDir(planID), Store: s.cache, Jobs: s.cfg.Jobs,
		Getenv: s.cfg.Getenv, Warn: func(msg string) { log.Warn(msg) }, TempDir: tmp,
		SigningKey: s.signingKey, IgnoreSpecKey: true})
	if err != nil && ctx.Err() != nil {
		log.Info("build interrupted; it runs again", "err", s.scrub(err.Error()))
		return err
	}
	// Done, either way: what an earlier, killed attempt left goes now.
	s.sweepBuild(planID)
	if err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	if err := makePrivate(s.buildDir(planID)); err != nil {
		return s.buildFailed(ctx, planID, err)
	}
	b := buildRecord{PlanID: planID, Status: statusSucceeded, StepsRun: res.StepsRun, Finished: time.Now().UTC()}
	switch rec.Kind {
	case plan.TargetRelease:
		files, archive, err := kitFiles(planID, res)
		if err != nil {
			return s.buildFailed(ctx, planID, err)
		}
		b.File, b.ArtifactSHA256, b.Size = archive.Name, archive.SHA256, archive.Size
		if err := s.store.putBuildFiles(ctx, planID, files); err != nil {
			return err
		}
	default:
		for _, a := range res.Artifacts {
			if a.RootHash != "" {
				b.File, b.ArtifactSHA256, b.RootHash, b.Size = a.Path, a.SHA256, a.RootHash, a.Size
			}
		}
		if b.File == "" {
			return s.buildFailed(ctx, planID, errNotBootstrap)
		}
	}
	if err := s.store.putBuild(ctx, b); err != nil {
		return err
	}
	s.metrics.builds.WithLabelValues(statusSucceeded).Inc()
	log.Info("build succeeded", "rootHash", b.RootHash, "artifactSha256", b.ArtifactSHA256, "size", b.Size, "stepsRun", b.StepsRun)
	return s.finishPending(ctx, planID, b)
}

// profileOf is the export profile of a plan kind.
func profileOf(kind string) string {
	if kind == plan.TargetRelease {
		return profileRelease
	}
	return profileBootstrap
}

// kitFiles lists a release build's files with the kinds kit.KindOf gives
// them (bale build --format json says the same), from the manifest the
// build returned, and returns the kit archive among them.
func kitFiles(planID string, res *executor.Result) ([]buildFile, buildFile, error) {
	if len(res.Kits) != 1 || res.Kits[0].Manifest == nil {
		return nil, buildFile{}, fmt.Errorf("release %s: the build made %d offline kits, want 1", planID, len(res.Kits))
	}
	m := res.Kits[0].Manifest
	var (
		files   []buildFile
		archive buildFile
	)
	for _, a := range res.Artifacts {
		f := buildFile{Name: a.Path, Size: a.Size, SHA256: a.SHA256, Kind: m.KindOf(a.Path)}
		// The file route serves only names that pass this check.
		if f.Kind == "" || !kit.ValidName(f.Name) {
			return nil, buildFile{}, fmt.Errorf("release %s: %q is not a file of kit %s", planID, f.Name, m.Name)
		}
		if f.Kind == kit.KindKitArchive {
			archive = f
		}
		files = append(files, f)
	}
	if archive.Name == "" {
		return nil, buildFile{}, fmt.Errorf("release %s: no kit archive among its files", planID)
	}
	return files, archive, nil
}

// buildFailed records a build's failure on every export waiting for it.
// The job is cancelled, not retried: a later request for the plan queues a
// new build.
//
// A build that failed for want of space is recorded once space returns:
// the record is retried while the store cannot take it (see retryStore).
func (s *Server) buildFailed(ctx context.Context, planID string, cause error) error {
	if err := s.retryStore(ctx, "record the failed build of "+planID, func() error { return s.recordFailure(ctx, planID, cause) }); err != nil {
		return err
	}
	return river.JobCancel(cause)
}

// recordFailure records plan planID's failed build, and its cause as the
// reason of every export waiting for it.
func (s *Server) recordFailure(ctx context.Context, planID string, cause error) error {
	reason := s.scrub(cause.Error())
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
	s.metrics.builds.WithLabelValues(statusFailed).Inc()
	s.log.Warn("build failed", "planId", planID, "reason", reason)
	return nil
}

// retryStore runs write until it succeeds, fails for another reason than
// the store being full or out of reach, or ctx ends, waiting 1 s, then
// twice as long each time up to 30 s, between tries.
func (s *Server) retryStore(ctx context.Context, what string, write func() error) error {
	wait := time.Second
	for {
		err := write()
		if err == nil || !storageFull(err) && !storeUnreachable(err) {
			return err
		}
		s.log.Warn("the store cannot take a write; retrying", "what", what, "retryIn", wait.String(), "err", s.scrub(err.Error()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
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
	names := []string{b.File, b.File + ".sha256"}
	if e.Profile == profileRelease {
		files, err := s.store.buildFiles(ctx, b.PlanID)
		if err != nil {
			return e, err
		}
		names = names[:0]
		for _, f := range files {
			names = append(names, f.Name)
		}
	}
	if err := s.layOut(e, b.PlanID, names); err != nil {
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
	s.finishes.done(e.ID)
	ms := float64(e.Finished.Sub(e.Created).Microseconds()) / 1000
	if e.Profile == profileRelease {
		s.metrics.releases.WithLabelValues(e.Status).Inc()
	} else {
		s.metrics.completed.WithLabelValues(e.Status).Inc()
		s.metrics.duration.Observe(ms)
	}
	attrs := []any{"exportId", e.ID, "profile", e.Profile, "tenant", e.Tenant, "planId", e.PlanID, "status", e.Status, "durationMs", ms}
	if e.Status == statusSucceeded {
		attrs = append(attrs, "rootHash", e.RootHash, "artifactSha256", e.ArtifactSHA256, "size", e.Size)
		s.log.Info("export succeeded", attrs...)
		return
	}
	s.log.Warn("export failed", append(attrs, "reason", e.Reason)...)
}

// layOut puts the build's files named names (the pack and its checksum
// file, or every file of a kit) in the export's directory all at once:
// they are linked into a temporary directory that is then renamed to
// exports/{tenant}/{exportId}. A hard link shares the build's bytes; where
// one cannot be made (past the file system's link limit, EMLINK, after
// tens of thousands of exports of one plan; or across file systems) the
// export holds a symbolic link to the build's file instead, never a copy:
// a copy per export would fill the disk with one pack's bytes. Builds are
// kept while an export refers to them (see sweep).
func (s *Server) layOut(e exportRecord, planID string, names []string) error {
	dst := s.exportDir(e)
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, privateDir); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+e.ID+".tmp-") // 0700
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, name := range names {
		src := filepath.Join(s.buildDir(planID), name)
		if err := s.link(src, filepath.Join(tmp, name)); err == nil {
			continue
		} else if errors.Is(err, fs.ErrNotExist) {
			return err // the build is gone (retention): no link to nothing
		}
		// Relative, so the data directory may move: from
		// exports/{tenant}/{id}/name up to the data directory.
		rel := filepath.Join("..", "..", "..", "builds", filepath.Base(s.buildDir(planID)), name)
		if err := os.Symlink(rel, filepath.Join(tmp, name)); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Lstat(dst); serr == nil {
			return nil // laid out by a concurrent finisher
		}
		return err
	}
	return atomicfile.SyncDir(parent)
}

// makePrivate gives a build's directory and files (and so its exports'
// hard links) the server's user's modes alone.
func makePrivate(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := privateFile
		switch {
		case d.IsDir():
			mode = privateDir
		case !d.Type().IsRegular():
			return nil
		}
		return os.Chmod(p, mode)
	})
}
