package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/strictjson"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/diff"
	"github.com/bale-build/bale/server/auth"
)

// Path parameter formats, checked before any lookup.
var (
	exportIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	planIDRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	idemKeyRE  = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)
)

const (
	exportsPath = "/v1/exports/airgap/bootstrap"
	releasePath = "/v1/exports/release"
)

// routes is the API's router; the OpenAPI document lists the same routes
// (TestOpenAPIRoutes checks both ways).
func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	// Paths are matched as sent: a dot segment or a doubled slash is a
	// 404, never a redirect to some other resource.
	r.SkipClean(true)
	r.Use(routeName)
	r.HandleFunc(exportsPath, s.authed(auth.ScopeWrite, s.postExport)).Methods(http.MethodPost)
	r.HandleFunc(exportsPath+"/{exportId}", s.authed(auth.ScopeRead, s.getExport)).Methods(http.MethodGet)
	r.HandleFunc(exportsPath+"/{exportId}/download", s.authed(auth.ScopeRead, s.download)).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(exportsPath+"/{exportId}/download.sha256", s.authed(auth.ScopeRead, s.downloadSum)).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(releasePath, s.authed(auth.ScopeWrite, s.postRelease)).Methods(http.MethodPost)
	r.HandleFunc(releasePath+"/{exportId}", s.authed(auth.ScopeRead, s.getRelease)).Methods(http.MethodGet)
	r.HandleFunc(releasePath+"/{exportId}/files/{name}", s.authed(auth.ScopeRead, s.releaseFile)).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v1/plans", s.authed(auth.ScopeWrite, s.postPlan)).Methods(http.MethodPost)
	r.HandleFunc("/v1/plans/diff", s.authed(auth.ScopeRead, s.diffPlans)).Methods(http.MethodPost)
	r.HandleFunc("/v1/plans/{planId}", s.authed(auth.ScopeRead, s.getPlan)).Methods(http.MethodGet)
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet)
	r.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	r.HandleFunc("/openapi.json", s.openapi).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, "not-found", "")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, "method-not-allowed", "")
	})
	return r
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}` + "\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.db.PingContext(ctx); err != nil {
		writeProblem(w, r, "not-ready", "")
		return
	}
	if _, err := s.store.queueDepth(ctx); err != nil {
		writeProblem(w, r, "not-ready", "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// readBody reads a JSON request body into v: at most MaxBody bytes (413),
// application/json (415), no unknown fields (400).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeProblem(w, r, "unsupported-media-type", "")
			return false
		}
	}
	if r.ContentLength > s.cfg.MaxBody {
		writeProblem(w, r, "body-too-large", fmt.Sprintf("at most %d bytes", s.cfg.MaxBody))
		return false
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeProblem(w, r, "body-too-large", fmt.Sprintf("at most %d bytes", s.cfg.MaxBody))
		return false
	}
	if err != nil {
		writeProblem(w, r, "invalid-request", "reading the body failed")
		return false
	}
	if err := strictjson.Unmarshal(buf.Bytes(), int(s.cfg.MaxBody), v); err != nil {
		writeProblem(w, r, "invalid-request", err.Error())
		return false
	}
	return true
}

// exportRequest is the body of POST /v1/exports/airgap/bootstrap and
// /v1/exports/release: exactly one of a spec the server serves, by name, a
// plan posted earlier, and an inline spec (CUE source naming only remote
// inputs).
type exportRequest struct {
	Spec   string `json:"spec,omitempty"`
	PlanID string `json:"planId,omitempty"`
	Inline string `json:"inline,omitempty"`
}

// inlineReleaseDetail explains the refusal of a release from an inline
// spec: the server would sign whatever remote content a client names with
// the organisation's key.
const inlineReleaseDetail = "this server signs releases only of the specs it serves (--specs); an operator may allow releases of inline specs with --inline-releases"

// inlineSpec is how an export or plan from an inline spec names its spec.
const inlineSpec = "inline"

// exportStatus is an export as the API shows it.
type exportStatus struct {
	ExportID       string `json:"exportId"`
	Profile        string `json:"profile"`
	Status         string `json:"status"`
	Reason         string `json:"reason,omitempty"`
	PlanID         string `json:"planId"`
	Spec           string `json:"spec,omitempty"`
	DownloadURI    string `json:"downloadUri,omitempty"`
	ChecksumURI    string `json:"checksumUri,omitempty"`
	File           string `json:"file,omitempty"`
	RootHash       string `json:"rootHash,omitempty"`
	ArtifactSha256 string `json:"artifactSha256,omitempty"`
	Size           int64  `json:"size,omitempty"`
	BuildTimestamp string `json:"buildTimestamp,omitempty"`
	CreatedAt      string `json:"createdAt"`
	FinishedAt     string `json:"finishedAt,omitempty"`
}

func statusOf(e exportRecord) exportStatus {
	st := exportStatus{ExportID: e.ID, Profile: "bootstrap", Status: e.Status, Reason: e.Reason, PlanID: e.PlanID,
		Spec: e.Spec, CreatedAt: e.Created.Format(time.RFC3339Nano)}
	if !e.Finished.IsZero() {
		st.FinishedAt = e.Finished.Format(time.RFC3339Nano)
	}
	if e.Status == statusSucceeded {
		st.DownloadURI = exportsPath + "/" + e.ID + "/download"
		st.ChecksumURI = st.DownloadURI + ".sha256"
		st.File, st.RootHash, st.ArtifactSha256, st.Size = e.File, e.RootHash, e.ArtifactSHA256, e.Size
		st.BuildTimestamp = e.BuildTime.Format(time.RFC3339)
	}
	return st
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = canonjson.NewEncoder(w, false).Encode(v)
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("internal error", "requestId", infoOf(r).requestID, "err", err.Error())
	writeProblem(w, r, "internal", "")
}

func (s *Server) postExport(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.stageExport(w, r, p, profileBootstrap)
}

// postRelease stages a release kit build. Without a key to sign with it
// is refused now: a build could only fail.
func (s *Server) postRelease(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if !s.canSign() {
		writeProblem(w, r, "no-signing-key", "the server was started without --signing-key, and COSIGN_ALLOW_DEV_KEY=1 does not permit a spec's development key")
		return
	}
	s.stageExport(w, r, p, profileRelease)
}

// stageExport records an export of the given profile for the plan the
// request names and queues its build, or lays it out at once from a build
// already made.
func (s *Server) stageExport(w http.ResponseWriter, r *http.Request, p auth.Principal, profile string) {
	key := strings.Trim(r.Header.Get("Idempotency-Key"), `"`)
	if r.Header.Get("Idempotency-Key") != "" && !idemKeyRE.MatchString(key) {
		writeProblem(w, r, "invalid-idempotency-key", "1 to 255 visible ASCII characters")
		return
	}
	var req exportRequest
	if !s.readBody(w, r, &req) {
		return
	}
	if n := btoi(req.Spec != "") + btoi(req.PlanID != "") + btoi(req.Inline != ""); n != 1 {
		writeProblem(w, r, "invalid-request", "give exactly one of spec, planId and inline")
		return
	}
	if profile == profileRelease && req.Inline != "" && !s.cfg.InlineReleases {
		writeProblem(w, r, "inline-release-disabled", inlineReleaseDetail)
		return
	}
	if profile == profileRelease && req.Inline != "" && s.signingPEM == nil {
		// An inline spec cannot name a development key (a file).
		writeProblem(w, r, "no-signing-key", "an inline release spec is signed only with the server's --signing-key")
		return
	}
	canon, _ := json.Marshal(req)
	if profile != profileBootstrap {
		// The same body on another route is another request.
		canon = append([]byte(profile+"\n"), canon...)
	}
	sum := sha256.Sum256(canon)
	reqHash := hex.EncodeToString(sum[:])
	ctx := r.Context()
	if key != "" {
		if prev, err := s.store.exportByKey(ctx, p.Tenant, key); err == nil {
			s.replay(w, r, prev, reqHash)
			return
		} else if !errors.Is(err, errNotFound) {
			s.internal(w, r, err)
			return
		}
	}
	var (
		rec  planRecord
		spec = req.Spec
	)
	switch {
	case req.PlanID != "":
		if !planIDRE.MatchString(req.PlanID) {
			writeProblem(w, r, "invalid-plan-id", "want sha256: and 64 lowercase hex digits")
			return
		}
		var err error
		rec, spec, err = s.store.tenantPlan(ctx, p.Tenant, req.PlanID)
		if errors.Is(err, errNotFound) {
			writeProblem(w, r, "not-found", "no plan "+req.PlanID)
			return
		} else if err != nil {
			s.internal(w, r, err)
			return
		}
	case req.Inline != "":
		pl, ok := s.planInlined(w, r, p, req.Inline)
		if !ok {
			return
		}
		rec, spec = pl.rec, inlineSpec
	default:
		pl, ok := s.planNamed(w, r, p, req.Spec)
		if !ok {
			return
		}
		rec = pl.rec
	}
	if profileOf(rec.Kind) != profile {
		if profile == profileRelease {
			writeProblem(w, r, "not-a-release", "the plan builds a "+rec.Kind)
		} else {
			writeProblem(w, r, "not-a-bootstrap-pack", "the plan builds a "+rec.Kind)
		}
		return
	}
	if profile == profileRelease && rec.PublicOnly && !s.cfg.InlineReleases {
		// A plan id from an inline release spec, posted to /v1/plans.
		writeProblem(w, r, "inline-release-disabled", inlineReleaseDetail)
		return
	}
	release, ok := s.admitBuild(w, r, p.Tenant, buildArgs{}.Kind(), rec.ID)
	if !ok {
		return
	}
	defer release()
	// From here the export is recorded and its build queued as one: a
	// client hanging up between the two must not leave an export with no
	// build (the reconciler would queue it, past the admission above).
	ctx = context.WithoutCancel(ctx)
	e := exportRecord{ID: newExportID(), Profile: profile, Tenant: p.Tenant, PlanID: rec.ID, Spec: spec, Status: statusQueued,
		IdemKey: key, ReqHash: reqHash, Created: time.Now().UTC(), BuildTime: rec.BuildTime}
	e, inserted, err := s.store.insertExport(ctx, e)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if !inserted {
		s.replay(w, r, e, reqHash)
		return
	}
	infoOf(r).exportID = e.ID
	s.log.Info("export queued", "exportId", e.ID, "profile", e.Profile, "tenant", e.Tenant, "planId", e.PlanID, "requestId", infoOf(r).requestID)
	// A plan built before needs no job: its export is laid out now.
	if b, err := s.store.build(ctx, rec.ID); err == nil && b.Status == statusSucceeded && s.buildPresent(b) {
		if e, err = s.finish(ctx, e, b); err != nil {
			s.internal(w, r, err)
			return
		}
	} else if _, err := s.queue.Insert(ctx, buildArgs{PlanID: rec.ID}, buildOpts(p.Tenant)); err != nil {
		s.internal(w, r, fmt.Errorf("queue build of %s: %w", rec.ID, err))
		return
	}
	s.writeStaged(w, r, e, false)
}

