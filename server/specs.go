package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner"
	"github.com/bale-build/bale/planner/spec"
)

// specDir is a spec the server was started with.
type specDir struct {
	dir  string // absolute
	root string // its workspace root
}

// specNameRE is a spec name as clients send it.
var specNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// findSpecs maps each spec directory's base name to it. "DIR/..." adds
// every directory below DIR holding .cue files.
func findSpecs(args []string) (map[string]specDir, error) {
	out := map[string]specDir{}
	add := func(dir string) error {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("--specs %s: %w", dir, err)
		}
		name := filepath.Base(abs)
		if !specNameRE.MatchString(name) {
			return fmt.Errorf("--specs %s: %q is not a usable spec name", dir, name)
		}
		if prev, dup := out[name]; dup && prev.dir != abs {
			return fmt.Errorf("--specs: two specs named %q (%s and %s)", name, prev.dir, abs)
		}
		out[name] = specDir{dir: abs, root: planner.FindRoot(abs)}
		return nil
	}
	for _, a := range args {
		base, many := strings.CutSuffix(a, "/...")
		if !many {
			if fi, err := os.Stat(a); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("--specs %s: not a directory", a)
			}
			if err := add(a); err != nil {
				return nil, err
			}
			continue
		}
		err := filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != base && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") || d.Name() == "cue.mod") {
				return filepath.SkipDir
			}
			if d.IsDir() {
				if m, _ := filepath.Glob(filepath.Join(p, "*.cue")); len(m) > 0 {
					return add(p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("--specs %s: %w", a, err)
		}
	}
	return out, nil
}

// specError is a spec that failed to plan; its message names positions
// relative to the spec's workspace root, never the server's paths.
type specError struct{ msg string }

func (e *specError) Error() string { return e.msg }

// planned is a plan the server stored.
type planned struct {
	rec planRecord
	sp  *plan.Sealed
}

// planCost is what planning a spec takes from its tenant's rate limit,
// in requests: a planning costs tens of milliseconds of CPU, a request a
// fraction of one, and a tenant within --rate must not keep cores busy
// planning.
const planCost = 10

// chargePlanning takes a planning's cost from tenant's rate limit, or
// returns the rate-limited problem.
func (s *Server) chargePlanning(tenant string) error {
	if wait, ok := s.limits.take(tenant, planCost); !ok {
		return &apiError{typ: probRateLimited, retryAfter: wait,
			detail: fmt.Sprintf("planning a spec costs %d requests of this tenant's rate; retry after the number of seconds in Retry-After", planCost)}
	}
	return nil
}

