package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/bale-build/bale/internal/digest"
)

// The service layer: what a POST of an export does, apart from HTTP.
// Each function returns an *apiError for what the client is to be told,
// and any other error for what went wrong inside; writeError maps both.

// stageRequest is one POST of an export: the tenant, the profile its
// route builds, its Idempotency-Key ("" for none) and its body.
type stageRequest struct {
	tenant  string
	profile string
	idemKey string
	body    exportRequest
}

// staged is a POST's outcome: the export, whether it is an earlier POST's
// replayed for the same Idempotency-Key, and the tenant's build slots as
// its admission counted them (nil for a replay found before admission).
type staged struct {
	export   exportRecord
	replayed bool
	builds   *admission
}

// idempotencyKey reads an Idempotency-Key header value: "" for none, else
// 1 to 255 visible ASCII characters, quotes trimmed.
func idempotencyKey(v string) (string, error) {
	key := strings.Trim(v, `"`)
	if v != "" && !idemKeyRE.MatchString(key) {
		return "", problemf(probInvalidIdempotencyKey, "1 to 255 visible ASCII characters")
	}
	return key, nil
}

// checkRequest checks an export request's form for the profile and the
// server's settings, before anything is looked up.
func (s *Server) checkRequest(profile string, req exportRequest) error {
	if n := btoi(req.Spec != "") + btoi(req.PlanID != "") + btoi(req.Inline != ""); n != 1 {
		return problemf(probInvalidRequest, "give exactly one of spec, planId and inline")
	}
	if profile != profileRelease {
		return nil
	}
	if !s.canSign() {
		return problemf(probNoSigningKey, "the server was started without --signing-key, and COSIGN_ALLOW_DEV_KEY=1 does not permit a spec's development key")
	}
	if req.Inline != "" && !s.cfg.InlineReleases {
		return problemf(probInlineReleaseDisabled, inlineReleaseDetail)
	}
	if req.Inline != "" && s.signingKey == nil {
		// An inline spec cannot name a development key (a file).
		return problemf(probNoSigningKey, "an inline release spec is signed only with the server's --signing-key")
	}
	return nil
}

