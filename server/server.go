// Package server is bale's export API (bale serve): clients stage bootstrap
// pack builds by spec name or plan id, poll their status and download the
// packs, under bearer tokens scoped to a tenant.
//
// Builds are River jobs, in SQLite inside the data directory by default or
// in Postgres; one job per plan, so one plan is never built twice at once.
// A job interrupted by a shutdown runs again; one whose server died is
// taken over by a server sharing the database once its lease runs out
// (see lease.go), or on SQLite at the next start. Every build
// goes through bale's content-addressed cache in the data directory, so two
// exports of one plan build once; each export's files are laid out as the
// bootstrap pack contract's handoff says:
//
//	DATA/exports/{tenant}/{exportId}/bootstrap-pack-v1.tar
//	DATA/exports/{tenant}/{exportId}/bootstrap-pack-v1.tar.sha256
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/sync/singleflight"

	"github.com/bale-build/bale/executor/cas"
	"github.com/bale-build/bale/server/auth"
	"github.com/bale-build/bale/sign"
	"github.com/bale-build/bale/source"
)

// Config configures a Server. The zero value of every field but DataDir
// and Tokens or JWT is a working default.
type Config struct {
	// DataDir holds the SQLite job store (unless Database is set), the
	// content-addressed cache, plans, builds and exports.
	DataDir string
	// Database is empty for SQLite in DataDir, or a postgres:// URL.
	Database string
	// Specs are the spec directories clients may name, by their base name;
	// "DIR/..." names every spec directory below DIR.
	Specs []string
	// Tokens authenticates requests with tokens from the token file, and
	// JWT those in the form of a JWT; either may be nil, not both.
	Tokens *auth.Tokens
	JWT    *auth.JWT
	// TenantBuilds bounds each tenant's builds queued or running at once;
	// a POST that joins a build already queued, or finds its plan built,
	// does not count. 0 means 4.
	TenantBuilds int
	// Resolve configures planning and fetching (Root is set per spec).
	Resolve source.Options
	// Jobs bounds the steps one build runs at once; 0 means GOMAXPROCS.
	Jobs int
	// MaxBuilds bounds builds running at once; 0 means 2.
	MaxBuilds int
	// MaxBody caps request bodies; 0 means 1 MiB.
	MaxBody int64
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are the HTTP server's;
	// zero means 10s, 1m and 2m.
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
	// Rate is each tenant's sustained request rate per second and Burst
	// its bucket; 0 means 50 and 100.
	Rate  float64
	Burst int
	// TenantDownloads bounds each tenant's downloads open at once; past
	// it a download is 429. 0 means 16.
	TenantDownloads int
	// DownloadMinRate and DownloadWindow cut a download that moves fewer
	// than DownloadMinRate bytes a second over DownloadWindow: a client
	// reading a trickle would hold a socket and a file for hours. 0 means
	// 1 KiB a second over 30s, the rule bale's own client applies.
	DownloadMinRate int64
	DownloadWindow  time.Duration
	// RetainAge is how long a finished export is kept, and RetainCount
	// how many finished exports each tenant keeps, the newest (see
	// retention.go); 0 means 720h (30 days) and 1000, and a negative
	// value no bound.
	RetainAge   time.Duration
	RetainCount int
	// RetainEvery is how often retention runs; 0 means 10m.
	RetainEvery time.Duration
	// PlanCacheTTL is how long a served spec's plan with an input
	// resolved by a registry or a chart repository (a tag, a version) is
	// reused before it is resolved again; a plan of local and
	// digest-pinned inputs is reused while its files stay as they were.
	// 0 means 5m; a negative value plans such specs every time.
	PlanCacheTTL time.Duration
	// TenantQuota bounds the bytes each tenant's exports hold (each
	// plan's files once); past it a POST of a plan the tenant does not
	// hold is 507. 0 means 100 GiB, a negative value no quota.
	TenantQuota int64
	// DrainTimeout bounds how long a shutdown waits for running builds
	// before cancelling them (they run again: at once on another server
	// sharing a Postgres database, else at the next start); 0 means 30s.
	DrainTimeout time.Duration
	// BuildLease is how long a build's server may go without renewing
	// its lease (it renews it every third of that) before another server
	// sharing the database takes the build over; 0 means 1m.
	BuildLease time.Duration
	// JobRetention is how long River keeps a finished build job before
	// its cleaner deletes it; 0 means 24h.
	JobRetention time.Duration
	// ReconcileEvery is how often exports waiting with no build job get
	// one (see reconcile); 0 means 2s.
	ReconcileEvery time.Duration
	// Logger receives one JSON line per request and per job transition;
	// nil means slog.Default().
	Logger *slog.Logger
	// SigningKey is the release signing key, as bale build's COSIGN_KEY
	// (sign.Locate): a cosign private key file, or env://VAR holding its
	// PEM text or its path. It is read and opened with COSIGN_PASSWORD
	// when the server starts, and every release build signs with it,
	// whatever the spec's signing.key says. Empty means release exports
	// are refused unless COSIGN_ALLOW_DEV_KEY=1 permits a spec's
	// development key.
	SigningKey string
	// InlineCommand runs an inline spec's evaluation in a child process:
	// the bale binary and its arguments ("bale serve eval-inline"), which
	// read the spec on standard input and print its plan (EvalInline).
	// Empty refuses inline specs.
	InlineCommand []string
	// InlineTimeout bounds an inline spec's evaluation and planning, and
	// InlineMemory the memory its child may hold meanwhile (its evaluator
	// stops at that much heap, the kernel at that much address space plus
	// a headroom: LimitInlineMemory); 0 means 30s and 512 MiB.
	InlineTimeout time.Duration
	InlineMemory  int64
	// InlineSlots bounds the inline evaluations running at once, each a
	// child that may hold InlineMemory: without it, a burst of distinct
	// inline specs is a burst of children. 0 means 2. One tenant may
	// hold at most InlineSlots-1 of them (1 when InlineSlots is 1), so
	// another tenant always finds one: a tenant's slow specs wait for
	// its own share.
	InlineSlots int
	// InlineReleases lets clients export releases of inline specs (or of
	// plans made from them): each is signed with SigningKey, so any
	// holder of export:write gets the organisation's signature on remote
	// content of its choosing. Off by default.
	InlineReleases bool
	// InlineAllowHosts lists the registry, chart repository and URL hosts
	// ("host" or "host:port") an inline spec may reach although they are
	// not public addresses. Every other internal address (loopback,
	// private, link-local, …) is refused to inline specs, when they are
	// planned and when their plans are built: a client must not make the
	// server fetch, and hand over, what only the server can reach. Specs
	// the server was started with are not restricted.
	InlineAllowHosts []string
	// inlineWait, if set, starts a wait for an inline slot in place of
	// inlineSlotWait's timer: tests decide when a wait is over.
	inlineWait func() <-chan time.Time
	// Now is the clock of the server's own limits and caches (the
	// metrics' gathering, downloads' progress, retention); nil means
	// time.Now. Tests move it instead of waiting.
	Now func() time.Time
	// Getenv reads COSIGN_PASSWORD, COSIGN_ALLOW_DEV_KEY and the go
	// command's locations for release builds; nil means os.Getenv.
	Getenv func(string) string
}

