package server

import (
	"encoding/json"
	"net/http"
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

// The problem types, by slug, with their status and title.
var problems = map[string]struct {
	status int
	title  string
}{
	"unauthorized":            {http.StatusUnauthorized, "Missing or unknown bearer token"},
	"forbidden":               {http.StatusForbidden, "The token lacks the scope this request needs"},
	"not-found":               {http.StatusNotFound, "No such resource"},
	"method-not-allowed":      {http.StatusMethodNotAllowed, "Method not allowed on this resource"},
	"invalid-export-id":       {http.StatusBadRequest, "Malformed export id"},
	"invalid-plan-id":         {http.StatusBadRequest, "Malformed plan id"},
	"invalid-request":         {http.StatusBadRequest, "The request body is not valid"},
	"invalid-idempotency-key": {http.StatusBadRequest, "Malformed Idempotency-Key header"},
	"unsupported-media-type":  {http.StatusUnsupportedMediaType, "Request bodies are application/json"},
	"body-too-large":          {http.StatusRequestEntityTooLarge, "The request body is too large"},
	"unknown-spec":            {http.StatusNotFound, "No spec of this name is served"},
	"spec-invalid":            {http.StatusUnprocessableEntity, "The spec could not be planned"},
	"inline-disabled":         {http.StatusUnprocessableEntity, "This server does not evaluate inline specs"},
	"not-a-bootstrap-pack":    {http.StatusUnprocessableEntity, "The plan does not build a bootstrap pack"},
	"not-a-release":           {http.StatusUnprocessableEntity, "The plan does not build a release kit"},
	"inline-release-disabled": {http.StatusUnprocessableEntity, "This server does not sign releases of inline specs"},
	"no-signing-key":          {http.StatusUnprocessableEntity, "The server has no key to sign a release with"},
	"idempotency-key-reused":  {http.StatusUnprocessableEntity, "The Idempotency-Key was used with another request body"},
	"export-not-ready":        {http.StatusConflict, "The export has not succeeded"},
	"rate-limited":            {http.StatusTooManyRequests, "Too many requests for this tenant"},
	"build-limit":             {http.StatusTooManyRequests, "Too many builds queued or running for this tenant"},
	"inline-busy":             {http.StatusServiceUnavailable, "The inline evaluation slots are busy"},
	"not-ready":               {http.StatusServiceUnavailable, "The server cannot reach its store"},
	"internal":                {http.StatusInternalServerError, "Internal error"},
}

// writeProblem writes the problem slug with detail, which must name no
// server path and carry no stack.
func writeProblem(w http.ResponseWriter, r *http.Request, slug, detail string) {
	p, ok := problems[slug]
	if !ok {
		slug, p = "internal", problems["internal"]
	}
	info := infoOf(r)
	body := problem{Type: problemBase + slug, Title: p.title, Status: p.status, Detail: detail, Instance: r.URL.Path}
	if info != nil {
		body.RequestID = info.requestID
		info.problem = slug
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Disposition")
	h.Del("ETag")
	h.Del("Repr-Digest")
	w.WriteHeader(p.status)
	_ = json.NewEncoder(w).Encode(body)
}
