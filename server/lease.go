package server

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Build leases. River runs a build job with no timeout (a build ends when
// it ends) and, on Postgres, never learns that the server running it died:
// its job would stay "running" for good. So a worker holds a lease on its
// job, a row in bale_leases that it renews every third of
// Config.BuildLease while the build runs. Every server looks for running
// builds whose lease ran out (reclaimBuilds, each reconcile round) and
// takes them over: the dead job is discarded and a new job for the plan
// queued, which any server may run. Only builds with a live lease count
// as running, for the tenant's build limit and for joining a build.
//
// Lease times are the database's clock, never a server's, so servers
// with skewed clocks agree on when a lease ends.

// errLeaseLost ends a build whose lease another server took over, or that
// could not be renewed for a whole lease.
var errLeaseLost = errors.New("the build's lease was lost: another server may be running it")

// maxRescues is how many times a build is taken over from a dead server
// before its exports fail: a build that kills every server running it
// (out of memory, say) must not go round the fleet for ever.
const maxRescues = 3

// newInstanceID names this server process in the leases it holds: host,
// process id and a random part, so a restarted process is another owner.
func newInstanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// nowMS is the database's clock in Unix milliseconds, as SQL.
func (s *store) nowMS() string {
	if s.pg {
		return `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)`
	}
	return `CAST(unixepoch('subsec') * 1000 AS INTEGER)`
}

// nowTS is the database's clock as River stores its timestamps, as SQL.
func (s *store) nowTS() string {
	if s.pg {
		return `now()`
	}
	return `datetime('now', 'subsec')`
}

// liveJob is the SQL condition that River job j is a build not finished
// whose server is alive: waiting, or running under a lease that has not
// run out (or that its worker is yet to claim).
func (s *store) liveJob(j string) string {
	return `(` + j + `.state IN ('available', 'pending', 'retryable', 'scheduled') OR (` + j + `.state = 'running' AND NOT EXISTS
		(SELECT 1 FROM bale_leases l WHERE l.job_id = ` + j + `.id AND l.expires_at < ` + s.nowMS() + `)))`
}

// claimLease takes job id's lease for owner for d, if the job is running:
// River handed it to this server, so any lease left on it is stale. It
// reports false when the job is not running (another server took it over
// in the meantime).
func (s *store) claimLease(ctx context.Context, id int64, owner string, d time.Duration) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO bale_leases (job_id, owner, expires_at)
		SELECT CAST(? AS BIGINT), CAST(? AS TEXT), `+s.nowMS()+` + CAST(? AS BIGINT)
		WHERE EXISTS (SELECT 1 FROM river_job WHERE id = ? AND state = 'running')
		ON CONFLICT (job_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at`),
		id, owner, d.Milliseconds(), id)
	if err != nil {
		return false, fmt.Errorf("claim the lease of build job %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// renewLease extends owner's lease of job id to d from now. It reports
// false when owner no longer holds it.
func (s *store) renewLease(ctx context.Context, id int64, owner string, d time.Duration) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE bale_leases SET expires_at = `+s.nowMS()+` + ?
		WHERE job_id = ? AND owner = ? AND EXISTS (SELECT 1 FROM river_job WHERE id = ? AND state = 'running')`),
		d.Milliseconds(), id, owner, id)
	if err != nil {
		return false, fmt.Errorf("renew the lease of build job %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// dropLease gives up owner's lease of job id: its build returned.
func (s *store) dropLease(ctx context.Context, id int64, owner string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM bale_leases WHERE job_id = ? AND owner = ?`), id, owner); err != nil {
		return fmt.Errorf("drop the lease of build job %d: %w", id, err)
	}
	return nil
}

// deadBuild is a running build job whose lease ran out.
type deadBuild struct {
	id      int64
	planID  string
	tenant  string
	owner   string // the lease's holder; "" if no worker claimed it
	rescues int    // how many times the build was taken over before
}

// deadBuilds lists the running build jobs whose lease ran out, of plan
// planID or of every plan when it is "". Running jobs with no lease are
// given one first, unclaimed: a worker claims its job's lease the moment
// River hands it over, so a job still without one after a lease's time
// was handed to a server that died before it could.
func (s *store) deadBuilds(ctx context.Context, kind, planID string, d time.Duration) ([]deadBuild, error) {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO bale_leases (job_id, owner, expires_at)
		SELECT j.id, '', `+s.nowMS()+` + CAST(? AS BIGINT) FROM river_job j WHERE j.state = 'running' AND j.kind = ?
		AND NOT EXISTS (SELECT 1 FROM bale_leases l WHERE l.job_id = j.id)
		ON CONFLICT (job_id) DO NOTHING`), d.Milliseconds(), kind); err != nil {
		return nil, fmt.Errorf("lease unleased builds: %w", err)
	}
	q := `SELECT j.id, j.args ->> 'planId', j.metadata ->> 'tenant', j.metadata ->> 'rescues', l.owner
		FROM river_job j JOIN bale_leases l ON l.job_id = j.id
		WHERE j.state = 'running' AND j.kind = ? AND l.expires_at < ` + s.nowMS()
	args := []any{kind}
	if planID != "" {
		q += ` AND j.args ->> 'planId' = ?`
		args = append(args, planID)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+` ORDER BY j.id`), args...)
	if err != nil {
		return nil, fmt.Errorf("list builds whose lease ran out: %w", err)
	}
	defer rows.Close()
	var out []deadBuild
	for rows.Next() {
		var (
			b                     deadBuild
			plan, tenant, rescues sql.NullString
		)
		if err := rows.Scan(&b.id, &plan, &tenant, &rescues, &b.owner); err != nil {
			return nil, fmt.Errorf("list builds whose lease ran out: %w", err)
		}
		b.planID, b.tenant = plan.String, tenant.String
		b.rescues, _ = strconv.Atoi(rescues.String)
		out = append(out, b)
	}
	return out, rows.Err()
}

