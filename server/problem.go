package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// problemBase prefixes every problem type. The types are stable: clients
// may switch on them.
const problemBase = "urn:bale:problem:"

// problem is an RFC 9457 problem details object.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// problemKind is one of the API's problem types: the last part of its
// type URI, its status and its title. They are the variables below and
// nothing else, so a response cannot name a type the API does not have.
type problemKind struct {
	slug   string
	status int
	title  string
}

// The problem types.
var (
	probUnauthorized          = &problemKind{"unauthorized", http.StatusUnauthorized, "Missing or unknown bearer token"}
	probForbidden             = &problemKind{"forbidden", http.StatusForbidden, "The token lacks the scope this request needs"}
	probNotFound              = &problemKind{"not-found", http.StatusNotFound, "No such resource"}
	probMethodNotAllowed      = &problemKind{"method-not-allowed", http.StatusMethodNotAllowed, "Method not allowed on this resource"}
	probInvalidExportID       = &problemKind{"invalid-export-id", http.StatusBadRequest, "Malformed export id"}
	probInvalidPlanID         = &problemKind{"invalid-plan-id", http.StatusBadRequest, "Malformed plan id"}
	probInvalidRequest        = &problemKind{"invalid-request", http.StatusBadRequest, "The request body is not valid"}
	probInvalidIdempotencyKey = &problemKind{"invalid-idempotency-key", http.StatusBadRequest, "Malformed Idempotency-Key header"}
	probUnsupportedMediaType  = &problemKind{"unsupported-media-type", http.StatusUnsupportedMediaType, "Request bodies are application/json"}
	probBodyTooLarge          = &problemKind{"body-too-large", http.StatusRequestEntityTooLarge, "The request body is too large"}
	probUnknownSpec           = &problemKind{"unknown-spec", http.StatusNotFound, "No spec of this name is served"}
	probSpecInvalid           = &problemKind{"spec-invalid", http.StatusUnprocessableEntity, "The spec could not be planned"}
	probInlineDisabled        = &problemKind{"inline-disabled", http.StatusUnprocessableEntity, "This server does not evaluate inline specs"}
	probNotABootstrapPack     = &problemKind{"not-a-bootstrap-pack", http.StatusUnprocessableEntity, "The plan does not build a bootstrap pack"}
	probNotARelease           = &problemKind{"not-a-release", http.StatusUnprocessableEntity, "The plan does not build a release kit"}
	probInlineReleaseDisabled = &problemKind{"inline-release-disabled", http.StatusUnprocessableEntity, "This server does not sign releases of inline specs"}
	probNoSigningKey          = &problemKind{"no-signing-key", http.StatusUnprocessableEntity, "The server has no key to sign a release with"}
	probIdempotencyKeyReused  = &problemKind{"idempotency-key-reused", http.StatusUnprocessableEntity, "The Idempotency-Key was used with another request body"}
	probExportNotReady        = &problemKind{"export-not-ready", http.StatusConflict, "The export has not succeeded"}
	probExportNotFinished     = &problemKind{"export-not-finished", http.StatusConflict, "The export has not finished"}
	probStorageQuota          = &problemKind{"storage-quota", http.StatusInsufficientStorage, "The tenant's storage quota is used up"}
	probRateLimited           = &problemKind{"rate-limited", http.StatusTooManyRequests, "Too many requests for this tenant"}
	probBuildLimit            = &problemKind{"build-limit", http.StatusTooManyRequests, "Too many builds queued or running for this tenant"}
	probDownloadLimit         = &problemKind{"download-limit", http.StatusTooManyRequests, "Too many downloads open for this tenant"}
	probInlineBusy            = &problemKind{"inline-busy", http.StatusServiceUnavailable, "The inline evaluation slots are busy"}
	probNotReady              = &problemKind{"not-ready", http.StatusServiceUnavailable, "The server cannot reach its store"}
	probStorageFull           = &problemKind{"storage-full", http.StatusServiceUnavailable, "The server's storage cannot take writes"}
	probInternal              = &problemKind{"internal", http.StatusInternalServerError, "Internal error"}
)

