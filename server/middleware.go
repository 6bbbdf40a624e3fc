package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/bale-build/bale/server/auth"
)

// reqInfo is what one request's log line and metrics say about it, filled
// in as the request is handled.
type reqInfo struct {
	requestID string
	route     string
	tenant    string
	exportID  string
	problem   string
}

type infoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	i, _ := r.Context().Value(infoKey{}).(*reqInfo)
	return i
}

// requestIDOf is the id of the request ctx is, or "" outside one.
func requestIDOf(ctx context.Context) string {
	if i, _ := ctx.Value(infoKey{}).(*reqInfo); i != nil {
		return i.requestID
	}
	return ""
}

// requestIDRE is an X-Request-ID the server passes on: anything else is
// replaced, so a log line cannot be forged through it.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and byte count of a response. It keeps
// io.ReaderFrom, so a download still goes out through sendfile.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware gives every request an id (X-Request-ID, honoured when
// well-formed), logs one line for it and counts it by route.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !requestIDRE.MatchString(id) {
			id = newRequestID()
		}
		info := &reqInfo{requestID: id, route: "unmatched"}
		w.Header().Set("X-Request-ID", id)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		s.metrics.observeRequest(info.route, r.Method, sw.status, d)
		attrs := []any{
			"requestId", id, "method", r.Method, "route", info.route, "status", sw.status,
			"bytes", sw.bytes, "durationMs", float64(d.Microseconds()) / 1000,
		}
		if info.tenant != "" {
			attrs = append(attrs, "tenant", info.tenant)
		}
		if info.exportID != "" {
			attrs = append(attrs, "exportId", info.exportID, "profile", "bootstrap")
		}
		if info.problem != "" {
			attrs = append(attrs, "problem", info.problem)
		}
		s.log.Info("request", attrs...)
	})
}

// routeName records the matched route's template for logs and metrics.
func routeName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoOf(r); info != nil {
			if rt := mux.CurrentRoute(r); rt != nil {
				if t, err := rt.GetPathTemplate(); err == nil {
					info.route = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authed wraps h: the request must carry a bearer token holding scope, and
// be within its tenant's rate limit.
func (s *Server) authed(scope string, h func(http.ResponseWriter, *http.Request, auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		authz := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok {
			if t, ok2 := strings.CutPrefix(authz, "bearer "); ok2 {
				tok, ok = t, true
			}
		}
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bale"`)
			writeProblem(w, r, probUnauthorized, "send Authorization: Bearer TOKEN")
			return
		}
		p, err := s.authenticate(r.Context(), strings.TrimSpace(tok))
		if err != nil {
			// The description is one of auth's fixed reasons: it never
			// quotes the token, and needs no escaping.
			desc := "the token is not known"
			var te *auth.TokenError
			if errors.As(err, &te) {
				desc = te.Reason
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="bale", error="invalid_token", error_description="`+desc+`"`)
			writeProblem(w, r, probUnauthorized, desc)
			return
		}
		if info := infoOf(r); info != nil {
			info.tenant = p.Tenant
		}
		if !s.limits.allow(w, p.Tenant) {
			writeProblem(w, r, probRateLimited, "retry after the number of seconds in Retry-After")
			return
		}
		if !p.Has(scope) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bale", error="insufficient_scope", scope="`+scope+`"`)
			writeProblem(w, r, probForbidden, "this request needs scope "+scope)
			return
		}
		h(w, r, p)
	}
}

// authenticate checks a bearer token: one in the form of a JWT against the
// JWKS when JWTs are enabled, any other against the token file.
func (s *Server) authenticate(ctx context.Context, tok string) (auth.Principal, error) {
	if s.cfg.JWT != nil && auth.LooksLikeJWT(tok) {
		return s.cfg.JWT.Authenticate(ctx, tok)
	}
	return s.cfg.Tokens.Authenticate(tok)
}

// retryAfter formats a wait as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