// writeStaged answers a POST with export e's status and Location.
func (s *Server) writeStaged(w http.ResponseWriter, r *http.Request, e exportRecord, replayed bool) {
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if e.Profile == profileRelease {
		st, err := s.releaseStatusOf(r.Context(), e)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		w.Header().Set("Location", releasePath+"/"+e.ID)
		writeJSON(w, http.StatusAccepted, st)
		return
	}
	w.Header().Set("Location", exportsPath+"/"+e.ID)
	writeJSON(w, http.StatusAccepted, statusOf(e))
}

// replay answers a POST whose Idempotency-Key was used before: the same
// export for the same body, 422 for another.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, prev exportRecord, reqHash string) {
	if prev.ReqHash != reqHash {
		writeProblem(w, r, "idempotency-key-reused", "")
		return
	}
	infoOf(r).exportID = prev.ID
	s.writeStaged(w, r, prev, true)
}

// planNamed plans the spec named name for p's tenant, writing the problem
// if it cannot.
func (s *Server) planNamed(w http.ResponseWriter, r *http.Request, p auth.Principal, name string) (*planned, bool) {
	if !specNameRE.MatchString(name) {
		writeProblem(w, r, "unknown-spec", "")
		return nil, false
	}
	pl, err := s.planSpec(r.Context(), name)
	return s.recordPlan(w, r, p, name, pl, err)
}

