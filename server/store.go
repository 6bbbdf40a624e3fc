package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Export states, as the status endpoint reports them.
const (
	statusQueued    = "queued"
	statusRunning   = "running"
	statusSucceeded = "succeeded"
	statusFailed    = "failed"
)

// store holds the server's own records (plans, builds, exports) in the same
// database as River's jobs, through database/sql for both SQLite and
// Postgres: queries are written with ? and rebound to $N for Postgres.
type store struct {
	db *sql.DB
	pg bool
	// inlineRoot is the root recorded for inline plans (Server.inlineRoot),
	// by which a data directory from before plans carried their origin
	// tells its inline plans.
	inlineRoot string
}

// schema is valid SQLite and Postgres alike.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS bale_plans (
		plan_id TEXT PRIMARY KEY,
		root TEXT NOT NULL,
		kind TEXT NOT NULL,
		build_time BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		public_only BIGINT NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS bale_plan_tenants (
		tenant TEXT NOT NULL,
		plan_id TEXT NOT NULL,
		spec TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (tenant, plan_id))`,
	`CREATE TABLE IF NOT EXISTS bale_builds (
		plan_id TEXT PRIMARY KEY,
		status TEXT NOT NULL,
		reason TEXT NOT NULL,
		file TEXT NOT NULL,
		artifact_sha256 TEXT NOT NULL,
		root_hash TEXT NOT NULL,
		size BIGINT NOT NULL,
		steps_run BIGINT NOT NULL,
		finished_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS bale_exports (
		export_id TEXT PRIMARY KEY,
		tenant TEXT NOT NULL,
		plan_id TEXT NOT NULL,
		spec TEXT NOT NULL,
		status TEXT NOT NULL,
		reason TEXT NOT NULL,
		file TEXT NOT NULL,
		artifact_sha256 TEXT NOT NULL,
		root_hash TEXT NOT NULL,
		size BIGINT NOT NULL,
		build_time BIGINT NOT NULL,
		idem_key TEXT,
		req_hash TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		finished_at BIGINT NOT NULL)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS bale_exports_idem ON bale_exports (tenant, idem_key)`,
	// A release build's files: the kit's, its archive and the archive's
	// .sha256, each with the kind offline-kit.json gives it.
	`CREATE TABLE IF NOT EXISTS bale_build_files (
		plan_id TEXT NOT NULL,
		name TEXT NOT NULL,
		kind TEXT NOT NULL,
		size BIGINT NOT NULL,
		sha256 TEXT NOT NULL,
		PRIMARY KEY (plan_id, name))`,
	`CREATE INDEX IF NOT EXISTS bale_exports_plan ON bale_exports (plan_id, status)`,
	// A running build job's lease (see lease.go): its holder and when it
	// runs out, in the database clock's Unix milliseconds.
	`CREATE TABLE IF NOT EXISTS bale_leases (
		job_id BIGINT PRIMARY KEY,
		owner TEXT NOT NULL,
		expires_at BIGINT NOT NULL)`,
	// Facts about the deployment: data_id, the id of the data directory
	// the database's servers share (see bindDataDir).
	`CREATE TABLE IF NOT EXISTS bale_meta (
		key TEXT PRIMARY KEY,
		value TEXT NOT NULL)`,
}

func (s *store) migrate(ctx context.Context) error {
	for _, q := range schema {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	// Exports gained a profile (bootstrap, release) after the first data
	// directories were made; theirs are all bootstrap exports.
	if _, err := s.addColumn(ctx, "bale_exports", "profile", `TEXT NOT NULL DEFAULT 'bootstrap'`); err != nil {
		return err
	}
	// Plans name the served spec they were made from: a build reads its
	// local inputs from the building server's own copy of the spec. Older
	// plans have none, and are built from their recorded root.
	if _, err := s.addColumn(ctx, "bale_plans", "spec", `TEXT NOT NULL DEFAULT ''`); err != nil {
		return err
	}
	// Plans gained their origin later still: an older directory's inline
	// plans are those recorded with the inline root.
	added, err := s.addColumn(ctx, "bale_plans", "public_only", `BIGINT NOT NULL DEFAULT 0`)
	if err != nil || !added {
		return err
	}
	if _, err := s.db.ExecContext(ctx, s.q(`UPDATE bale_plans SET public_only = 1 WHERE root = ?`), s.inlineRoot); err != nil {
		return fmt.Errorf("mark inline plans: %w", err)
	}
	return nil
}

// addColumn adds column to table unless it is there, and reports whether
// it added it. Neither database has a portable ADD COLUMN IF NOT EXISTS,
// so it looks first.
func (s *store) addColumn(ctx context.Context, table, column, def string) (bool, error) {
	if rows, err := s.db.QueryContext(ctx, `SELECT `+column+` FROM `+table+` WHERE 1 = 0`); err == nil {
		rows.Close()
		return false, nil
	}
	add := `ALTER TABLE ` + table + ` ADD COLUMN ` + column + ` ` + def
	if s.pg {
		// Two servers sharing the database may both get here.
		add = `ALTER TABLE ` + table + ` ADD COLUMN IF NOT EXISTS ` + column + ` ` + def
	}
	if _, err := s.db.ExecContext(ctx, add); err != nil {
		return false, fmt.Errorf("add column %s.%s: %w", table, column, err)
	}
	return true, nil
}

// q rebinds query's ? placeholders for the database in use.
func (s *store) q(query string) string {
	if !s.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// planRecord is a stored plan's server-side facts.
type planRecord struct {
	ID string
	// Spec names the served spec the plan was made from ("" for an
	// inline spec's, and for plans recorded before plans named it). Its
	// build reads the plan's local inputs from the building server's own
	// copy of the spec (see buildRoot), checked against their digests:
	// servers sharing a database need not keep their specs at one path.
	Spec string
	// Root is the planning server's workspace root of its local paths;
	// never shown, and read only for a plan without Spec.
	Root      string
	Kind      string
	BuildTime time.Time
	// PublicOnly marks a plan made from an inline spec: its build reaches
	// only public addresses and Config.InlineAllowHosts.
	PublicOnly bool
}

func (s *store) putPlan(ctx context.Context, tenant, spec string, p planRecord) error {
	now := time.Now().Unix()
	// The same plan (the same bytes) made from a served spec lifts an
	// inline origin's restriction, never the other way round: the plan
	// names exactly what the operator's spec does, which every client
	// may export by the spec's name anyway.
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO bale_plans (plan_id, root, kind, build_time, created_at, public_only, spec)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plan_id) DO UPDATE SET
		root = CASE WHEN excluded.public_only = 0 AND bale_plans.public_only <> 0 THEN excluded.root ELSE bale_plans.root END,
		spec = CASE WHEN excluded.public_only = 0 AND (bale_plans.public_only <> 0 OR bale_plans.spec = '') THEN excluded.spec ELSE bale_plans.spec END,
		public_only = CASE WHEN excluded.public_only = 0 THEN 0 ELSE bale_plans.public_only END`),
		p.ID, p.Root, p.Kind, p.BuildTime.Unix(), now, boolInt(p.PublicOnly), p.Spec); err != nil {
		return fmt.Errorf("record plan %s: %w", p.ID, err)
	}
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO bale_plan_tenants (tenant, plan_id, spec, created_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (tenant, plan_id) DO NOTHING`), tenant, p.ID, spec, now); err != nil {
		return fmt.Errorf("record plan %s: %w", p.ID, err)
	}
	return nil
}

// tenantPlan returns plan id if tenant made or posted it; errNotFound
// otherwise, whoever else has it.
func (s *store) tenantPlan(ctx context.Context, tenant, id string) (planRecord, string, error) {
	var p planRecord
	var spec string
	var bt, po int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT p.plan_id, p.spec, p.root, p.kind, p.build_time, p.public_only, t.spec
		FROM bale_plan_tenants t JOIN bale_plans p ON p.plan_id = t.plan_id
		WHERE t.tenant = ? AND t.plan_id = ?`), tenant, id).Scan(&p.ID, &p.Spec, &p.Root, &p.Kind, &bt, &po, &spec)
	if errors.Is(err, sql.ErrNoRows) {
		return p, "", errNotFound
	}
	if err != nil {
		return p, "", fmt.Errorf("look up plan %s: %w", id, err)
	}
	p.BuildTime, p.PublicOnly = time.Unix(bt, 0).UTC(), po != 0
	return p, spec, nil
}

