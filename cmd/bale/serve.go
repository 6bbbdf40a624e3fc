package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/server"
	"github.com/bale-build/bale/server/auth"
	"github.com/bale-build/bale/source"
)

func newServe() *cobra.Command {
	var (
		cfg      server.Config
		addr     string
		tokens   string
		insecure []string
		offline  bool
		jwtCfg   auth.JWTConfig
		// Retention's flags, whose 0 is "no bound".
		retain      = keepFor(30 * 24 * time.Hour)
		retainCount = 1000
		quota       = int64(100 << 30)
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the export API: build bootstrap packs and release kits over HTTP",
		Long: `serve runs the export API. Clients POST a spec name (one of --specs) or a plan
id, poll the export's status and download the pack and its .sha256 file, or a
release kit's files one by one. Release kits are signed with --signing-key
(a cosign key file or env://VAR, COSIGN_PASSWORD its password); a spec's
development key only with COSIGN_ALLOW_DEV_KEY=1, as bale build.

Everything lives in one data directory (--data): the job store (SQLite), the
content-addressed cache, plans, builds and exports laid out as
exports/{tenant}/{exportId}/bootstrap-pack-v1.tar. With --database
postgres://… the jobs and records move to Postgres; files stay in --data,
which every server sharing the database must share (one with a data
directory of its own is refused at start).

Requests carry a bearer token from the token file (--tokens, default
DATA/tokens.json). On the first start without one, serve makes a token for
tenant "default" with both scopes, prints it once on standard error and
writes only its sha256 to the file; "bale serve token add" makes more.
With --jwks, JWTs (ES256, EdDSA or RS256) signed by a key of the JWKS are
accepted instead, their iss and aud checked against --jwt-issuer and
--jwt-audience, the tenant and scopes taken from claims; give --tokens
too to accept both (a token in the form of a JWT is checked as one).

Each tenant may have --tenant-builds builds queued or running; a POST
that would start one more is 429 (joining a build, or a plan built
already, does not count once the tenant has an export of the plan: a
tenant's first export of a plan is admitted and answered as a new
build's, whoever built it). Each tenant may have --tenant-downloads
downloads open; one more is 429. A download that moves less than
--download-min-rate a second over --download-window is cut.

A finished export is removed --retain after it finished, or once its
tenant has --retain-count newer ones (DELETE removes one at once); builds
and plans no export refers to go after --retain too. A tenant whose
exports hold --tenant-quota bytes cannot add a plan it does not hold (507)
until it deletes exports or retention removes them.

SIGTERM and SIGINT stop accepting requests, let running builds finish
within --drain-timeout and cancel the rest: they run again on a server
sharing the database, or at the next start. A running build holds a lease
its server renews every third of --build-lease; should the server die, a
server sharing the Postgres database takes the build over once the lease
runs out (on SQLite, the next start does). Only builds whose lease is live
count against --tenant-builds.`,
		Example: `  bale serve --specs specs/... --data /var/lib/bale
  bale serve --specs specs/... --jwks https://idp.example/.well-known/jwks.json --jwt-issuer https://idp.example --jwt-audience bale
  bale serve --specs specs/airgap --database postgres://bale@db/bale --addr :8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			if jwtCfg.JWKS != "" {
				jwtCfg.Logger = log
				j, err := auth.NewJWT(ctx, jwtCfg)
				if err != nil {
					return err
				}
				cfg.JWT = j
			} else if jwtCfg.Issuer != "" || jwtCfg.Audience != "" {
				return errors.New("--jwt-issuer and --jwt-audience need --jwks")
			}
			// With JWTs alone no token file is made; with --tokens both work.
			if tokens == "" && cfg.JWT == nil {
				tokens = filepath.Join(cfg.DataDir, "tokens.json")
				if err := firstToken(cmd, tokens); err != nil {
					return err
				}
			}
			if tokens != "" {
				t, err := auth.Load(tokens)
				if err != nil {
					return err
				}
				cfg.Tokens = t
			}
			cfg.Logger = log
			// Inline specs are evaluated by this binary in a child
			// process the server can kill.
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the bale binary for inline specs: %w", err)
			}
			cfg.InlineCommand = []string{exe, "serve", "eval-inline"}
			cfg.Resolve = source.Options{Insecure: insecure, Offline: offline}
			// The flags' 0 is "no bound", the server's a negative value.
			cfg.RetainAge, cfg.RetainCount, cfg.TenantQuota = time.Duration(retain), retainCount, quota
			if retainCount == 0 {
				cfg.RetainCount = -1
			}
			if quota == 0 {
				cfg.TenantQuota = -1
			}
			if cfg.PlanCacheTTL == 0 {
				cfg.PlanCacheTTL = -1
			}
			s, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				s.Close()
				return err
			}
			return s.Serve(ctx, ln)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&cfg.DataDir, "data", "bale-data", "data directory: job store, cache, plans, builds, exports")
	fs.StringVar(&cfg.Database, "database", "", "postgres://… to keep jobs and records in Postgres instead of SQLite in --data")
	fs.StringSliceVar(&cfg.Specs, "specs", nil, "spec directories clients may name by base name; DIR/... for every spec below DIR; repeatable")
	fs.StringVar(&tokens, "tokens", "", "token file (default DATA/tokens.json, made with one token on first start; none with --jwks)")
	fs.StringVar(&jwtCfg.JWKS, "jwks", "", "accept JWTs signed by a key of this JWKS: a file, or an https:// URL (fetched again as keys rotate)")
	fs.StringVar(&jwtCfg.Issuer, "jwt-issuer", "", "the iss every JWT must carry (with --jwks)")
	fs.StringVar(&jwtCfg.Audience, "jwt-audience", "", "the aud every JWT must carry (with --jwks)")
	fs.StringVar(&jwtCfg.TenantClaim, "jwt-tenant-claim", "tenant", "the JWT claim naming the tenant")
	fs.StringSliceVar(&jwtCfg.ScopeClaims, "jwt-scope-claim", []string{"scope", "scp"}, "the JWT claims holding the scopes, first present wins: a space-separated string or an array")
	fs.IntVar(&cfg.MaxBuilds, "max-builds", 2, "builds running at once")
	fs.IntVar(&cfg.TenantBuilds, "tenant-builds", 4, "builds one tenant may have queued or running at once; past it a POST is 429")
	fs.IntVar(&cfg.TenantDownloads, "tenant-downloads", 16, "downloads one tenant may have open at once; past it a download is 429")
	cfg.DownloadMinRate = 1 << 10
	fs.Var((*byteSize)(&cfg.DownloadMinRate), "download-min-rate", "cut a download moving less than this per second (B, KiB, MiB…) over --download-window")
	fs.DurationVar(&cfg.DownloadWindow, "download-window", 30*time.Second, "the window --download-min-rate is measured over")
	fs.DurationVar(&cfg.PlanCacheTTL, "plan-cache-ttl", 5*time.Minute, "how long a served spec's plan with images or charts resolved by tag or version is reused before they are resolved again (a plan of local and pinned inputs is reused while its files are unchanged); 0 resolves them every time")
	fs.Var(&retain, "retain", "remove a finished export this long after it finished (30d, 12h); 0 keeps exports for good")
	fs.IntVar(&retainCount, "retain-count", retainCount, "finished exports each tenant keeps, the newest; 0 for no bound")
	fs.Var((*byteSize)(&quota), "tenant-quota", "bytes one tenant's exports may hold (each plan's files once; B, KiB, MiB, GiB…); past it a POST of a new plan is 507; 0 for no quota")
	fs.IntVar(&cfg.Jobs, "jobs", 0, "steps one build runs at once (default GOMAXPROCS)")
	fs.Float64Var(&cfg.Rate, "rate", 50, "requests per second per tenant, sustained")
	fs.IntVar(&cfg.Burst, "burst", 100, "requests per tenant in a burst")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long running builds may finish before they are cancelled and re-queued")
	fs.DurationVar(&cfg.BuildLease, "build-lease", time.Minute, "a build's server renews its lease on the build every third of this; a build whose lease runs out (its server died) is taken over by another server sharing the database")
	fs.DurationVar(&cfg.JobRetention, "job-retention", 24*time.Hour, "how long finished build jobs stay in the job store before River's cleaner deletes them")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "a client must send its request headers within this")
	fs.BoolVar(&offline, "offline", false, "refuse any network access when planning and building")
	fs.DurationVar(&cfg.InlineTimeout, "inline-timeout", 30*time.Second, "an inline spec's evaluation and planning, in a child process, is stopped after this")
	cfg.InlineMemory = 512 << 20
	fs.BoolVar(&cfg.InlineReleases, "inline-releases", false, "let clients export releases of inline specs, signed with --signing-key (off: any holder of export:write could get your signature on remote content of its choosing)")
	fs.IntVar(&cfg.InlineSlots, "inline-slots", 2, "inline specs evaluated at once (each a child process that may use --inline-memory), one tenant's at most all but one; one more waits 5s, then gets 503")
	fs.Var((*byteSize)(&cfg.InlineMemory), "inline-memory", "an inline spec's child process (evaluation and planning) is stopped past this much memory, enforced by the kernel (B, KiB, MiB, GiB…)")
	fs.StringVar(&cfg.SigningKey, "signing-key", "", "release signing key: a cosign private key file or env://VAR, opened with COSIGN_PASSWORD at start; without it release exports need COSIGN_ALLOW_DEV_KEY=1 and a spec's development key")
	fs.StringSliceVar(&insecure, "insecure-registry", nil, "registry HOST[:PORT] reachable over plain HTTP (loopback always is); repeatable")
	fs.StringSliceVar(&cfg.InlineAllowHosts, "inline-allow-host", nil, "HOST[:PORT] an inline spec may reach although it is not a public address (inline specs reach no loopback, private or link-local address otherwise; served specs are not limited); repeatable")
	cmd.AddCommand(newServeToken(), newEvalInline())
	return cmd
}

// keepFor is --retain: an age as parseAge reads it ("30d", "12h"), or
// "0" for no bound, which the server takes as a negative age.
type keepFor time.Duration

func (k *keepFor) Set(v string) error {
	if strings.TrimSpace(v) == "0" {
		*k = keepFor(-1)
		return nil
	}
	d, err := parseAge(v)
	if err != nil {
		return err
	}
	*k = keepFor(d)
	return nil
}

func (k *keepFor) String() string {
	d := time.Duration(*k)
	switch {
	case d < 0:
		return "0"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (k *keepFor) Type() string { return "age" }

// firstToken makes the token file at path with one token for tenant
// "default" if there is none, printing the token once.
func firstToken(cmd *cobra.Command, path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tok, e, err := auth.NewToken("default", []string{auth.ScopeRead, auth.ScopeWrite}, "first start")
	if err != nil {
		return err
	}
	if err := auth.Add(path, e); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "bale serve: no token file; made %s with one token for tenant \"default\" (export:read, export:write).\nThe token, shown this once:\n\n  %s\n\n", path, tok)
	return nil
}

func newServeToken() *cobra.Command {
	tok := &cobra.Command{Use: "token", Short: "Manage the export API's token file"}
	var (
		file, tenant, name string
		scopes             []string
	)
	add := &cobra.Command{
		Use:   "add",
		Short: "Make a token and add its sha256 to the token file",
		Long: `add makes a random token for a tenant with the given scopes, appends its
sha256 (never the token) to the token file and prints the token once on
standard output. The running server reads the file at start.`,
		Example: `  bale serve token add --tokens bale-data/tokens.json --tenant acme --scope export:read --scope export:write --name ci`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, e, err := auth.NewToken(tenant, scopes, name)
			if err != nil {
				return err
			}
			if err := auth.Add(file, e); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t)
			return nil
		},
	}
	fs := add.Flags()
	fs.StringVar(&file, "tokens", "bale-data/tokens.json", "token file")
	fs.StringVar(&tenant, "tenant", "", "tenant the token acts for (lowercase letters, digits, - and _)")
	fs.StringSliceVar(&scopes, "scope", []string{auth.ScopeRead}, "scope to grant: export:read, export:write; repeatable")
	fs.StringVar(&name, "name", "", "a label for people: who holds the token")
	_ = add.MarkFlagRequired("tenant")
	tok.AddCommand(add)
	return tok
}
