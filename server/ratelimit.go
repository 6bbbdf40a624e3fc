package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"golang.org/x/time/rate"
)

// limiter holds one token bucket per tenant and writes the IETF RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers): RateLimit-Policy names
// the quota (q requests per w seconds), RateLimit what is left of it (r)
// and the seconds until it is full again (t).
type limiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, byKey: map[string]*rate.Limiter{}}
}

// bucket returns tenant's token bucket.
func (l *limiter) bucket(tenant string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[tenant]
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.byKey[tenant] = lim
	}
	return lim
}

// take takes n more requests' worth from tenant's bucket, for work that
// costs more than a request; when the bucket lacks them it takes none and
// returns how long until it holds them.
func (l *limiter) take(tenant string, n int) (time.Duration, bool) {
	lim := l.bucket(tenant)
	now := time.Now()
	if lim.AllowN(now, n) {
		return 0, true
	}
	wait := time.Duration((float64(n) - lim.TokensAt(now)) / float64(l.rate) * float64(time.Second))
	return wait, false
}

// allow takes one request from tenant's bucket, setting the headers; past
// the limit it sets Retry-After and reports false.
func (l *limiter) allow(w http.ResponseWriter, tenant string) bool {
	lim := l.bucket(tenant)
	now := time.Now()
	allowed := lim.AllowN(now, 1)
	left := lim.TokensAt(now)
	window := int64(math.Ceil(float64(l.burst) / float64(l.rate)))
	full := int64(math.Ceil((float64(l.burst) - left) / float64(l.rate)))
	h := w.Header()
	h.Set("RateLimit-Policy", fmt.Sprintf(`"tenant";q=%d;w=%d`, l.burst, window))
	h.Set("RateLimit", fmt.Sprintf(`"tenant";r=%d;t=%d`, int64(math.Max(0, math.Floor(left))), full))
	if !allowed {
		wait := time.Duration((1 - left) / float64(l.rate) * float64(time.Second))
		h.Set("Retry-After", retryAfter(wait))
	}
	return allowed
}

// Concurrent builds per tenant. A build is counted against the tenant
// whose POST queued it: the tenant is in the River job's metadata, so the
// count comes from the job store and holds across restarts and on
// Postgres. A POST whose plan is built already, or whose build is queued
// or running for anyone, joins it and is not counted.

// activeStates are the River job states of a build not finished.
const activeStates = `('available', 'pending', 'running', 'retryable', 'scheduled')`

// tenantBuilds counts tenant's builds not finished whose server is alive
// (see liveJob): a dead server's build is not the tenant's to wait for.
func (s *store) tenantBuilds(ctx context.Context, tenant string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM river_job j WHERE `+s.liveJob("j")+` AND j.metadata ->> 'tenant' = ?`), tenant).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count builds of tenant %s: %w", tenant, err)
	}
	return n, nil
}

// building reports whether a job of kind for planID is not finished and
// its server alive (see liveJob): a request never joins a dead build.
func (s *store) building(ctx context.Context, kind, planID string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM river_job j WHERE `+s.liveJob("j")+` AND j.kind = ? AND j.args ->> 'planId' = ?`), kind, planID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up build of %s: %w", planID, err)
	}
	return n > 0, nil
}

// lockTenant serialises tenant's build admissions among servers sharing a
// Postgres database: a transaction-scoped advisory lock, released when the
// returned function ends the transaction (or the session dies with its
// server). SQLite has one server per data directory: nothing to do.
func (s *store) lockTenant(ctx context.Context, tenant string) (func(), error) {
	if !s.pg {
		return func() {}, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("lock builds of tenant %s: %w", tenant, err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "bale-builds:"+tenant); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("lock builds of tenant %s: %w", tenant, err)
	}
	return func() { tx.Rollback() }, nil
}

// orphanExports lists exports not finished whose plan has no build job
// waiting or running: left so when a POST's job insert was skipped as a
// duplicate of a job that was just finishing (a failed build is still
// "running" for a moment after it marked its exports failed), or when the
// server died between recording an export and queueing its build.
func (s *store) orphanExports(ctx context.Context, kind string) ([]exportRecord, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+exportCols+` FROM bale_exports e WHERE e.status IN (?, ?)
		AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.state IN `+activeStates+` AND j.kind = ? AND j.args ->> 'planId' = e.plan_id)
		ORDER BY e.created_at LIMIT 1000`), statusQueued, statusRunning, kind)
	if err != nil {
		return nil, fmt.Errorf("list exports without a build: %w", err)
	}
	defer rows.Close()
	var out []exportRecord
	for rows.Next() {
		e, err := scanExport(rows)
		if err != nil {
			return nil, fmt.Errorf("list exports without a build: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// buildOpts are the insert options of a build job queued for tenant:
// its tenant and how many times the plan's build was taken over from a
// dead server before (see reclaimBuilds) are in the job's metadata.
func buildOpts(tenant string, rescues int) *river.InsertOpts {
	m := map[string]string{"tenant": tenant}
	if rescues > 0 {
		m["rescues"] = strconv.Itoa(rescues)
	}
	meta, _ := json.Marshal(m)
	return &river.InsertOpts{Metadata: meta}
}