// The modes of what the server writes in its data directory: its user's
// alone.
const (
	privateDir  os.FileMode = 0o700
	privateFile os.FileMode = 0o600
)

// Server is the export API.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     *store
	queue     queue
	cache     *cas.Dir
	specs     map[string]specDir
	metrics   *metrics
	limits    *limiter
	downloads *downloads
	router    *mux.Router
	closeDB   func() error
	// signingKey is the release key, opened at start, or nil.
	signingKey *sign.Key
	// instance names this process in the build leases it holds.
	instance string

	// planning shares one planning of a spec among concurrent requests;
	// plans keeps each served spec's plan while it stays valid.
	planning singleflight.Group
	plans    planCache
	// admit serialises the build limit's count and the queueing of a build.
	admit sync.Mutex
	// finishes wakes status requests waiting for their export
	// (Prefer: wait), and stopping, closed when Serve begins to shut
	// down, ends their waits.
	finishes finishes
	stopping chan struct{}
	// link hard-links a build's file into an export; os.Link but in
	// tests, which make it fail as a file system past its link limit does.
	link func(oldname, newname string) error
	// inlineSlots holds one token per inline evaluation running.
	inlineSlots chan struct{}
	// inlineMu guards inlineShares: per tenant, one token per inline
	// request of the tenant holding or waiting for an evaluation.
	inlineMu     sync.Mutex
	inlineShares map[string]chan struct{}
}

