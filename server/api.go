package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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

	"github.com/bale-build/bale/internal/canonjson"
	"github.com/bale-build/bale/internal/digest"
	"github.com/bale-build/bale/internal/strictjson"
	"github.com/bale-build/bale/plan"
	"github.com/bale-build/bale/planner/diff"
	"github.com/bale-build/bale/server/auth"
)

// Path parameter formats, checked before any lookup.
var (
	exportIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
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
	r.HandleFunc(exportsPath+"/{exportId}", s.authed(auth.ScopeWrite, s.deleteExportOf(profileBootstrap))).Methods(http.MethodDelete)
	r.HandleFunc(releasePath+"/{exportId}", s.authed(auth.ScopeWrite, s.deleteExportOf(profileRelease))).Methods(http.MethodDelete)
	r.HandleFunc(releasePath+"/{exportId}/files/{name}", s.authed(auth.ScopeRead, s.releaseFile)).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v1/plans", s.authed(auth.ScopeWrite, s.postPlan)).Methods(http.MethodPost)
	r.HandleFunc("/v1/plans/diff", s.authed(auth.ScopeRead, s.diffPlans)).Methods(http.MethodPost)
	r.HandleFunc("/v1/plans/{planId}", s.authed(auth.ScopeRead, s.getPlan)).Methods(http.MethodGet)
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet)
	r.Handle("/metrics", s.metrics.handler()).Methods(http.MethodGet)
	r.HandleFunc("/openapi.json", s.openapi).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, probNotFound, "")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, probMethodNotAllowed, "")
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
		w.Header().Set("Retry-After", retryAfter(storeRetryAfter))
		writeProblem(w, r, probNotReady, "the database cannot be reached")
		return
	}
	if _, err := s.store.queueDepth(ctx); err != nil {
		w.Header().Set("Retry-After", retryAfter(storeRetryAfter))
		writeProblem(w, r, probNotReady, "the job store cannot be read")
		return
	}
	if err := s.canWrite(); err != nil {
		s.log.Warn("not ready: the data directory cannot take a write", "err", s.scrub(err.Error()))
		w.Header().Set("Retry-After", retryAfter(storeRetryAfter))
		writeProblem(w, r, probStorageFull, "the data directory cannot take a write")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// readBody reads a JSON request body into v: at most MaxBody bytes (413),
// application/json (415), no unknown fields (400).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return problemf(probUnsupportedMediaType, "")
		}
	}
	tooLarge := problemf(probBodyTooLarge, "at most %d bytes", s.cfg.MaxBody)
	if r.ContentLength > s.cfg.MaxBody {
		return tooLarge
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge
	}
	if err != nil {
		return problemf(probInvalidRequest, "reading the body failed")
	}
	if err := strictjson.Unmarshal(buf.Bytes(), int(s.cfg.MaxBody), v); err != nil {
		return problemf(probInvalidRequest, "%s", err.Error())
	}
	return nil
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

// exportFields are the fields every export's status shows, bootstrap
// pack or release kit. Once it has succeeded, DownloadURI, ArtifactSha256
// and Size are its artifact's: the pack, or the kit archive.
type exportFields struct {
	ExportID       string `json:"exportId"`
	Profile        string `json:"profile"`
	Status         string `json:"status"`
	Reason         string `json:"reason,omitempty"`
	PlanID         string `json:"planId"`
	Spec           string `json:"spec,omitempty"`
	DownloadURI    string `json:"downloadUri,omitempty"`
	ArtifactSha256 string `json:"artifactSha256,omitempty"`
	Size           int64  `json:"size,omitempty"`
	BuildTimestamp string `json:"buildTimestamp,omitempty"`
	CreatedAt      string `json:"createdAt"`
	FinishedAt     string `json:"finishedAt,omitempty"`
}

