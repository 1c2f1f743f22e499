package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/promreg"
)

// The limiter's metrics, labelled by zone (and outcome) only: never a key, IP or user.
var (
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge",
		Subsystem: "rate_limit",
		Name:      "decisions_total",
		Help:      "Rate limit decisions by zone and outcome (allowed, denied, dry_run_denied).",
	}, []string{"zone", "outcome"})
	fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge",
		Subsystem: "rate_limit",
		Name:      "fallbacks_total",
		Help:      "Decisions made on local windows because Valkey was unavailable.",
	}, []string{"zone"})
	valkeySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "muejam_edge",
		Subsystem: "rate_limit",
		Name:      "valkey_seconds",
		Help:      "Round-trip time of the limiter's Valkey calls.",
		Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	}, []string{"zone"})
)

// registerMetrics registers the collectors on a config's registry.
func registerMetrics(reg prometheus.Registerer) error {
	return promreg.Register(reg, decisions, fallbacks, valkeySeconds)
}