// apiError is a request's failure as its client is told it: a problem
// type and a detail, which must name no server path and carry no stack.
// The service functions return it; writeError writes it.
type apiError struct {
	typ    *problemKind
	detail string
	// retryAfter, when positive, is sent as Retry-After.
	retryAfter time.Duration
	// builds, when set, is the tenant's build slots, sent as the
	// "builds" items of RateLimit-Policy and RateLimit.
	builds *admission
}

func (e *apiError) Error() string {
	if e.detail == "" {
		return e.typ.slug
	}
	return e.typ.slug + ": " + e.detail
}

// problemf is a failure of type t with a detail formatted as fmt.Sprintf.
func problemf(t *problemKind, format string, args ...any) *apiError {
	return &apiError{typ: t, detail: fmt.Sprintf(format, args...)}
}

// isProblem reports whether err is a failure of type t.
func isProblem(err error, t *problemKind) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.typ == t
}

// apiErrorOf is err as its client is told it: an *apiError as it is, the
// planning's own errors as their problem types, a store that cannot be
// reached or written as 503 with Retry-After, anything else nil (an
// internal error, logged and answered 500).
func (s *Server) apiErrorOf(err error) *apiError {
	var (
		ae *apiError
		se *specError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &se):
		return &apiError{typ: probSpecInvalid, detail: se.msg}
	case errors.Is(err, errInlineDisabled):
		return &apiError{typ: probInlineDisabled, detail: "name a spec the server serves, or a plan id"}
	case errors.Is(err, errInlineBusy):
		return &apiError{typ: probInlineBusy, retryAfter: inlineSlotWait,
			detail: fmt.Sprintf("%d inline specs are being evaluated; at most %d at once", s.cfg.InlineSlots, s.cfg.InlineSlots)}
	case errors.Is(err, errInlineTenantBusy):
		return &apiError{typ: probInlineBusy, retryAfter: inlineSlotWait,
			detail: fmt.Sprintf("this tenant's inline specs take %d evaluation slots, its share; one must end first", max(s.cfg.InlineSlots-1, 1))}
	case storageFull(err):
		return &apiError{typ: probStorageFull, retryAfter: storeRetryAfter, detail: "the server's storage is full; retry after Retry-After"}
	case storeUnreachable(err):
		return &apiError{typ: probNotReady, retryAfter: storeRetryAfter, detail: "the server's database cannot be reached; retry after Retry-After"}
	}
	return nil
}

// writeError answers a request that failed with err: the one place where
// a failure becomes its problem. An error that is no client's is logged
// with the request's id and answered 500 internal, without its text.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := s.apiErrorOf(err)
	if ae == nil {
		s.log.Error("internal error", "requestId", infoOf(r).requestID, "err", err.Error())
		writeProblem(w, r, probInternal, "")
		return
	}
	if ae.typ == probNotReady || ae.typ == probStorageFull {
		s.log.Warn("store unavailable", "requestId", infoOf(r).requestID, "problem", ae.typ.slug, "err", err.Error())
	}
	h := w.Header()
	if ae.builds != nil {
		ae.builds.setHeaders(h)
	}
	if ae.retryAfter > 0 {
		h.Set("Retry-After", retryAfter(ae.retryAfter))
	}
	writeProblem(w, r, ae.typ, ae.detail)
}

// writeProblem writes a problem of type t with detail, which must name no
// server path and carry no stack.
func writeProblem(w http.ResponseWriter, r *http.Request, t *problemKind, detail string) {
	info := infoOf(r)
	body := problem{Type: problemBase + t.slug, Title: t.title, Status: t.status, Detail: detail, Instance: r.URL.Path}
	if info != nil {
		body.RequestID = info.requestID
		info.problem = t.slug
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Disposition")
	h.Del("ETag")
	h.Del("Repr-Digest")
	w.WriteHeader(t.status)
	_ = json.NewEncoder(w).Encode(body)
}