// fieldsOf fills in e's shared status fields; downloadURI is where its
// artifact is, once it has succeeded.
func fieldsOf(e exportRecord, downloadURI string) exportFields {
	f := exportFields{ExportID: e.ID, Profile: e.Profile, Status: e.Status, Reason: e.Reason, PlanID: e.PlanID,
		Spec: e.Spec, CreatedAt: e.Created.Format(time.RFC3339Nano)}
	if !e.Finished.IsZero() {
		f.FinishedAt = e.Finished.Format(time.RFC3339Nano)
	}
	if e.Status == statusSucceeded {
		f.DownloadURI, f.ArtifactSha256, f.Size = downloadURI, e.ArtifactSHA256, e.Size
		f.BuildTimestamp = e.BuildTime.Format(time.RFC3339)
	}
	return f
}

// exportStatus is a bootstrap pack export as the API shows it.
type exportStatus struct {
	exportFields
	ChecksumURI string `json:"checksumUri,omitempty"`
	File        string `json:"file,omitempty"`
	RootHash    string `json:"rootHash,omitempty"`
}

func statusOf(e exportRecord) exportStatus {
	uri := exportsPath + "/" + e.ID + "/download"
	st := exportStatus{exportFields: fieldsOf(e, uri)}
	if e.Status == statusSucceeded {
		st.ChecksumURI, st.File, st.RootHash = uri+".sha256", e.File, e.RootHash
	}
	return st
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = canonjson.NewEncoder(w, false).Encode(v)
}

func (s *Server) postExport(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.postStage(w, r, p, profileBootstrap)
}

// postRelease stages a release kit build.
func (s *Server) postRelease(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.postStage(w, r, p, profileRelease)
}

