package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// retryStatusCodes are the statuses worth asking again for: the server says
// it is busy or briefly broken, not that the request is wrong.
var retryStatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
}

func retryStatus(code int) bool {
	for _, c := range retryStatusCodes {
		if c == code {
			return true
		}
	}
	return false
}

// retryable decides whether a failed request is retried: retry statuses
// and connections the server dropped. A timeout or a cancelled context is
// final, so an unreachable host costs one timeout, not Retries of them.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var le *limitError
	if errors.As(err, &le) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return retryStatus(terr.StatusCode) || terr.Temporary()
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF)
}

// errTooManyRedirects ends a redirect chain longer than MaxRedirects.
var errTooManyRedirects = fmt.Errorf("stopped after %d redirects (a redirect loop?)", MaxRedirects)

// guardTransport refuses requests bale must not make: any request when
// offline, plain HTTP to hosts not allowed it, and a redirect beyond
// MaxRedirects. The redirect cap lives here, below the http.Client, because
// go-containerregistry's clients replace the standard 10-redirect policy
// with one that has no cap: a registry answering a redirect loop would
// otherwise be asked again and again, for ever.
type guardTransport struct {
	r    *Resolver
	next http.RoundTripper
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.r.opts.Offline {
		return nil, fmt.Errorf("%w: %s %s needs the network", ErrOffline, req.Method, req.URL.Redacted())
	}
	if redirects(req) >= MaxRedirects {
		return nil, errTooManyRedirects
	}
	switch req.URL.Scheme {
	case "https":
	case "http":
		if !g.r.allowHTTP(req.URL.Host) {
			if g.r.opts.PublicOnly && loopbackHost(req.URL.Host) {
				return nil, &egressError{addr: req.URL.Host}
			}
			return nil, fmt.Errorf("refusing plain HTTP to %s: not a loopback host and not in the insecure list", req.URL.Host)
		}
	default:
		return nil, fmt.Errorf("refusing URL scheme %q", req.URL.Scheme)
	}
	return g.next.RoundTrip(req)
}

// redirects counts the redirects that led to req: http.Client sets a
// followed request's Response to the redirect that caused it, whose
// Request is the one before.
func redirects(req *http.Request) int {
	n := 0
	for r := req.Response; r != nil && n <= MaxRedirects; r = r.Request.Response {
		n++
		if r.Request == nil {
			break
		}
	}
	return n
}

// limitError is a request given up on because it broke one of the
// Resolver's time or speed limits. It is not retried: a server that
// stalls, trickles or never finishes would only do it again.
type limitError struct {
	msg string
}

func (e *limitError) Error() string { return e.msg }

// Timeout marks the error as a timeout for net.Error-style checks.
func (e *limitError) Timeout() bool { return true }

// limits are the bounds limitTransport holds every request to.
type limits struct {
	// idle bounds the wait for response headers and then every pause
	// between body bytes.
	idle time.Duration
	// speed is the lowest average rate, in bytes per second, a body may
	// arrive at over each speedTime window; 0 turns the check off.
	speed     int64
	speedTime time.Duration
	// total bounds the whole request, body included.
	total time.Duration
}

// limitTransport holds each request to its limits: response headers
// within idle, no pause in the body longer than idle, no speedTime window
// averaging below speed, and the whole request within total. A pause limit
// alone is beaten by a server sending one byte every few seconds; a speed
// limit alone by one sending just enough forever; the overall deadline
// bounds what both let through, while staying far above what a large
// layer needs on a working link.
type limitTransport struct {
	next http.RoundTripper
	l    limits
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{l: t.l, cancel: cancel}
	w.idle = time.AfterFunc(t.l.idle, w.idleFired)
	w.total = time.AfterFunc(t.l.total, func() {
		w.fire(fmt.Sprintf("not finished within %s (the per-request deadline)", t.l.total))
	})
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		w.stop()
		if e := w.err(); e != nil && req.Context().Err() == nil {
			return nil, e
		}
		return nil, err
	}
	w.inBody.Store(true)
	w.idle.Reset(t.l.idle)
	if t.l.speed > 0 {
		w.mu.Lock() // checkSpeed reads w.speed under mu
		w.speed = time.AfterFunc(t.l.speedTime, w.checkSpeed)
		w.mu.Unlock()
	}
	resp.Body = &watchedBody{rc: resp.Body, w: w, ctx: req.Context()}
	return resp, nil
}