// planSpec returns the named spec's plan for tenant, stored: the plan
// kept from an earlier planning while nothing it depends on has changed
// (see plancache.go), else a new planning, charged to tenant's rate
// limit. Concurrent requests for one spec share one planning.
func (s *Server) planSpec(ctx context.Context, tenant, name string) (*planned, error) {
	sd, ok := s.specs[name]
	if !ok {
		return nil, errNotFound
	}
	if pl, ok, err := s.cachedPlan(name); ok || err != nil {
		return pl, err
	}
	if err := s.chargePlanning(tenant); err != nil {
		return nil, err
	}
	v, err, _ := s.planning.Do(name, func() (any, error) {
		// A planning that ended while this request waited for the
		// singleflight's lock is as good as its own.
		if pl, ok, err := s.cachedPlan(name); ok || err != nil {
			return pl, err
		}
		// Not the first caller's context: its client going away must not
		// fail the others sharing this planning.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		started, now := time.Now(), s.cfg.Now()
		pl, sources, err := s.planDir(ctx, name, sd)
		s.metrics.plannings.WithLabelValues("planned").Inc()
		if err != nil {
			s.plans.put(name, nil)
			return nil, err
		}
		deps, trusted, err := planDeps(sources, pl.sp, sd.root, started)
		if err != nil || !trusted {
			s.plans.put(name, nil)
			return pl, nil
		}
		cp := &cachedPlan{pl: pl, deps: deps}
		for _, in := range pl.sp.Plan().Inputs {
			if remotelyResolved(in) {
				if s.cfg.PlanCacheTTL < 0 {
					s.plans.put(name, nil)
					return pl, nil
				}
				cp.expires = now.Add(s.cfg.PlanCacheTTL)
				break
			}
		}
		s.plans.put(name, cp)
		return pl, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*planned), nil
}

// cachedPlan returns the kept plan of spec name when nothing it depends
// on has changed, its file stored again if retention removed it.
func (s *Server) cachedPlan(name string) (*planned, bool, error) {
	cp := s.plans.get(name)
	if cp == nil || !cp.fresh(s.cfg.Now()) {
		return nil, false, nil
	}
	if _, err := os.Stat(s.planPath(cp.pl.rec.ID)); err != nil {
		if err := s.writePlan(cp.pl.rec.ID, cp.pl.sp.Bytes()); err != nil {
			return nil, false, err
		}
	}
	s.metrics.plannings.WithLabelValues("cached").Inc()
	return cp.pl, true, nil
}

// planDir plans the spec in sd and stores the plan; it returns the plan
// and what the spec's loading read (spec.Instance.Sources).
func (s *Server) planDir(ctx context.Context, name string, sd specDir) (*planned, []string, error) {
	insts, diags, err := spec.Load(ctx, []string{sd.dir}, spec.Options{Root: sd.root, WorkDir: sd.root})
	if err != nil {
		return nil, nil, &specError{msg: s.scrub(fmt.Sprintf("load spec %s: %v", name, err))}
	}
	if diags.HasErrors() {
		var b strings.Builder
		for _, d := range diags {
			b.WriteString(d.String())
			b.WriteByte('\n')
		}
		return nil, nil, &specError{msg: s.scrub(strings.TrimSpace(b.String()))}
	}
	if len(insts) != 1 {
		return nil, nil, &specError{msg: fmt.Sprintf("spec %s: %d packages, want one", name, len(insts))}
	}
	sp, _, err := planner.PlanInstance(ctx, insts[0], s.cfg.Resolve, planner.Options{Root: sd.root, Offline: s.cfg.Resolve.Offline})
	if err != nil {
		return nil, nil, &specError{msg: s.scrub(fmt.Sprintf("plan spec %s: %v", name, err))}
	}
	rec, err := planFacts(sp, sd.root)
	if err != nil {
		return nil, nil, err
	}
	rec.Spec = name
	if err := s.writePlan(rec.ID, sp.Bytes()); err != nil {
		return nil, nil, err
	}
	return &planned{rec: rec, sp: sp}, insts[0].Sources(), nil
}

// planFacts reads what the server records about plan sp.
func planFacts(sp *plan.Sealed, root string) (planRecord, error) {
	p, id := sp.Plan(), sp.ID()
	rec := planRecord{ID: id, Root: root}
	if len(p.Targets) > 0 {
		rec.Kind = p.Targets[0].Kind
	}
	t, err := time.Parse(time.RFC3339, p.SourceDateEpoch)
	if err != nil {
		return rec, fmt.Errorf("plan %s: sourceDateEpoch %q: %w", id, p.SourceDateEpoch, err)
	}
	rec.BuildTime = t.UTC()
	return rec, nil
}

// buildRoot is the workspace root the build of plan rec reads its local
// inputs from on this server: its spec's, as this server serves it (the
// plan's digests then check that it is the spec that was planned), the
// empty inline root for an inline spec's plan, or the recorded root for a
// plan recorded before plans named their spec.
func (s *Server) buildRoot(rec planRecord) (string, error) {
	switch {
	case rec.PublicOnly:
		return s.inlineRoot(), nil
	case rec.Spec != "":
		sd, ok := s.specs[rec.Spec]
		if !ok {
			return "", fmt.Errorf("plan %s was made from spec %q, which this server does not serve (--specs)", rec.ID, rec.Spec)
		}
		return sd.root, nil
	}
	return rec.Root, nil
}

// planPath is where plan id's bytes are kept.
func (s *Server) planPath(id string) string {
	return filepath.Join(s.cfg.DataDir, "plans", strings.TrimPrefix(id, "sha256:")+".json")
}

func (s *Server) writePlan(id string, b []byte) error {
	path := s.planPath(id)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return os.Chmod(path, privateFile)
	}
	if err := atomicfile.WriteFile(path, b); err != nil {
		return fmt.Errorf("store plan %s: %w", id, err)
	}
	// A tenant's plan is its own: the plans directory is private, and
	// so is the file.
	if err := os.Chmod(path, privateFile); err != nil {
		return fmt.Errorf("store plan %s: %w", id, err)
	}
	return nil
}

// readPlan reads a stored plan and checks that its bytes are its id.
func (s *Server) readPlan(id string) (*plan.Sealed, error) {
	f, err := os.Open(s.planPath(id))
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", id, err)
	}
	defer f.Close()
	sp, err := plan.Read(f)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", id, err)
	}
	if sp.ID() != id {
		return nil, fmt.Errorf("plan %s: stored bytes have another digest", id)
	}
	return sp, nil
}

// scrub removes the server's own paths from a message meant for a client.
func (s *Server) scrub(msg string) string {
	for _, sd := range s.specs {
		msg = strings.ReplaceAll(msg, sd.root+string(filepath.Separator), "")
		msg = strings.ReplaceAll(msg, sd.root, ".")
	}
	return strings.ReplaceAll(msg, s.cfg.DataDir, "$DATA")
}

var errNotBootstrap = errors.New("not a bootstrap pack plan")
