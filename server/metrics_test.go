package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/testsupport/fakeclock"
)

// TestMetricsCached: unauthenticated scrapes in a loop gather the metrics
// (a job-store query, /proc reads) once per metricsTTL, not once each;
// after it the next scrape sees what changed.
func TestMetricsCached(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Now())
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
	clock.Advance(metricsTTL)
	if n := h.metric(`http_requests_total{code="200",method="GET",route="/metrics"}`); n != 100 {
		t.Fatalf("after metricsTTL: %v /metrics requests counted, want 100", n)
	}
	if n := gathered(); n != 2 {
		t.Fatalf("gathered %d times after metricsTTL, want 2", n)
	}
}