// watchdog cancels a request when it breaks a limit, and remembers which.
type watchdog struct {
	l      limits
	cancel context.CancelCauseFunc
	idle   *time.Timer
	total  *time.Timer
	inBody atomic.Bool  // response headers have arrived
	bytes  atomic.Int64 // body bytes since the last speed check
	mu     sync.Mutex
	speed  *time.Timer // under mu; nil until the body starts, or with no speed limit
	fired  *limitError // under mu
}

func (w *watchdog) idleFired() {
	if w.inBody.Load() {
		w.fire(fmt.Sprintf("no body bytes for %s", w.l.idle))
		return
	}
	w.fire(fmt.Sprintf("no response within %s", w.l.idle))
}

// checkSpeed ends one speedTime window: too few bytes in it ends the
// request, enough starts the next window.
func (w *watchdog) checkSpeed() {
	n := w.bytes.Swap(0)
	if float64(n) < float64(w.l.speed)*w.l.speedTime.Seconds() {
		w.fire(fmt.Sprintf("transfer slower than %d bytes/s over %s (%d bytes arrived; the low-speed limit)", w.l.speed, w.l.speedTime, n))
		return
	}
	w.mu.Lock()
	w.speed.Reset(w.l.speedTime)
	w.mu.Unlock()
}

func (w *watchdog) fire(msg string) {
	w.mu.Lock()
	if w.fired == nil {
		w.fired = &limitError{msg: msg}
	}
	err := w.fired
	w.mu.Unlock()
	w.cancel(err)
}

// err returns the limit the request broke, or nil.
func (w *watchdog) err() *limitError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// stop releases the request's context and timers.
func (w *watchdog) stop() {
	w.idle.Stop()
	w.total.Stop()
	w.mu.Lock()
	if w.speed != nil {
		w.speed.Stop()
	}
	w.mu.Unlock()
	w.cancel(context.Canceled)
}

// watchedBody counts body bytes for the speed check and restarts the
// pause timer on every read that made progress.
type watchedBody struct {
	rc  io.ReadCloser
	w   *watchdog
	ctx context.Context // the caller's: its cancel is not a broken limit
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.bytes.Add(int64(n))
		b.w.idle.Reset(b.w.l.idle)
	}
	if err != nil && !errors.Is(err, io.EOF) && b.ctx.Err() == nil {
		if e := b.w.err(); e != nil {
			err = e
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.stop()
	return b.rc.Close()
}

// get fetches url and returns the response of a 200; the transport has
// already retried what is worth retrying. The caller closes the body.
func (r *Resolver) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "bale")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp, nil
}

// retryTransport retries idempotent requests (GET, HEAD) on retry statuses
// and dropped connections, with exponential backoff and jitter, honouring
// Retry-After. It waits on a timer that ends the moment the request's
// context is done: go-containerregistry's own retries sleep without looking
// at the context, so they are switched off and this does the retrying for
// registries and chart repositories alike, and Ctrl-C stops at once.
type retryTransport struct {
	r    *Resolver // its retries and backoff
	next http.RoundTripper
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		var wait time.Duration
		switch {
		case err != nil:
			if attempt >= t.r.retries || !retryable(err) || ctx.Err() != nil {
				return nil, err
			}
		case retryStatus(resp.StatusCode) && attempt < t.r.retries:
			wait = retryAfter(resp)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		default:
			return resp, nil
		}
		if wait <= 0 {
			wait = t.r.backoff << attempt
			wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.r.after(wait):
		}
	}
}

// retryAfter reads a Retry-After header in seconds, capped so a hostile
// server cannot park bale.
func retryAfter(resp *http.Response) time.Duration {
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s <= 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, 30*time.Second)
}
