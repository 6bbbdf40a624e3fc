package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
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

// network is the HTTP side of bale: the transport and client every
// request goes through, held to Options' limits. A Resolver has one;
// NewTransport and NewClient make one for the far side's commands (push,
// publish, pull), so every network client bale has keeps the same rules.
type network struct {
	opts     Options // zero limits replaced by their defaults
	insecure map[string]bool
	// allow is Options.AllowHosts, lowercase, with PublicOnly.
	allow   map[string]bool
	retries int
	// backoff is the first retry delay; it doubles with each retry. Tests
	// shorten it.
	backoff time.Duration
	// after starts a retry's wait (time.After); tests see the wait begin.
	after  func(time.Duration) <-chan time.Time
	rt     http.RoundTripper
	client *http.Client
}

// newNetwork fills opts' zero limits with their defaults and builds the
// transport chain: guard (offline, plain HTTP, redirect cap) → retries →
// limits → opts.Transport.
func newNetwork(opts Options) (*network, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.SpeedLimit == 0 {
		opts.SpeedLimit = DefaultSpeedLimit
	}
	if opts.SpeedTime <= 0 {
		opts.SpeedTime = DefaultSpeedTime
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	n := &network{opts: opts, insecure: make(map[string]bool), backoff: 500 * time.Millisecond, after: time.After}
	switch {
	case opts.Retries == 0:
		n.retries = DefaultRetries
	case opts.Retries > 0:
		n.retries = opts.Retries
	}
	for _, h := range opts.Insecure {
		n.insecure[strings.ToLower(h)] = true
	}
	base := opts.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	if opts.PublicOnly {
		var err error
		if base, err = publicTransport(base, opts.AllowHosts); err != nil {
			return nil, err
		}
		n.allow = make(map[string]bool, len(opts.AllowHosts))
		for _, h := range opts.AllowHosts {
			n.allow[strings.ToLower(h)] = true
		}
	}
	l := limits{idle: opts.Timeout, speed: max(opts.SpeedLimit, 0), speedTime: opts.SpeedTime, total: opts.RequestTimeout}
	n.rt = &guardTransport{n: n, next: &retryTransport{n: n, next: &limitTransport{next: base, l: l}}}
	// guardTransport caps redirects for every client over n.rt, including
	// go-containerregistry's, whose CheckRedirect has no cap; this one
	// says the same for bale's own client.
	n.client = &http.Client{
		Transport: n.rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= MaxRedirects {
				return errTooManyRedirects
			}
			return nil
		},
	}
	return n, nil
}

// NewTransport returns the transport every bale network client goes
// through, over opts.Transport, with opts' rules (Root and Keychain are
// not used): --timeout for headers and between bytes, in both directions
// (an upload whose server stops reading is given up on like a download
// whose server stops sending), the low-speed window, the per-request
// deadline, at most MaxRedirects redirects, retries of idempotent requests,
// plain HTTP only to loopback or Insecure hosts, Offline and PublicOnly.
// A request that breaks a limit fails with an error naming the limit.
// go-containerregistry's clients and the AWS SDK take it as their
// transport.
func NewTransport(opts Options) (http.RoundTripper, error) {
	n, err := newNetwork(opts)
	if err != nil {
		return nil, err
	}
	return n.rt, nil
}