// New opens the data directory and the job store and returns a Server
// whose jobs are not yet running (Serve starts them).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("no data directory")
	}
	if cfg.Tokens == nil && cfg.JWT == nil {
		return nil, errors.New("no token file and no JWKS: every request would be refused")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.ReadHeaderTimeout, 10*time.Second)
	def(&cfg.ReadTimeout, time.Minute)
	def(&cfg.IdleTimeout, 2*time.Minute)
	def(&cfg.DrainTimeout, 30*time.Second)
	def(&cfg.BuildLease, time.Minute)
	def(&cfg.JobRetention, 24*time.Hour)
	if cfg.BuildLease < time.Second {
		return nil, fmt.Errorf("build lease %s: at least 1s (it is renewed every third of it)", cfg.BuildLease)
	}
	def(&cfg.ReconcileEvery, 2*time.Second)
	def(&cfg.InlineTimeout, defaultInlineTimeout)
	if cfg.InlineMemory <= 0 {
		cfg.InlineMemory = defaultInlineMemory
	}
	if cfg.InlineSlots <= 0 {
		cfg.InlineSlots = 2
	}
	if cfg.MaxBuilds <= 0 {
		cfg.MaxBuilds = 2
	}
	if cfg.TenantBuilds <= 0 {
		cfg.TenantBuilds = 4
	}
	if cfg.TenantDownloads <= 0 {
		cfg.TenantDownloads = 16
	}
	if cfg.DownloadMinRate <= 0 {
		cfg.DownloadMinRate = 1 << 10
	}
	def(&cfg.DownloadWindow, 30*time.Second)
	def(&cfg.RetainAge, 30*24*time.Hour)
	def(&cfg.RetainEvery, 10*time.Minute)
	def(&cfg.PlanCacheTTL, 5*time.Minute)
	if cfg.RetainCount == 0 {
		cfg.RetainCount = 1000
	}
	if cfg.TenantQuota == 0 {
		cfg.TenantQuota = 100 << 30
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 50
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	cfg.DataDir = abs
	// The data directory is the server's user's alone: it holds tenants'
	// exports and plans, and the job store. A directory an older version
	// made world-readable is made private too.
	for _, d := range []string{"", "cache", "plans", "builds", "exports", "inline", "tmp"} {
		dir := filepath.Join(cfg.DataDir, d)
		if err := os.MkdirAll(dir, privateDir); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		if err := os.Chmod(dir, privateDir); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, link: os.Link, stopping: make(chan struct{}), inlineSlots: make(chan struct{}, cfg.InlineSlots),
		inlineShares: map[string]chan struct{}{}, instance: newInstanceID()}
	if s.signingKey, err = loadSigningKey(cfg.SigningKey, cfg.Getenv); err != nil {
		return nil, err
	}
	if s.specs, err = findSpecs(cfg.Specs); err != nil {
		return nil, err
	}
	if s.cache, err = cas.Open(filepath.Join(cfg.DataDir, "cache")); err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	if s.closeDB, err = s.openStore(ctx); err != nil {
		return nil, err
	}
	if err := s.bindDataDir(ctx); err != nil {
		s.closeDB()
		return nil, err
	}
	if err := s.sweepBuilds(ctx); err != nil {
		s.closeDB()
		return nil, err
	}
	s.metrics = newMetrics(s)
	s.limits = newLimiter(cfg.Rate, cfg.Burst)
	s.downloads = &downloads{now: cfg.Now, minRate: cfg.DownloadMinRate, window: cfg.DownloadWindow, perTenant: cfg.TenantDownloads,
		open: s.metrics.downloadsOpen, cut: s.metrics.downloadsCut, byTenant: map[string]int{}, active: map[*download]struct{}{}}
	s.router = s.routes()
	return s, nil
}