// planInlined plans an inline spec for p's tenant, writing the problem if
// it cannot.
func (s *Server) planInlined(w http.ResponseWriter, r *http.Request, p auth.Principal, src string) (*planned, bool) {
	pl, err := s.planInline(r.Context(), p.Tenant, src)
	return s.recordPlan(w, r, p, inlineSpec, pl, err)
}

// recordPlan records for p's tenant the plan spec was planned into, or
// writes the problem the planning's error is.
func (s *Server) recordPlan(w http.ResponseWriter, r *http.Request, p auth.Principal, spec string, pl *planned, err error) (*planned, bool) {
	var se *specError
	switch {
	case errors.Is(err, errNotFound):
		writeProblem(w, r, "unknown-spec", "no spec named "+spec)
	case errors.Is(err, errInlineDisabled):
		writeProblem(w, r, "inline-disabled", "name a spec the server serves, or a plan id")
	case errors.Is(err, errInlineBusy):
		w.Header().Set("Retry-After", retryAfter(inlineSlotWait))
		writeProblem(w, r, "inline-busy", fmt.Sprintf("%d inline specs are being evaluated; at most %d at once", s.cfg.InlineSlots, s.cfg.InlineSlots))
	case errors.Is(err, errInlineTenantBusy):
		w.Header().Set("Retry-After", retryAfter(inlineSlotWait))
		writeProblem(w, r, "inline-busy", fmt.Sprintf("this tenant's inline specs take %d evaluation slots, its share; one must end first", max(s.cfg.InlineSlots-1, 1)))
	case errors.As(err, &se):
		writeProblem(w, r, "spec-invalid", se.msg)
	case err != nil:
		s.internal(w, r, err)
	default:
		if err := s.store.putPlan(r.Context(), p.Tenant, spec, pl.rec); err != nil {
			s.internal(w, r, err)
			return nil, false
		}
		return pl, true
	}
	return nil, false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newExportID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lookupExport validates the path's export id and returns the tenant's
// export of the given profile; another tenant's, or one of another profile,
// is 404, like one that does not exist.
func (s *Server) lookupExport(w http.ResponseWriter, r *http.Request, p auth.Principal, profile string) (exportRecord, bool) {
	id := mux.Vars(r)["exportId"]
	if !exportIDRE.MatchString(id) {
		writeProblem(w, r, "invalid-export-id", "want 32 lowercase hex digits")
		return exportRecord{}, false
	}
	e, err := s.store.export(r.Context(), p.Tenant, id)
	if err == nil && e.Profile != profile {
		err = errNotFound
	}
	if errors.Is(err, errNotFound) {
		writeProblem(w, r, "not-found", "no export "+id)
		return e, false
	}
	if err != nil {
		s.internal(w, r, err)
		return e, false
	}
	infoOf(r).exportID = id
	return e, true
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e, ok := s.lookupExport(w, r, p, profileBootstrap)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, statusOf(e))
}