// postStage answers a POST of an export of the given profile: the HTTP
// around stage.
func (s *Server) postStage(w http.ResponseWriter, r *http.Request, p auth.Principal, profile string) {
	key, err := idempotencyKey(r.Header.Get("Idempotency-Key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := stageRequest{tenant: p.Tenant, profile: profile, idemKey: key}
	if err := s.readBody(w, r, &req.body); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.stage(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if st.builds != nil {
		st.builds.setHeaders(w.Header())
	}
	if st.replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	e := st.export
	infoOf(r).exportID = e.ID
	if e.Profile == profileRelease {
		rs, err := s.releaseStatusOf(r.Context(), e)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Location", releasePath+"/"+e.ID)
		writeJSON(w, http.StatusAccepted, rs)
		return
	}
	w.Header().Set("Location", exportsPath+"/"+e.ID)
	writeJSON(w, http.StatusAccepted, statusOf(e))
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
		writeProblem(w, r, probInvalidExportID, "want 32 lowercase hex digits")
		return exportRecord{}, false
	}
	e, err := s.store.export(r.Context(), p.Tenant, id)
	if err == nil && e.Profile != profile {
		err = errNotFound
	}
	if errors.Is(err, errNotFound) {
		writeProblem(w, r, probNotFound, "no export "+id)
		return e, false
	}
	if err != nil {
		s.writeError(w, r, err)
		return e, false
	}
	infoOf(r).exportID = id
	return e, true
}

// deleteExportOf deletes a finished export of the profile: its record and
// its files, at once, as retention would later. It frees the tenant's
// quota; the build stays for other exports of its plan.
func (s *Server) deleteExportOf(profile string) func(http.ResponseWriter, *http.Request, auth.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		e, ok := s.lookupExport(w, r, p, profile)
		if !ok {
			return
		}
		if e.Status != statusSucceeded && e.Status != statusFailed {
			writeProblem(w, r, probExportNotFinished, "the export is "+e.Status+"; it can be deleted once it has finished")
			return
		}
		if err := s.removeExport(r.Context(), e); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("export deleted", "exportId", e.ID, "profile", e.Profile, "tenant", e.Tenant, "requestId", infoOf(r).requestID)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e, ok := s.lookupExport(w, r, p, profileBootstrap)
	if !ok {
		return
	}
	e, err := s.applyWait(w, r, e)
	if err != nil {
		if r.Context().Err() == nil {
			s.writeError(w, r, err)
		}
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
		writeProblem(w, r, probExportNotReady, "the export is "+e.Status)
		return
	}
	name := e.File + ".sha256"
	b, err := os.ReadFile(filepath.Join(s.exportDir(e), name))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("export %s: %w", e.ID, err))
		return
	}
	sum := sha256.Sum256(b)
	s.serveFile(w, r, e, name, "text/plain; charset=utf-8", hex.EncodeToString(sum[:]))
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, e exportRecord, name, ctype, sumHex string) {
	if e.Status != statusSucceeded {
		writeProblem(w, r, probExportNotReady, "the export is "+e.Status)
		return
	}
	f, err := os.Open(filepath.Join(s.exportDir(e), name))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("export %s: %w", e.ID, err))
		return
	}
	defer f.Close()
	raw, err := hex.DecodeString(sumHex)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("export %s: bad digest", e.ID))
		return
	}
	dl, ok := s.downloads.start(e.Tenant, w)
	if !ok {
		w.Header().Set("Retry-After", retryAfter(downloadRetryAfter))
		writeProblem(w, r, probDownloadLimit, fmt.Sprintf("this tenant has %d downloads open; at most %d at once", s.cfg.TenantDownloads, s.cfg.TenantDownloads))
		return
	}
	defer s.downloads.end(dl)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", `"`+sumHex+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(raw)+":")
	http.ServeContent(newDownloadWriter(w, dl, s.downloads), r, name, e.BuildTime, f)
	if dl.isCut.Load() {
		s.log.Warn("download cut: slower than the minimum rate", "requestId", infoOf(r).requestID, "exportId", e.ID,
			"tenant", e.Tenant, "file", name, "bytes", dl.moved.Load(), "minRate", s.cfg.DownloadMinRate, "window", s.cfg.DownloadWindow.String())
	}
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
	if err := s.readBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if (req.Spec == "") == (req.Inline == "") {
		writeProblem(w, r, probInvalidRequest, "give exactly one of spec and inline")
		return
	}
	pl, name, err := s.planRequested(r.Context(), p.Tenant, req.Spec, req.Inline)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	uri := "/v1/plans/" + pl.rec.ID
	w.Header().Set("Location", uri)
	writeJSON(w, http.StatusCreated, planSummary{PlanID: pl.rec.ID, Spec: name, Kind: pl.rec.Kind,
		SourceDateEpoch: pl.sp.Plan().SourceDateEpoch, Inputs: len(pl.sp.Plan().Inputs), Steps: len(pl.sp.Plan().Steps), URI: uri})
}

// tenantPlan validates id and returns the tenant's plan.
func (s *Server) tenantPlan(ctx context.Context, tenant, id string) (*plan.Sealed, error) {
	if !digest.Valid(id) {
		return nil, problemf(probInvalidPlanID, "want sha256: and 64 lowercase hex digits")
	}
	if _, _, err := s.store.tenantPlan(ctx, tenant, id); errors.Is(err, errNotFound) {
		return nil, problemf(probNotFound, "no plan %s", id)
	} else if err != nil {
		return nil, err
	}
	return s.readPlan(id)
}

// getPlan serves a plan's bytes: the same bytes bale plan writes.
func (s *Server) getPlan(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := mux.Vars(r)["planId"]
	sp, err := s.tenantPlan(r.Context(), p.Tenant, id)
	if err != nil {
		s.writeError(w, r, err)
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
	if err := s.readBody(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	a, err := s.tenantPlan(r.Context(), p.Tenant, req.Old)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := s.tenantPlan(r.Context(), p.Tenant, req.New)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var buf bytes.Buffer
	if err := diff.Plans(req.Old, req.New, req.Old, req.New, a.Plan(), b.Plan()).JSON(&buf); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf.Bytes())
}
