package server

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds one token bucket per tenant and writes the IETF RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers): RateLimit-Policy names
// the quota (q requests per w seconds), RateLimit what is left of it (r)
// and the seconds until it is full again (t).
type limiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, byKey: map[string]*rate.Limiter{}}
}

// allow takes one request from tenant's bucket, setting the headers; past
// the limit it sets Retry-After and reports false.
func (l *limiter) allow(w http.ResponseWriter, tenant string) bool {
	l.mu.Lock()
	lim, ok := l.byKey[tenant]
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.byKey[tenant] = lim
	}
	l.mu.Unlock()
	now := time.Now()
	allowed := lim.AllowN(now, 1)
	left := lim.TokensAt(now)
	window := int64(math.Ceil(float64(l.burst) / float64(l.rate)))
	full := int64(math.Ceil((float64(l.burst) - left) / float64(l.rate)))
	h := w.Header()
	h.Set("RateLimit-Policy", fmt.Sprintf(`"tenant";q=%d;w=%d`, l.burst, window))
	h.Set("RateLimit", fmt.Sprintf(`"tenant";r=%d;t=%d`, int64(math.Max(0, math.Floor(left))), full))
	if !allowed {
		wait := time.Duration((1 - left) / float64(l.rate) * float64(time.Second))
		h.Set("Retry-After", retryAfter(wait))
	}
	return allowed
}