// download serves the pack from its file: ranges, conditional requests
// and HEAD through http.ServeContent, the body through sendfile.
func (s *Server) download(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e, ok := s.lookupExport(w, r, p, profileBootstrap)
	if !ok {
		return
	}
	s.serveFile(w, r, e, e.File, "application/gzip", e.ArtifactSHA256)
}

// downloadSum serves the pack's .sha256 file.
func (s *Server) downloadSum(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e, ok := s.lookupExport(w, r, p, profileBootstrap)
	if !ok {
		return
	}
	if e.Status != statusSucceeded {
		writeProblem(w, r, "export-not-ready", "the export is "+e.Status)
		return
	}
	name := e.File + ".sha256"
	b, err := os.ReadFile(filepath.Join(s.exportDir(e), name))
	if err != nil {
		s.internal(w, r, fmt.Errorf("export %s: %w", e.ID, err))
		return
	}
	sum := sha256.Sum256(b)
	s.serveFile(w, r, e, name, "text/plain; charset=utf-8", hex.EncodeToString(sum[:]))
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, e exportRecord, name, ctype, sumHex string) {
	if e.Status != statusSucceeded {
		writeProblem(w, r, "export-not-ready", "the export is "+e.Status)
		return
	}
	f, err := os.Open(filepath.Join(s.exportDir(e), name))
	if err != nil {
		s.internal(w, r, fmt.Errorf("export %s: %w", e.ID, err))
		return
	}
	defer f.Close()
	raw, err := hex.DecodeString(sumHex)
	if err != nil {
		s.internal(w, r, fmt.Errorf("export %s: bad digest", e.ID))
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", `"`+sumHex+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(raw)+":")
	http.ServeContent(w, r, name, e.BuildTime, f)
}

// planRequest is the body of POST /v1/plans: a served spec's name or an
// inline spec.
type planRequest struct {
	Spec   string `json:"spec,omitempty"`
	Inline string `json:"inline,omitempty"`
}

// planSummary describes a stored plan.
type planSummary struct {
	PlanID          string `json:"planId"`
	Spec            string `json:"spec"`
	Kind            string `json:"kind"`
	SourceDateEpoch string `json:"sourceDateEpoch"`
	Inputs          int    `json:"inputs"`
	Steps           int    `json:"steps"`
	URI             string `json:"uri"`
}

func (s *Server) postPlan(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req planRequest
	if !s.readBody(w, r, &req) {
		return
	}
	if (req.Spec == "") == (req.Inline == "") {
		writeProblem(w, r, "invalid-request", "give exactly one of spec and inline")
		return
	}
	var (
		pl   *planned
		ok   bool
		name = req.Spec
	)
	if req.Inline != "" {
		pl, ok = s.planInlined(w, r, p, req.Inline)
		name = inlineSpec
	} else {
		pl, ok = s.planNamed(w, r, p, req.Spec)
	}
	if !ok {
		return
	}
	uri := "/v1/plans/" + pl.rec.ID
	w.Header().Set("Location", uri)
	writeJSON(w, http.StatusCreated, planSummary{PlanID: pl.rec.ID, Spec: name, Kind: pl.rec.Kind,
		SourceDateEpoch: pl.sp.Plan().SourceDateEpoch, Inputs: len(pl.sp.Plan().Inputs), Steps: len(pl.sp.Plan().Steps), URI: uri})
}

// tenantPlanBytes validates id and returns the tenant's plan.
func (s *Server) tenantPlanBytes(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) (*plan.Sealed, bool) {
	if !planIDRE.MatchString(id) {
		writeProblem(w, r, "invalid-plan-id", "want sha256: and 64 lowercase hex digits")
		return nil, false
	}
	if _, _, err := s.store.tenantPlan(r.Context(), p.Tenant, id); errors.Is(err, errNotFound) {
		writeProblem(w, r, "not-found", "no plan "+id)
		return nil, false
	} else if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	sp, err := s.readPlan(id)
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	return sp, true
}

// getPlan serves a plan's bytes: the same bytes bale plan writes.
func (s *Server) getPlan(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := mux.Vars(r)["planId"]
	sp, ok := s.tenantPlanBytes(w, r, p, id)
	if !ok {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", `"`+strings.TrimPrefix(id, "sha256:")+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "plan.json", time.Time{}, bytes.NewReader(sp.Bytes()))
}

// diffRequest is the body of POST /v1/plans/diff.
type diffRequest struct {
	Old string `json:"old"`
	New string `json:"new"`
}

// diffPlans answers with the JSON bale diff --format json prints.
func (s *Server) diffPlans(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req diffRequest
	if !s.readBody(w, r, &req) {
		return
	}
	a, ok := s.tenantPlanBytes(w, r, p, req.Old)
	if !ok {
		return
	}
	b, ok := s.tenantPlanBytes(w, r, p, req.New)
	if !ok {
		return
	}
	var buf bytes.Buffer
	if err := diff.Plans(req.Old, req.New, req.Old, req.New, a.Plan(), b.Plan()).JSON(&buf); err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}