func (s *store) plan(ctx context.Context, id string) (planRecord, error) {
	var p planRecord
	var bt, po int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT plan_id, spec, root, kind, build_time, public_only FROM bale_plans WHERE plan_id = ?`), id).
		Scan(&p.ID, &p.Spec, &p.Root, &p.Kind, &bt, &po)
	if errors.Is(err, sql.ErrNoRows) {
		return p, errNotFound
	}
	if err != nil {
		return p, fmt.Errorf("look up plan %s: %w", id, err)
	}
	p.BuildTime, p.PublicOnly = time.Unix(bt, 0).UTC(), po != 0
	return p, nil
}

// boolInt is b as the 0 or 1 the portable schema stores.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

var errNotFound = errors.New("not found")

// buildRecord is the outcome of building one plan.
type buildRecord struct {
	PlanID         string
	Status         string
	Reason         string
	File           string
	ArtifactSHA256 string
	RootHash       string
	Size           int64
	StepsRun       int
	Finished       time.Time
}

func (s *store) build(ctx context.Context, planID string) (buildRecord, error) {
	var b buildRecord
	var fin int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT plan_id, status, reason, file, artifact_sha256, root_hash, size, steps_run, finished_at
		FROM bale_builds WHERE plan_id = ?`), planID).
		Scan(&b.PlanID, &b.Status, &b.Reason, &b.File, &b.ArtifactSHA256, &b.RootHash, &b.Size, &b.StepsRun, &fin)
	if errors.Is(err, sql.ErrNoRows) {
		return b, errNotFound
	}
	if err != nil {
		return b, fmt.Errorf("look up build of %s: %w", planID, err)
	}
	b.Finished = time.Unix(0, fin).UTC()
	return b, nil
}

