package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bale-build/bale/executor/cas"
)

// Retention: what the server keeps, and for how long. Every POST adds an
// export, so without it one tenant within its rate limit fills the disk.
//
//   - A finished export (succeeded or failed) goes once Config.RetainAge
//     has passed since it finished, or once its tenant has
//     Config.RetainCount newer finished exports: its record (status,
//     downloads and Idempotency-Key then answer 404) and its directory.
//   - A build goes when no export refers to it any more and it finished
//     longer than RetainAge ago (at once when RetainAge is unbounded and
//     exports are kept by count alone); a later export of its plan builds it
//     again (from the cache, while the cache still holds its inputs).
//   - A plan goes when no export refers to it and it was first made or
//     posted longer than RetainAge ago.
//   - The cache's blobs and step results not used for RetainAge go too.
//   - River's finished jobs are River's to delete (a day after they end).
//
// Config.TenantQuota bounds what a tenant's exports hold: past it a POST
// that would add a plan the tenant does not hold yet is 507.

// retainBatch bounds the exports one round of the sweep removes, so one
// round is short; the next round goes on.
const retainBatch = 1000

// sweepRetention removes what has outlived retention as of now. orphans
// also removes export directories no record names (left by a crash
// between a record's removal and its directory's) and layouts a crash
// cut short; the first round after a start does it.
func (s *Server) sweepRetention(ctx context.Context, orphans bool) error {
	now := s.cfg.Now()
	var cutoff time.Time
	if s.cfg.RetainAge > 0 {
		cutoff = now.Add(-s.cfg.RetainAge)
	}
	expired, err := s.store.expiredExports(ctx, cutoff, s.cfg.RetainCount, retainBatch)
	if err != nil {
		return err
	}
	for _, e := range expired {
		if err := s.removeExport(ctx, e); err != nil {
			return err
		}
	}
	if len(expired) > 0 {
		s.log.Info("retention: exports removed", "exports", len(expired))
	}
	// Builds and plans no export refers to go after RetainAge, or at
	// once when exports are kept by count alone.
	unused := cutoff
	if unused.IsZero() {
		unused = now
	}
	plans, err := s.store.unusedBuilds(ctx, unused)
	if err != nil {
		return err
	}
	for _, id := range plans {
		// The record first: a POST from now on finds no build and queues
		// one; then the files.
		if err := s.store.deleteBuild(ctx, id); err != nil {
			return err
		}
		if err := os.RemoveAll(s.buildDir(id)); err != nil {
			return fmt.Errorf("retention: remove build of %s: %w", id, err)
		}
	}
	ids, err := s.store.deleteUnusedPlans(ctx, unused)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := os.Remove(s.planPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("retention: remove plan %s: %w", id, err)
		}
	}
	if len(plans)+len(ids) > 0 {
		s.log.Info("retention: builds and plans removed", "builds", len(plans), "plans", len(ids))
	}
	if s.cfg.RetainAge > 0 {
		if _, err := s.cache.Prune(ctx, cas.PruneOptions{OlderThan: s.cfg.RetainAge, Now: now}); err != nil {
			return fmt.Errorf("retention: %w", err)
		}
	}
	return s.sweepOrphans(ctx, orphans)
}

// removeExport removes export e: its record, then its directory (a record
// without its files would answer downloads with 500; a directory without
// its record is an orphan the next start removes).
func (s *Server) removeExport(ctx context.Context, e exportRecord) error {
	if err := s.store.deleteExport(ctx, e.ID); err != nil {
		return err
	}
	if err := os.RemoveAll(s.exportDir(e)); err != nil {
		return fmt.Errorf("remove export %s: %w", e.ID, err)
	}
	return nil
}

