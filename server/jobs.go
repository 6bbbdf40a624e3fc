package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sys/unix"

	// The pure-Go SQLite driver, so bale needs no cgo.
	_ "modernc.org/sqlite"
)

// buildArgs is the River job that builds one plan. Its only argument is the
// plan id, and jobs are unique by it while waiting or running, so one plan
// is never built twice at once however many exports ask for it.
type buildArgs struct {
	PlanID string `json:"planId"`
}

// Kind names the job kind in River's tables.
func (buildArgs) Kind() string { return "bale_build" }

// InsertOpts makes build jobs unique by plan while not finished.
func (buildArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: 5,
		UniqueOpts: river.UniqueOpts{
			ByArgs: true,
			ByState: []rivertype.JobState{
				rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
				rivertype.JobStateRetryable, rivertype.JobStateScheduled,
			},
		},
	}
}

// buildWorker runs build jobs.
type buildWorker struct {
	river.WorkerDefaults[buildArgs]
	s *Server
}

// Work runs the build under a lease on its job (see holdLease): should
// this server die, another takes the build over once the lease runs out.
func (w *buildWorker) Work(ctx context.Context, job *river.Job[buildArgs]) error {
	ctx, stop, err := w.s.holdLease(ctx, job.ID)
	if errors.Is(err, errLeaseLost) {
		// Taken over by another server between River handing it here and
		// now; its job is no longer this one.
		return river.JobCancel(err)
	} else if err != nil {
		return err
	}
	defer stop()
	return w.s.runBuild(ctx, job.Args.PlanID, job.Attempt)
}

// reconcile queues a build for every export that waits with no build job
// of its plan waiting or running, once the export is older than grace (a
// POST records its export before it queues the build) and its tenant is
// under its build limit (else at a later round). The insert is
// unique by plan, so servers sharing a database reconciling at once still
// queue one build.
func (s *Server) reconcile(ctx context.Context, grace time.Duration) error {
	if err := s.reclaimBuilds(ctx, "", true); err != nil {
		return err
	}
	orphans, err := s.store.orphanExports(ctx, buildArgs{}.Kind())
	if err != nil {
		return err
	}
	queued := map[string]bool{}
	for _, e := range orphans {
		if queued[e.PlanID] || time.Since(e.Created) < grace {
			continue
		}
		ok, err := s.requeue(ctx, e)
		if err != nil {
			return err
		}
		if ok {
			queued[e.PlanID] = true
			s.log.Warn("export waited with no build job; queued one", "exportId", e.ID, "planId", e.PlanID, "tenant", e.Tenant)
		}
	}
	return nil
}

// requeue queues the build of orphan export e unless its tenant is at
// its build limit: the reconciler must not be a way around it (an export
// split from its build, once per POST, would be a build per POST). It
// admits the build as a POST does; false means "not yet".
func (s *Server) requeue(ctx context.Context, e exportRecord) (bool, error) {
	_, release, err := s.admitBuild(ctx, e.Tenant, e.PlanID, true)
	if isProblem(err, probBuildLimit) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer release()
	if _, err := s.queue.Insert(ctx, buildArgs{PlanID: e.PlanID}, buildOpts(e.Tenant, 0)); err != nil {
		return false, fmt.Errorf("queue build of %s: %w", e.PlanID, err)
	}
	return true, nil
}

// reconcileLoop runs reconcile every interval until ctx ends.
func (s *Server) reconcileLoop(ctx context.Context, interval time.Duration) {
	s.every(ctx, interval, "reconcile exports", func() error { return s.reconcile(ctx, interval) })
}

// every runs f every interval until ctx ends, logging its errors as what.
func (s *Server) every(ctx context.Context, interval time.Duration, what string, f func() error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f(); err != nil && ctx.Err() == nil {
				s.log.Warn(what, "err", err.Error())
			}
		}
	}
}