// NewClient returns an *http.Client over NewTransport(opts) whose redirect
// policy says why it stopped.
func NewClient(opts Options) (*http.Client, error) {
	n, err := newNetwork(opts)
	if err != nil {
		return nil, err
	}
	return n.client, nil
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
	n    *network
	next http.RoundTripper
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.n.opts.Offline {
		return nil, fmt.Errorf("%w: %s %s needs the network", ErrOffline, req.Method, req.URL.Redacted())
	}
	if redirects(req) >= MaxRedirects {
		return nil, errTooManyRedirects
	}
	switch req.URL.Scheme {
	case "https":
	case "http":
		if !g.n.allowHTTP(req.URL.Host) {
			if g.n.opts.PublicOnly && loopbackHost(req.URL.Host) {
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

// limitTransport holds each request to its limits: no pause longer than
// idle while its body is sent, response headers within idle of the last
// byte sent, no pause in the response body longer than idle, no speedTime
// window averaging below speed while bytes are meant to flow (the request
// body going out, the response body coming in), and the whole request
// within total. A pause limit alone is beaten by a server sending (or
// reading) one byte every few seconds; a speed limit alone by one sending
// just enough forever; the overall deadline bounds what both let through,
// while staying far above what a large layer needs on a working link.
type limitTransport struct {
	next http.RoundTripper
	l    limits
}

// Phases of a request, for the watchdog's checks and messages.
const (
	phaseSend    = iota // the request body is going out
	phaseHeaders        // waiting for the response headers
	phaseBody           // the response body is coming in
)

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{l: t.l, cancel: cancel, phase: -1}
	w.idle = time.AfterFunc(t.l.idle, w.idleFired)
	w.total = time.AfterFunc(t.l.total, func() {
		w.fire(fmt.Sprintf("not finished within %s (the per-request deadline)", t.l.total))
	})
	out := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		w.setPhase(phaseSend)
		out.Body = &sentBody{rc: req.Body, w: w}
		if req.GetBody != nil {
			// A request the transport sends again is watched the same way.
			out.GetBody = func() (io.ReadCloser, error) {
				rc, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &sentBody{rc: rc, w: w}, nil
			}
		}
	} else {
		w.setPhase(phaseHeaders)
	}
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		w.stop()
		if e := w.err(); e != nil && req.Context().Err() == nil {
			return nil, e
		}
		return nil, err
	}
	w.setPhase(phaseBody)
	resp.Body = &watchedBody{rc: resp.Body, w: w, ctx: req.Context()}
	return resp, nil
}

// watchdog cancels a request when it breaks a limit, and remembers which.
type watchdog struct {
	l      limits
	cancel context.CancelCauseFunc
	idle   *time.Timer
	total  *time.Timer
	bytes  atomic.Int64 // bytes moved since the last speed check
	mu     sync.Mutex
	phase  int         // under mu; -1 before the request starts
	speed  *time.Timer // under mu; running only while bytes are meant to flow
	fired  *limitError // under mu
	done   bool        // under mu: stopped
}

// setPhase moves the request on: the pause timer restarts, and the speed
// window runs while a body is moving, not while the server thinks.
func (w *watchdog) setPhase(p int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || p <= w.phase {
		return // phases only move on
	}
	w.phase = p
	w.idle.Reset(w.l.idle)
	flowing := p == phaseSend || p == phaseBody
	switch {
	case flowing && w.l.speed > 0:
		w.bytes.Store(0)
		if w.speed == nil {
			w.speed = time.AfterFunc(w.l.speedTime, w.checkSpeed)
		} else {
			w.speed.Reset(w.l.speedTime)
		}
	case w.speed != nil:
		w.speed.Stop()
	}
}

// progress records n bytes moved in either direction.
func (w *watchdog) progress(n int) {
	w.bytes.Add(int64(n))
	w.idle.Reset(w.l.idle)
}

func (w *watchdog) idleFired() {
	w.mu.Lock()
	p := w.phase
	w.mu.Unlock()
	switch p {
	case phaseSend:
		w.fire(fmt.Sprintf("the server took no request bytes for %s (the idle timeout)", w.l.idle))
	case phaseBody:
		w.fire(fmt.Sprintf("no body bytes for %s (the idle timeout)", w.l.idle))
	default:
		w.fire(fmt.Sprintf("no response within %s (the idle timeout)", w.l.idle))
	}
}

// checkSpeed ends one speedTime window: too few bytes in it ends the
// request, enough starts the next window.
func (w *watchdog) checkSpeed() {
	n := w.bytes.Swap(0)
	w.mu.Lock()
	flowing := !w.done && (w.phase == phaseSend || w.phase == phaseBody)
	w.mu.Unlock()
	if !flowing {
		return
	}
	if float64(n) < float64(w.l.speed)*w.l.speedTime.Seconds() {
		w.fire(fmt.Sprintf("transfer slower than %d bytes/s over %s (%d bytes moved; the low-speed limit)", w.l.speed, w.l.speedTime, n))
		return
	}
	w.mu.Lock()
	if !w.done {
		w.speed.Reset(w.l.speedTime)
	}
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
	w.done = true
	if w.speed != nil {
		w.speed.Stop()
	}
	w.mu.Unlock()
	w.cancel(context.Canceled)
}

// sentBody is a request body as the transport sends it: each read that
// made progress restarts the pause timer, and its end starts the wait for
// the response headers.
type sentBody struct {
	rc io.ReadCloser
	w  *watchdog
}

func (b *sentBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.progress(n)
	}
	if errors.Is(err, io.EOF) {
		b.w.setPhase(phaseHeaders)
	}
	return n, err
}

func (b *sentBody) Close() error { return b.rc.Close() }

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
		b.w.progress(n)
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
	n    *network // its retries and backoff
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
			if attempt >= t.n.retries || !retryable(err) || ctx.Err() != nil {
				return nil, err
			}
		case retryStatus(resp.StatusCode) && attempt < t.n.retries:
			wait = retryAfter(resp)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		default:
			return resp, nil
		}
		if wait <= 0 {
			wait = t.n.backoff << attempt
			wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.n.after(wait):
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