func (s *store) putBuild(ctx context.Context, b buildRecord) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO bale_builds (plan_id, status, reason, file, artifact_sha256, root_hash, size, steps_run, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (plan_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, file = excluded.file,
		artifact_sha256 = excluded.artifact_sha256, root_hash = excluded.root_hash, size = excluded.size,
		steps_run = excluded.steps_run, finished_at = excluded.finished_at`),
		b.PlanID, b.Status, b.Reason, b.File, b.ArtifactSHA256, b.RootHash, b.Size, b.StepsRun, b.Finished.UnixNano())
	if err != nil {
		return fmt.Errorf("record build of %s: %w", b.PlanID, err)
	}
	return nil
}

// Export profiles: what an export builds, and which routes show it.
const (
	profileBootstrap = "bootstrap"
	profileRelease   = "release"
)

// exportRecord is one export. For a release, File, ArtifactSHA256 and
// Size are the kit archive's; the kit's files are its build's.
type exportRecord struct {
	ID             string
	Profile        string
	Tenant         string
	PlanID         string
	Spec           string
	Status         string
	Reason         string
	File           string
	ArtifactSHA256 string
	RootHash       string
	Size           int64
	BuildTime      time.Time
	IdemKey        string
	ReqHash        string
	Created        time.Time
	Finished       time.Time
}

const exportCols = `export_id, profile, tenant, plan_id, spec, status, reason, file, artifact_sha256, root_hash, size, build_time, idem_key, req_hash, created_at, finished_at`

func scanExport(row interface{ Scan(...any) error }) (exportRecord, error) {
	var e exportRecord
	var bt, created, fin int64
	var key sql.NullString
	err := row.Scan(&e.ID, &e.Profile, &e.Tenant, &e.PlanID, &e.Spec, &e.Status, &e.Reason, &e.File, &e.ArtifactSHA256, &e.RootHash,
		&e.Size, &bt, &key, &e.ReqHash, &created, &fin)
	if err != nil {
		return e, err
	}
	e.IdemKey = key.String
	e.BuildTime = time.Unix(bt, 0).UTC()
	e.Created = time.Unix(0, created).UTC()
	if fin != 0 {
		e.Finished = time.Unix(0, fin).UTC()
	}
	return e, nil
}

// insertExport records e. With an idempotency key already used by the
// tenant, nothing is inserted and the earlier export is returned with
// inserted false.
func (s *store) insertExport(ctx context.Context, e exportRecord) (exportRecord, bool, error) {
	var key any
	if e.IdemKey != "" {
		key = e.IdemKey
	}
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO bale_exports (`+exportCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, idem_key) DO NOTHING`),
		e.ID, e.Profile, e.Tenant, e.PlanID, e.Spec, e.Status, e.Reason, e.File, e.ArtifactSHA256, e.RootHash, e.Size,
		e.BuildTime.Unix(), key, e.ReqHash, e.Created.UnixNano(), 0)
	if err != nil {
		return e, false, fmt.Errorf("record export: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return e, true, nil
	}
	prev, err := s.exportByKey(ctx, e.Tenant, e.IdemKey)
	return prev, false, err
}

func (s *store) exportByKey(ctx context.Context, tenant, key string) (exportRecord, error) {
	e, err := scanExport(s.db.QueryRowContext(ctx, s.q(`SELECT `+exportCols+` FROM bale_exports WHERE tenant = ? AND idem_key = ?`), tenant, key))
	if errors.Is(err, sql.ErrNoRows) {
		return e, errNotFound
	}
	if err != nil {
		return e, fmt.Errorf("look up idempotency key: %w", err)
	}
	return e, nil
}

// export returns tenant's export id; another tenant's is errNotFound.
func (s *store) export(ctx context.Context, tenant, id string) (exportRecord, error) {
	e, err := scanExport(s.db.QueryRowContext(ctx, s.q(`SELECT `+exportCols+` FROM bale_exports WHERE export_id = ? AND tenant = ?`), id, tenant))
	if errors.Is(err, sql.ErrNoRows) {
		return e, errNotFound
	}
	if err != nil {
		return e, fmt.Errorf("look up export %s: %w", id, err)
	}
	return e, nil
}

// tenantHasExport reports whether tenant has an export of plan planID,
// whatever its status.
func (s *store) tenantHasExport(ctx context.Context, tenant, planID string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM bale_exports WHERE tenant = ? AND plan_id = ?`), tenant, planID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up exports of %s: %w", planID, err)
	}
	return n > 0, nil
}

