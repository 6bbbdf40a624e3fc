package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	completed *prometheus.CounterVec
	duration  prometheus.Histogram
	builds    *prometheus.CounterVec
	releases  *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
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
	m.reg.MustRegister(m.requests, m.latency, m.completed, m.duration, m.builds, m.releases, depth,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeRequest(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}