// discardDead discards running build job id, whose lease ran out, and
// drops its lease, so that a new job for its plan may be queued (jobs are
// unique by plan only while not finished). It reports false when the job
// was no longer running: it finished, or another server took it over.
func (s *store) discardDead(ctx context.Context, id int64) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("take over build job %d: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`UPDATE river_job SET state = 'discarded', finalized_at = `+s.nowTS()+`
		WHERE id = ? AND state = 'running' AND EXISTS (SELECT 1 FROM bale_leases l WHERE l.job_id = ? AND l.expires_at < `+s.nowMS()+`)`), id, id)
	if err != nil {
		return false, fmt.Errorf("take over build job %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM bale_leases WHERE job_id = ?`), id); err != nil {
		return false, fmt.Errorf("take over build job %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("take over build job %d: %w", id, err)
	}
	return true, nil
}

// dropStaleLeases removes the leases of jobs no longer running.
func (s *store) dropStaleLeases(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM bale_leases WHERE NOT EXISTS
		(SELECT 1 FROM river_job j WHERE j.id = bale_leases.job_id AND j.state = 'running')`); err != nil {
		return fmt.Errorf("drop stale build leases: %w", err)
	}
	return nil
}

// holdLease claims the lease of build job id for this server and renews
// it every third of Config.BuildLease until stop is called. The returned
// context is ctx, cancelled with errLeaseLost when the lease is lost:
// another server took the build over, or no renewal got through for a
// whole lease (another server may have taken it over by now).
func (s *Server) holdLease(ctx context.Context, id int64) (context.Context, func(), error) {
	ok, err := s.store.claimLease(ctx, id, s.instance, s.cfg.BuildLease)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, errLeaseLost
	}
	lctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		every := s.cfg.BuildLease / 3
		t := time.NewTicker(every)
		defer t.Stop()
		renewed := time.Now()
		for {
			select {
			case <-done:
				return
			case <-lctx.Done():
				return
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(lctx, every)
			ok, err := s.store.renewLease(rctx, id, s.instance, s.cfg.BuildLease)
			rcancel()
			switch {
			case err == nil && ok:
				renewed = time.Now()
			case err == nil, time.Since(renewed) >= s.cfg.BuildLease:
				s.log.Warn("build lease lost; stopping the build", "jobId", id)
				cancel(errLeaseLost)
				return
			default:
				s.log.Warn("renew build lease", "jobId", id, "err", err.Error())
			}
		}
	})
	stop := func() {
		close(done)
		wg.Wait()
		cancel(nil)
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer dcancel()
		if err := s.store.dropLease(dctx, id, s.instance); err != nil {
			s.log.Warn("drop build lease", "jobId", id, "err", err.Error())
		}
	}
	return lctx, stop, nil
}

// reclaimBuilds takes over the builds of plan planID (of every plan when
// it is "") whose lease ran out: each dead job is discarded and, when
// requeue is set, a new job for its plan queued for its tenant, which any
// server may run. A build taken over maxRescues times fails its exports
// instead. A POST that finds its plan's build dead passes requeue false:
// the build it queues itself replaces the dead one.
func (s *Server) reclaimBuilds(ctx context.Context, planID string, requeue bool) error {
	dead, err := s.store.deadBuilds(ctx, buildArgs{}.Kind(), planID, s.cfg.BuildLease)
	if err != nil {
		return err
	}
	for _, b := range dead {
		ok, err := s.store.discardDead(ctx, b.id)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		s.log.Warn("build taken over: its server stopped renewing the lease", "jobId", b.id, "planId", b.planID,
			"tenant", b.tenant, "leaseOwner", b.owner, "rescues", b.rescues+1)
		if b.rescues+1 >= maxRescues {
			cause := fmt.Errorf("the server building it stopped %d times during the build", b.rescues+1)
			if err := s.recordFailure(ctx, b.planID, cause); err != nil {
				return err
			}
			continue
		}
		if !requeue {
			continue
		}
		if _, err := s.queue.Insert(ctx, buildArgs{PlanID: b.planID}, buildOpts(b.tenant, b.rescues+1)); err != nil {
			return fmt.Errorf("queue build of %s: %w", b.planID, err)
		}
	}
	return s.store.dropStaleLeases(ctx)
}