// pendingExports returns the plan's exports not finished yet.
func (s *store) pendingExports(ctx context.Context, planID string) ([]exportRecord, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+exportCols+` FROM bale_exports WHERE plan_id = ? AND status IN (?, ?) ORDER BY created_at`),
		planID, statusQueued, statusRunning)
	if err != nil {
		return nil, fmt.Errorf("list exports of %s: %w", planID, err)
	}
	defer rows.Close()
	var out []exportRecord
	for rows.Next() {
		e, err := scanExport(rows)
		if err != nil {
			return nil, fmt.Errorf("list exports of %s: %w", planID, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// startExports moves the plan's queued exports to running and returns them.
func (s *store) startExports(ctx context.Context, planID string) ([]exportRecord, error) {
	pend, err := s.pendingExports(ctx, planID)
	if err != nil {
		return nil, err
	}
	var started []exportRecord
	for _, e := range pend {
		if e.Status != statusQueued {
			continue
		}
		res, err := s.db.ExecContext(ctx, s.q(`UPDATE bale_exports SET status = ? WHERE export_id = ? AND status = ?`), statusRunning, e.ID, statusQueued)
		if err != nil {
			return nil, fmt.Errorf("start export %s: %w", e.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			e.Status = statusRunning
			started = append(started, e)
		}
	}
	return started, nil
}

// finishExport records e's outcome, once: it reports false when another
// worker finished it first.
func (s *store) finishExport(ctx context.Context, e exportRecord) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE bale_exports SET status = ?, reason = ?, file = ?, artifact_sha256 = ?, root_hash = ?,
		size = ?, build_time = ?, finished_at = ? WHERE export_id = ? AND status IN (?, ?)`),
		e.Status, e.Reason, e.File, e.ArtifactSHA256, e.RootHash, e.Size, e.BuildTime.Unix(), e.Finished.UnixNano(), e.ID,
		statusQueued, statusRunning)
	if err != nil {
		return false, fmt.Errorf("finish export %s: %w", e.ID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// buildFile is one file of a release build, as the status lists it.
type buildFile struct {
	Name   string
	Kind   string
	Size   int64
	SHA256 string
}

// putBuildFiles records the files of plan planID's release build.
func (s *store) putBuildFiles(ctx context.Context, planID string, files []buildFile) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record files of %s: %w", planID, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM bale_build_files WHERE plan_id = ?`), planID); err != nil {
		return fmt.Errorf("record files of %s: %w", planID, err)
	}
	for _, f := range files {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO bale_build_files (plan_id, name, kind, size, sha256) VALUES (?, ?, ?, ?, ?)`),
			planID, f.Name, f.Kind, f.Size, f.SHA256); err != nil {
			return fmt.Errorf("record file %s of %s: %w", f.Name, planID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record files of %s: %w", planID, err)
	}
	return nil
}

// buildFiles returns the files of plan planID's release build, by name.
func (s *store) buildFiles(ctx context.Context, planID string) ([]buildFile, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT name, kind, size, sha256 FROM bale_build_files WHERE plan_id = ? ORDER BY name`), planID)
	if err != nil {
		return nil, fmt.Errorf("list files of %s: %w", planID, err)
	}
	defer rows.Close()
	var out []buildFile
	for rows.Next() {
		var f buildFile
		if err := rows.Scan(&f.Name, &f.Kind, &f.Size, &f.SHA256); err != nil {
			return nil, fmt.Errorf("list files of %s: %w", planID, err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// queueDepth counts build jobs waiting or running.
func (s *store) queueDepth(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM river_job WHERE state IN (?, ?, ?, ?)`),
		"available", "running", "retryable", "scheduled").Scan(&n)
	return n, err
}
