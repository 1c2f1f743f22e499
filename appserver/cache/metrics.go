package cache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Lookup layers and outcomes: the labels of muejam_app_cache_lookups_total, a fixed set.
const (
	layerL1 = "l1"
	layerL2 = "l2"

	outcomeHit         = "hit"         // the layer had the key
	outcomeMiss        = "miss"        // it had not
	outcomeError       = "error"       // L2 answered with an error, timed out or held an undecodable value
	outcomeUnavailable = "unavailable" // L2 was not asked: not connected yet, or its breaker is open
)

// metrics are a Manager's Prometheus collectors.
type metrics struct {
	lookups       *prometheus.CounterVec
	l1Hit, l1Miss prometheus.Counter // of lookups, resolved once: an L1 hit costs no label lookup
	loads         *prometheus.CounterVec
	l1Bytes       prometheus.Collector
	evictions     prometheus.Counter
	l2Seconds     prometheus.Histogram
	l2Errors      prometheus.Counter
	l2Dropped     prometheus.Counter
	invalidations *prometheus.CounterVec
}

// l2Buckets resolve an L2 timeout of tens of milliseconds.
var l2Buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// newMetrics makes m's collectors and registers them on reg (none when nil). Every series
// of a bounded label set exists from the start, at zero, so rules and dashboards see it
// before the first lookup.
func newMetrics(m *Manager, reg prometheus.Registerer) (*metrics, error) {
	mt := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_app_cache_lookups_total",
			Help: "Lookups of the app server's cache by layer (l1, l2) and outcome (hit, miss; for l2 also error and unavailable: not asked because Valkey is down or its breaker open).",
		}, []string{"layer", "outcome"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_app_cache_loads_total",
			Help: "Loads run by GetOrLoad after a miss in both layers, by outcome (ok, error, panic); concurrent misses of one key share one load.",
		}, []string{"outcome"}),
		l1Bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "muejam_app_cache_l1_bytes",
			Help: "Approximate bytes held by the app server's in-memory cache (L1): encoded values, keys and tags.",
		}, func() float64 { return float64(m.l1.WeightedSize()) }),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "muejam_app_cache_evictions_total",
			Help: "Entries evicted from the app server's L1 to stay within its byte budget (not expirations or invalidations).",
		}),
		l2Seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "muejam_app_cache_l2_seconds",
			Help:    "Duration of the app server cache's Valkey calls (reads, writes, purges), including those that failed or timed out.",
			Buckets: l2Buckets,
		}),
		l2Errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "muejam_app_cache_l2_errors_total",
			Help: "Valkey calls of the app server's cache that failed or timed out (calls not made because the breaker is open are not counted).",
		}),
		l2Dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "muejam_app_cache_l2_writes_dropped_total",
			Help: "L2 writes dropped because the writer's queue was full.",
		}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_app_cache_invalidations_total",
			Help: "Tag invalidations applied by the app server's cache, by origin: local (Invalidate on this instance) or remote (a purge message from another instance).",
		}, []string{"origin"}),
	}
	mt.l1Hit, mt.l1Miss = mt.lookups.WithLabelValues(layerL1, outcomeHit), mt.lookups.WithLabelValues(layerL1, outcomeMiss)
	if m.conn != nil {
		for _, o := range []string{outcomeHit, outcomeMiss, outcomeError, outcomeUnavailable} {
			mt.lookups.WithLabelValues(layerL2, o)
		}
	}
	for _, o := range []string{"ok", "error", "panic"} {
		mt.loads.WithLabelValues(o)
	}
	for _, o := range []string{"local", "remote"} {
		mt.invalidations.WithLabelValues(o)
	}
	if reg == nil {
		return mt, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{mt.lookups, mt.loads, mt.l1Bytes, mt.evictions, mt.l2Seconds, mt.l2Errors, mt.l2Dropped, mt.invalidations} {
		errs = append(errs, reg.Register(c))
	}
	return mt, errors.Join(errs...)
}