// queue is the job engine as the server uses it. River's client is generic
// in its driver's transaction type; riverQueue is the one implementation,
// whichever database is behind it.
type queue interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// newQueue migrates River's tables and returns a client working build jobs
// with s.
func newQueue[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], s *Server) (queue, error) {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("job store: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("job store: migrate: %w", err)
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &buildWorker{s: s}); err != nil {
		return nil, err
	}
	c, err := river.NewClient(driver, &river.Config{
		Logger:            slog.New(riverLogHandler{s.log.Handler()}),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.cfg.MaxBuilds}},
		Workers:           workers,
		FetchPollInterval: 100 * time.Millisecond,
		FetchCooldown:     10 * time.Millisecond,
		// A build ends when it ends; River cancels it only on shutdown.
		// River's own rescue of stuck jobs never applies to a job without
		// a timeout: a dead server's build is taken over by its lease
		// running out instead (see reclaimBuilds).
		JobTimeout: -1,
		// Finished jobs carry nothing the API shows (exports and builds
		// are bale's own records): River's cleaner deletes them after
		// JobRetention.
		CompletedJobRetentionPeriod: s.cfg.JobRetention,
		CancelledJobRetentionPeriod: s.cfg.JobRetention,
		DiscardedJobRetentionPeriod: s.cfg.JobRetention,
	})
	if err != nil {
		return nil, fmt.Errorf("job store: %w", err)
	}
	return c, nil
}

// openStore opens the database (SQLite in the data directory, or Postgres
// at cfg.Database), creates bale's tables and returns the job queue.
func (s *Server) openStore(ctx context.Context) (func() error, error) {
	if strings.HasPrefix(s.cfg.Database, "postgres://") || strings.HasPrefix(s.cfg.Database, "postgresql://") {
		pool, err := pgxpool.New(ctx, s.cfg.Database)
		if err != nil {
			return nil, fmt.Errorf("open database: %w", redactURL(err, s.cfg.Database))
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("open database: %w", redactURL(err, s.cfg.Database))
		}
		db := stdlib.OpenDBFromPool(pool)
		s.store = &store{db: db, pg: true, inlineRoot: s.inlineRoot()}
		if err := s.store.migrate(ctx); err != nil {
			db.Close()
			pool.Close()
			return nil, err
		}
		if s.queue, err = newQueue(ctx, riverpgxv5.New(pool), s); err != nil {
			db.Close()
			pool.Close()
			return nil, err
		}
		return func() error { db.Close(); pool.Close(); return nil }, nil
	}
	if s.cfg.Database != "" {
		return nil, fmt.Errorf("--database %q: want postgres://… (or nothing for SQLite in the data directory)", redact(s.cfg.Database))
	}
	// SQLite is one writer: the data directory is this process's alone,
	// which also makes every job left running in it a dead process's.
	lock, err := os.OpenFile(filepath.Join(s.cfg.DataDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data directory %s is in use by another bale serve: %w", s.cfg.DataDir, err)
	}
	dbPath := filepath.Join(s.cfg.DataDir, "bale.db")
	if err := createPrivate(dbPath); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	dsn := "file:" + dbPath + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	// SQLite allows one writer; River's driver documentation asks for one
	// connection.
	db.SetMaxOpenConns(1)
	closeAll := func() error { err := db.Close(); lock.Close(); return err }
	s.store = &store{db: db, inlineRoot: s.inlineRoot()}
	if err := s.store.migrate(ctx); err != nil {
		closeAll()
		return nil, err
	}
	if s.queue, err = newQueue(ctx, riversqlite.New(db), s); err != nil {
		closeAll()
		return nil, err
	}
	// The lock is ours, so a job still marked running was a killed
	// server's: make it available again now rather than once its lease
	// runs out.
	if _, err := db.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`); err != nil {
		closeAll()
		return nil, fmt.Errorf("re-queue interrupted builds: %w", err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM bale_leases`); err != nil {
		closeAll()
		return nil, fmt.Errorf("re-queue interrupted builds: %w", err)
	}
	return closeAll, nil
}

// createPrivate makes the SQLite file at path, or makes an existing one
// (and its -wal and -shm files, which SQLite creates with the database
// file's mode) readable by the server's user alone.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, privateFile)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, privateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// redact hides the password of a database URL.
func redact(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "…" + u[at:]
}

func redactURL(err error, u string) error {
	return errors.New(strings.ReplaceAll(err.Error(), u, redact(u)))
}

// riverLogHandler passes on River's warnings and errors only: its info
// lines (job counts every few seconds) would drown the request log.
type riverLogHandler struct{ slog.Handler }

func (h riverLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h riverLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return riverLogHandler{h.Handler.WithAttrs(as)}
}

func (h riverLogHandler) WithGroup(name string) slog.Handler {
	return riverLogHandler{h.Handler.WithGroup(name)}
}
