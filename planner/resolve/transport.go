package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
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
	var te *timeoutError
	if errors.As(err, &te) {
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

// guardTransport refuses requests bale must not make: any request when
// offline, and plain HTTP to hosts not allowed it.
type guardTransport struct {
	r    *Resolver
	next http.RoundTripper
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.r.opts.Offline {
		return nil, fmt.Errorf("%w: %s %s needs the network", ErrOffline, req.Method, req.URL.Redacted())
	}
	switch req.URL.Scheme {
	case "https":
	case "http":
		if !g.r.allowHTTP(req.URL.Host) {
			return nil, fmt.Errorf("refusing plain HTTP to %s: not a loopback host and not in the insecure list", req.URL.Host)
		}
	default:
		return nil, fmt.Errorf("refusing URL scheme %q", req.URL.Scheme)
	}
	return g.next.RoundTrip(req)
}

// timeoutError is a request that got no response, or no body bytes, in
// time. It is not retried.
type timeoutError struct {
	d time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no response within %s", e.d)
}

// Timeout marks the error as a timeout for net.Error-style checks.
func (e *timeoutError) Timeout() bool { return true }

// timeoutTransport gives each request d to produce response headers and
// then d for every pause between body reads. A whole-request deadline would
// cut off large layers; a header-only one would hang on a server that stops
// mid-body.
type timeoutTransport struct {
	next http.RoundTripper
	d    time.Duration
}

func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	w := &watchdog{d: t.d, cancel: cancel}
	w.timer = time.AfterFunc(t.d, w.fire)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		w.stop()
		if w.expired() && req.Context().Err() == nil {
			return nil, &timeoutError{d: t.d}
		}
		return nil, err
	}
	resp.Body = &watchedBody{rc: resp.Body, w: w, ctx: req.Context()}
	return resp, nil
}

// watchdog cancels a request when its timer fires.
type watchdog struct {
	d      time.Duration
	cancel context.CancelFunc
	timer  *time.Timer
	mu     sync.Mutex
	fired  bool
}

func (w *watchdog) fire() {
	w.mu.Lock()
	w.fired = true
	w.mu.Unlock()
	w.cancel()
}

func (w *watchdog) expired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// stop releases the request's context and timer.
func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel()
}

// watchedBody restarts the watchdog on every read that made progress.
type watchedBody struct {
	rc  io.ReadCloser
	w   *watchdog
	ctx context.Context
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.timer.Reset(b.w.d)
	}
	if err != nil && !errors.Is(err, io.EOF) && b.w.expired() && b.ctx.Err() == nil {
		err = &timeoutError{d: b.w.d}
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
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
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