// sweepOrphans removes, when all is set, the export directories no record
// names, and the temporary directories of layouts a crash cut short.
func (s *Server) sweepOrphans(ctx context.Context, all bool) error {
	if !all {
		return nil
	}
	root := filepath.Join(s.cfg.DataDir, "exports")
	tenants, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		dirs, err := os.ReadDir(filepath.Join(root, t.Name()))
		if err != nil {
			return fmt.Errorf("retention: %w", err)
		}
		for _, d := range dirs {
			name := d.Name()
			p := filepath.Join(root, t.Name(), name)
			if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
				// No layout outlives its process, and none runs yet.
				if err := os.RemoveAll(p); err != nil {
					return fmt.Errorf("retention: %w", err)
				}
				continue
			}
			if !exportIDRE.MatchString(name) {
				continue
			}
			if _, err := s.store.export(ctx, t.Name(), name); errors.Is(err, errNotFound) {
				if err := os.RemoveAll(p); err != nil {
					return fmt.Errorf("retention: %w", err)
				}
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// retentionLoop sweeps at start (orphans included) and then every
// interval until ctx ends.
func (s *Server) retentionLoop(ctx context.Context, interval time.Duration) {
	if err := s.sweepRetention(ctx, true); err != nil && ctx.Err() == nil {
		s.log.Warn("retention", "err", err.Error())
	}
	s.every(ctx, interval, "retention", func() error { return s.sweepRetention(ctx, false) })
}

// checkQuota refuses tenant a new export of plan planID when its exports
// hold its quota or more already, unless it holds the plan (an export of
// it adds nothing).
func (s *Server) checkQuota(ctx context.Context, tenant, planID string) error {
	if s.cfg.TenantQuota <= 0 {
		return nil
	}
	used, holds, err := s.store.tenantUsage(ctx, tenant, planID)
	if err != nil || holds || used < s.cfg.TenantQuota {
		return err
	}
	return problemf(probStorageQuota, "this tenant's exports hold %d bytes, its quota is %d: delete exports, or wait for retention to remove them", used, s.cfg.TenantQuota)
}

// expiredExports lists up to limit finished exports that finished before
// cutoff (unless cutoff is zero) or that have count newer finished exports
// of their tenant (unless count is 0 or less), oldest first.
func (s *store) expiredExports(ctx context.Context, cutoff time.Time, count, limit int) ([]exportRecord, error) {
	before := int64(0)
	if !cutoff.IsZero() {
		before = cutoff.UnixNano()
	}
	if count <= 0 {
		count = -1
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+exportCols+` FROM (
		SELECT e.*, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY created_at DESC, export_id DESC) AS newer
		FROM bale_exports e WHERE status IN (?, ?)) f
		WHERE finished_at < ? OR (? > 0 AND newer > ?)
		ORDER BY created_at LIMIT ?`), statusSucceeded, statusFailed, before, count, count, limit)
	if err != nil {
		return nil, fmt.Errorf("list expired exports: %w", err)
	}
	defer rows.Close()
	var out []exportRecord
	for rows.Next() {
		e, err := scanExport(rows)
		if err != nil {
			return nil, fmt.Errorf("list expired exports: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// deleteExport removes export id's record.
func (s *store) deleteExport(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM bale_exports WHERE export_id = ?`), id); err != nil {
		return fmt.Errorf("remove export %s: %w", id, err)
	}
	return nil
}

// unusedBuilds lists the plans whose build finished before cutoff and
// that no export refers to.
func (s *store) unusedBuilds(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT plan_id FROM bale_builds b WHERE finished_at < ?
		AND NOT EXISTS (SELECT 1 FROM bale_exports e WHERE e.plan_id = b.plan_id) LIMIT ?`), cutoff.UnixNano(), retainBatch)
	if err != nil {
		return nil, fmt.Errorf("list unused builds: %w", err)
	}
	return scanStrings(rows)
}

// deleteBuild removes the record of plan id's build and its files.
func (s *store) deleteBuild(ctx context.Context, id string) error {
	for _, q := range []string{`DELETE FROM bale_build_files WHERE plan_id = ?`, `DELETE FROM bale_builds WHERE plan_id = ?`} {
		if _, err := s.db.ExecContext(ctx, s.q(q), id); err != nil {
			return fmt.Errorf("remove build of %s: %w", id, err)
		}
	}
	return nil
}

// deleteUnusedPlans removes the tenants' claims on plans made or posted
// before cutoff that none of the tenant's exports refers to, then the
// plans no claim and no export is left on, and returns the latter.
func (s *store) deleteUnusedPlans(ctx context.Context, cutoff time.Time) ([]string, error) {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM bale_plan_tenants WHERE created_at < ?
		AND NOT EXISTS (SELECT 1 FROM bale_exports e WHERE e.plan_id = bale_plan_tenants.plan_id AND e.tenant = bale_plan_tenants.tenant)`),
		cutoff.Unix()); err != nil {
		return nil, fmt.Errorf("remove unused plans: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT plan_id FROM bale_plans p WHERE created_at < ?
		AND NOT EXISTS (SELECT 1 FROM bale_plan_tenants t WHERE t.plan_id = p.plan_id)
		AND NOT EXISTS (SELECT 1 FROM bale_exports e WHERE e.plan_id = p.plan_id)
		AND NOT EXISTS (SELECT 1 FROM bale_builds b WHERE b.plan_id = p.plan_id) LIMIT ?`), cutoff.Unix(), retainBatch)
	if err != nil {
		return nil, fmt.Errorf("list unused plans: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM bale_plans WHERE plan_id = ?`), id); err != nil {
			return nil, fmt.Errorf("remove plan %s: %w", id, err)
		}
	}
	return ids, nil
}

// tenantUsage is the bytes tenant's succeeded exports hold, each plan's
// files counted once however many exports of it the tenant has (they
// share them), and whether one of them is of plan planID.
func (s *store) tenantUsage(ctx context.Context, tenant, planID string) (int64, bool, error) {
	var used, holds int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COALESCE(SUM(bytes), 0), COALESCE(MAX(held), 0) FROM (
		SELECT DISTINCT e.plan_id,
			CASE WHEN e.profile = ? THEN (SELECT COALESCE(SUM(f.size), 0) FROM bale_build_files f WHERE f.plan_id = e.plan_id)
			ELSE e.size END AS bytes,
			CASE WHEN e.plan_id = ? THEN 1 ELSE 0 END AS held
		FROM bale_exports e WHERE e.tenant = ? AND e.status = ?) u`), profileRelease, planID, tenant, statusSucceeded).Scan(&used, &holds)
	if err != nil {
		return 0, false, fmt.Errorf("storage of tenant %s: %w", tenant, err)
	}
	return used, holds != 0, nil
}

// scanStrings reads rows of one string column.
func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
