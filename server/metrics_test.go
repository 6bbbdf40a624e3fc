package server

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock is a clock that moves only when a test moves it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

// Now is the clock's time.
func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestMetricsCached: unauthenticated scrapes in a loop gather the metrics
// (a job-store query, /proc reads) once per metricsTTL, not once each;
// after it the next scrape sees what changed.
func TestMetricsCached(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	h := startServer(t, "", func(c *Config) { c.Now = clock.Now })
	gathered := func() int {
		h.s.metrics.mu.Lock()
		defer h.s.metrics.mu.Unlock()
		return h.s.metrics.gathered
	}
	var first string
	for i := 0; i < 100; i++ {
		r := h.do(http.MethodGet, "/metrics", "", nil)
		if r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), "bale_build_queue_depth") {
			t.Fatalf("/metrics: %d %.200s", r.StatusCode, r.body)
		}
		if i == 0 {
			first = string(r.body)
		} else if string(r.body) != first {
			t.Fatal("a scrape within metricsTTL gathered the metrics again")
		}
	}
	if n := gathered(); n != 1 {
		t.Fatalf("100 scrapes within metricsTTL gathered %d times, want 1", n)
	}
	clock.advance(metricsTTL)
	if n := h.metric(`http_requests_total{code="200",method="GET",route="/metrics"}`); n != 100 {
		t.Fatalf("after metricsTTL: %v /metrics requests counted, want 100", n)
	}
	if n := gathered(); n != 2 {
		t.Fatalf("gathered %d times after metricsTTL, want 2", n)
	}
}
