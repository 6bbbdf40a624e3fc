package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metricsTTL is how long one gathering of the metrics answers /metrics:
// the endpoint needs no token, and each gathering queries the job store
// and reads /proc, so a client scraping in a loop must not reach either
// at its own pace (a loop of scrapes raised tenants' status latency
// thirtyfold). Prometheus scrapes every 15 s or more.
const metricsTTL = time.Second

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	completed *prometheus.CounterVec
	duration  prometheus.Histogram
	builds    *prometheus.CounterVec
	releases  *prometheus.CounterVec

	downloadsOpen prometheus.Gauge
	downloadsCut  prometheus.Counter
	plannings     *prometheus.CounterVec

	now func() time.Time
	// mu guards the last gathering, its time and the count of gatherings.
	mu       sync.Mutex
	families []*dto.MetricFamily
	at       time.Time
	gathered int
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		now: s.cfg.Now,
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "HTTP request latency by route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_bootstrap_completed_total", Help: "Bootstrap pack exports finished, by outcome (succeeded, failed).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "export_bootstrap_duration_ms", Help: "Milliseconds from an export's request to its outcome.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 12),
		}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_release_completed_total", Help: "Release kit exports finished, by outcome (succeeded, failed).",
		}, []string{"outcome"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bale_builds_total", Help: "Plan builds run by the job workers, by outcome (succeeded, failed).",
		}, []string{"outcome"}),
		downloadsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bale_downloads_open", Help: "Downloads (packs, checksum and kit files) being sent.",
		}),
		downloadsCut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bale_downloads_cut_total", Help: "Downloads cut for moving slower than the minimum rate over a window.",
		}),
		plannings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bale_spec_plans_total", Help: "Plans of served specs requested, by how they were had: planned, or cached (nothing they depend on changed).",
		}, []string{"how"}),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bale_build_queue_depth", Help: "Build jobs waiting or running.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := s.store.queueDepth(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	m.reg.MustRegister(m.requests, m.latency, m.completed, m.duration, m.builds, m.releases, depth, m.downloadsOpen, m.downloadsCut, m.plannings,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Gather gathers the registry's metrics at most once per metricsTTL and
// otherwise returns the last gathering; concurrent scrapes share one.
func (m *metrics) Gather() ([]*dto.MetricFamily, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := m.now(); m.families == nil || now.Sub(m.at) >= metricsTTL || now.Before(m.at) {
		fams, err := m.reg.Gather()
		if err != nil {
			return fams, err
		}
		m.families, m.at = fams, now
		m.gathered++
	}
	return m.families, nil
}

// handler serves /metrics from Gather.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m, promhttp.HandlerOpts{})
}

func (m *metrics) observeRequest(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}