// requestHash identifies a request's body on its route, for the
// Idempotency-Key check: the same body on another route is another
// request.
func requestHash(profile string, req exportRequest) string {
	canon, _ := json.Marshal(req)
	if profile != profileBootstrap {
		canon = append([]byte(profile+"\n"), canon...)
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// stage records an export of the plan the request names and queues its
// build, or lays it out at once from a build already made. A POST with an
// Idempotency-Key used before is the earlier export, replayed.
func (s *Server) stage(ctx context.Context, req stageRequest) (staged, error) {
	if err := s.checkRequest(req.profile, req.body); err != nil {
		return staged{}, err
	}
	reqHash := requestHash(req.profile, req.body)
	if req.idemKey != "" {
		if prev, err := s.store.exportByKey(ctx, req.tenant, req.idemKey); err == nil {
			return replay(prev, reqHash, nil)
		} else if !errors.Is(err, errNotFound) {
			return staged{}, err
		}
	}
	rec, spec, err := s.exportPlan(ctx, req.tenant, req.profile, req.body)
	if err != nil {
		return staged{}, err
	}
	if err := s.checkQuota(ctx, req.tenant, rec.ID); err != nil {
		return staged{}, err
	}
	// A tenant's work is its own: its first export of a plan is answered
	// as a new build's is (admitted within its build limit, queued),
	// whether or not another tenant built the plan already; the build is
	// shared all the same.
	own, err := s.store.tenantHasExport(ctx, req.tenant, rec.ID)
	if err != nil {
		return staged{}, err
	}
	adm, release, err := s.admitBuild(ctx, req.tenant, rec.ID, own)
	if err != nil {
		return staged{}, err
	}
	defer release()
	// From here the export is recorded and its build queued as one: a
	// client hanging up between the two must not leave an export with no
	// build (the reconciler would queue it, past the admission above).
	ctx = context.WithoutCancel(ctx)
	e := exportRecord{ID: newExportID(), Profile: req.profile, Tenant: req.tenant, PlanID: rec.ID, Spec: spec, Status: statusQueued,
		IdemKey: req.idemKey, ReqHash: reqHash, Created: time.Now().UTC(), BuildTime: rec.BuildTime}
	e, inserted, err := s.store.insertExport(ctx, e)
	if err != nil {
		return staged{}, err
	}
	if !inserted {
		return replay(e, reqHash, &adm)
	}
	s.log.Info("export queued", "exportId", e.ID, "profile", e.Profile, "tenant", e.Tenant, "planId", e.PlanID, "requestId", requestIDOf(ctx))
	// A plan built before needs no job: its export is laid out now.
	// Retention may remove the build meanwhile: its export then waits
	// for a build like any other.
	laidOut := false
	if b, err := s.store.build(ctx, rec.ID); err == nil && b.Status == statusSucceeded && s.buildPresent(b) {
		f, err := s.finish(ctx, e, b)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return staged{}, err
		}
		laidOut = err == nil
		if own && laidOut {
			e = f // else the answer is the export as recorded: queued
		}
	}
	if !laidOut {
		// A build of the plan whose server died is not joined (admitBuild
		// did not count it): the job queued here replaces it.
		if !adm.joins {
			if err := s.reclaimBuilds(ctx, rec.ID, false); err != nil {
				return staged{}, err
			}
		}
		if _, err := s.queue.Insert(ctx, buildArgs{PlanID: rec.ID}, buildOpts(req.tenant, 0)); err != nil {
			return staged{}, fmt.Errorf("queue build of %s: %w", rec.ID, err)
		}
	}
	return staged{export: e, builds: &adm}, nil
}

// replay is the answer to a POST whose Idempotency-Key was used before:
// the same export for the same body, 422 for another.
func replay(prev exportRecord, reqHash string, adm *admission) (staged, error) {
	if prev.ReqHash != reqHash {
		return staged{}, problemf(probIdempotencyKeyReused, "")
	}
	return staged{export: prev, replayed: true, builds: adm}, nil
}

// exportPlan is the plan an export request names for tenant, planned and
// recorded now for a spec, and the spec name its export records.
func (s *Server) exportPlan(ctx context.Context, tenant, profile string, req exportRequest) (planRecord, string, error) {
	var (
		rec  planRecord
		spec string
	)
	switch {
	case req.PlanID != "":
		if !digest.Valid(req.PlanID) {
			return rec, "", problemf(probInvalidPlanID, "want sha256: and 64 lowercase hex digits")
		}
		var err error
		rec, spec, err = s.store.tenantPlan(ctx, tenant, req.PlanID)
		if errors.Is(err, errNotFound) {
			return rec, "", problemf(probNotFound, "no plan %s", req.PlanID)
		} else if err != nil {
			return rec, "", err
		}
	default:
		pl, name, err := s.planRequested(ctx, tenant, req.Spec, req.Inline)
		if err != nil {
			return rec, "", err
		}
		rec, spec = pl.rec, name
	}
	if profileOf(rec.Kind) != profile {
		if profile == profileRelease {
			return rec, "", problemf(probNotARelease, "the plan builds a %s", rec.Kind)
		}
		return rec, "", problemf(probNotABootstrapPack, "the plan builds a %s", rec.Kind)
	}
	if profile == profileRelease && rec.PublicOnly && !s.cfg.InlineReleases {
		// A plan id from an inline release spec, posted to /v1/plans.
		return rec, "", problemf(probInlineReleaseDisabled, inlineReleaseDetail)
	}
	return rec, spec, nil
}

// planRequested plans a served spec by name, or an inline spec's source
// (exactly one is set), records the plan as tenant's and returns it with
// the spec name exports and plan summaries show.
func (s *Server) planRequested(ctx context.Context, tenant, name, inline string) (*planned, string, error) {
	var (
		pl  *planned
		err error
	)
	if inline != "" {
		name = inlineSpec
		if err := s.chargePlanning(tenant); err != nil {
			return nil, "", err
		}
		pl, err = s.planInline(ctx, tenant, inline)
	} else {
		if !specNameRE.MatchString(name) {
			return nil, "", problemf(probUnknownSpec, "no spec named %q: a spec name is 1 to 128 letters, digits, '.', '_' and '-', starting with a letter or digit", name)
		}
		pl, err = s.planSpec(ctx, tenant, name)
		if errors.Is(err, errNotFound) {
			return nil, "", problemf(probUnknownSpec, "no spec named %q", name)
		}
	}
	if err != nil {
		return nil, "", err
	}
	if err := s.store.putPlan(ctx, tenant, name, pl.rec); err != nil {
		return nil, "", err
	}
	return pl, name, nil
}

// admission is a tenant's build slots as one admission counted them.
type admission struct {
	limit int  // Config.TenantBuilds
	used  int  // the tenant's builds queued or running, before this one
	joins bool // the request joins a build queued, running or made: it takes no slot
}

// left is the slots the tenant has once the admitted build is queued.
func (a admission) left() int {
	n := a.limit - a.used
	if !a.joins {
		n--
	}
	return max(n, 0)
}

// setHeaders appends the "builds" items to the RateLimit headers:
// RateLimit-Policy "builds";q=LIMIT and RateLimit "builds";r=LEFT.
func (a admission) setHeaders(h http.Header) {
	h.Set("RateLimit-Policy", joinItems(h.Get("RateLimit-Policy"), fmt.Sprintf(`"builds";q=%d`, a.limit)))
	h.Set("RateLimit", joinItems(h.Get("RateLimit"), fmt.Sprintf(`"builds";r=%d`, a.left())))
}

// buildRetryAfter is the wait a request past the build limit is told: how
// long a build takes is not known in advance.
const buildRetryAfter = 10 * time.Second

// admitBuild decides whether tenant may have a build of plan planID: a
// plan built already, or with a build queued or running for anyone, is
// joined and not counted, when mayJoin; else the tenant must be under its
// build limit (a build-limit problem if not). A tenant's first export of
// a plan is admitted as a new build whoever built it (mayJoin false): the
// answer must not tell it that another tenant did. On success the caller queues its build,
// if it needs one, before calling release: admissions are serialised so
// that two requests cannot both take the last slot, within the process by
// a mutex and among servers sharing a Postgres database by an advisory
// lock. The export POSTs and the reconciler both admit builds here.
func (s *Server) admitBuild(ctx context.Context, tenant, planID string, mayJoin bool) (admission, func(), error) {
	a := admission{limit: s.cfg.TenantBuilds}
	if !mayJoin {
		// Neither a build made nor one running is looked at.
	} else if b, err := s.store.build(ctx, planID); err == nil && b.Status == statusSucceeded && s.buildPresent(b) {
		a.joins = true
	}
	release := func() {}
	if !a.joins {
		s.admit.Lock()
		unlock, err := s.store.lockTenant(ctx, tenant)
		if err != nil {
			s.admit.Unlock()
			return a, nil, err
		}
		release = func() { unlock(); s.admit.Unlock() }
		if mayJoin {
			if a.joins, err = s.store.building(ctx, buildArgs{}.Kind(), planID); err != nil {
				release()
				return a, nil, err
			}
		}
	}
	n, err := s.store.tenantBuilds(ctx, tenant)
	if err != nil {
		release()
		return a, nil, err
	}
	a.used = n
	if !a.joins && n >= a.limit {
		release()
		return a, nil, &apiError{typ: probBuildLimit, builds: &a, retryAfter: buildRetryAfter,
			detail: fmt.Sprintf("%d builds of this tenant are queued or running; at most %d", n, a.limit)}
	}
	return a, release, nil
}

// joinItems appends item to a structured-field list.
func joinItems(list, item string) string {
	if list == "" {
		return item
	}
	return list + ", " + item
}