// loadSigningKey opens the release key ref names (sign.Locate: a file,
// env://VAR holding the key's PEM text or its path, or PEM text) with
// COSIGN_PASSWORD, so a wrong key or password stops the server now rather
// than failing every release build later. A development key (the
// repository's, known by its public key) is refused without
// COSIGN_ALLOW_DEV_KEY=1.
func loadSigningKey(ref string, getenv func(string) string) (*sign.Key, error) {
	if ref == "" {
		return nil, nil
	}
	l, err := sign.Locate(ref, getenv)
	if err != nil {
		return nil, fmt.Errorf("--signing-key: %w", err)
	}
	if l == nil {
		return nil, fmt.Errorf("--signing-key %s: the variable is unset or empty", ref)
	}
	k, err := l.Open([]byte(getenv(sign.EnvPassword)), nil)
	if err != nil {
		return nil, fmt.Errorf("--signing-key %s: %w", ref, err)
	}
	if k.Dev() && getenv(sign.EnvAllowDevKey) != "1" {
		return nil, fmt.Errorf("--signing-key %s is the repository's development key: its private half is public, so it signs only with %s=1, and its kits say so", ref, sign.EnvAllowDevKey)
	}
	return k, nil
}

// canSign reports whether a release build has a key: the server's, or a
// spec's development key that COSIGN_ALLOW_DEV_KEY=1 permits.
func (s *Server) canSign() bool {
	return s.signingKey != nil || s.cfg.Getenv(sign.EnvAllowDevKey) == "1"
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.middleware(s.router) }

// Serve starts the build jobs and serves the API on ln until ctx ends;
// then it stops accepting requests, lets running requests finish, waits up
// to DrainTimeout for running builds and cancels the rest, which run again
// (on a server sharing the database, or at the next start). It closes the
// store before it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.closeDB()
	if err := s.queue.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start jobs: %w", err)
	}
	// The background loops end, and are waited for, before the store
	// closes: one still writing would hold SQLite's lock past Serve.
	rctx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	defer loops.Wait()
	defer stopLoops()
	loops.Go(func() { s.reconcileLoop(rctx, s.cfg.ReconcileEvery) })
	loops.Go(func() {
		s.every(rctx, s.cfg.DownloadWindow/4, "downloads", func() error { s.downloads.sweep(); return nil })
	})
	loops.Go(func() { s.retentionLoop(rctx, s.cfg.RetainEvery) })
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "specs", len(s.specs))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.stopJobs()
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "drainTimeout", s.cfg.DrainTimeout.String())
	close(s.stopping)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	herr := hs.Shutdown(sctx)
	s.stopJobs()
	if herr != nil && !errors.Is(herr, context.DeadlineExceeded) {
		return herr
	}
	return nil
}

// stopJobs lets running builds finish within DrainTimeout, then cancels
// them: River records them as retryable, so they run again, on a server
// sharing the database or at the next start.
func (s *Server) stopJobs() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := s.queue.Stop(ctx); err != nil {
		s.log.Warn("builds still running at the drain deadline; cancelling them, they run again on a server sharing the database or at the next start")
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = s.queue.StopAndCancel(cctx)
	}
}

// Close closes the store of a Server that never served.
func (s *Server) Close() error { return s.closeDB() }
