package edgecache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/promreg"
)

// Outcomes of a lookup, as metric label values.
const (
	outcomeHit         = "hit"         // answered from a fresh entry
	outcomeStale       = "stale"       // answered from a stale entry (stale-while-revalidate, stale-if-error, max-stale)
	outcomeRevalidated = "revalidated" // the upstream answered 304 to a revalidation
	outcomeMiss        = "miss"        // forwarded: nothing usable stored
	outcomeCoalesced   = "coalesced"   // answered with a concurrent request's response
	outcomeBypass      = "bypass"      // forwarded without a lookup (bypass matchers)
)

// The cache's metrics, labelled by cache name (and outcome or source) only: never a key.
var (
	lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge", Subsystem: "cache", Name: "lookups_total",
		Help: "GET and HEAD requests by outcome: hit, stale, revalidated, miss, coalesced, bypass.",
	}, []string{"cache", "outcome"})
	purges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge", Subsystem: "cache", Name: "purges_total",
		Help: "Purges by source: response (Cache-Purge or an unsafe method), admin, remote (another node's).",
	}, []string{"cache", "source"})
	evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge", Subsystem: "cache", Name: "l1_evictions_total",
		Help: "L1 entries evicted to stay within l1_max_bytes.",
	}, []string{"cache"})
	l2Errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge", Subsystem: "cache", Name: "l2_errors_total",
		Help: "Valkey calls of the cache that failed or timed out.",
	}, []string{"cache"})
	l2Dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge", Subsystem: "cache", Name: "l2_writes_dropped_total",
		Help: "L2 writes dropped because the write queue was full.",
	}, []string{"cache"})
	l2Seconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "muejam_edge", Subsystem: "cache", Name: "l2_seconds",
		Help:    "Round-trip time of the cache's Valkey calls.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	}, []string{"cache"})
	l1Bytes   = prometheus.NewDesc("muejam_edge_cache_l1_bytes", "Approximate bytes of L1's entries.", []string{"cache"}, nil)
	l1Count   = prometheus.NewDesc("muejam_edge_cache_l1_entries", "Entries in L1 (Vary records included).", []string{"cache"}, nil)
	purgeRecs = prometheus.NewDesc("muejam_edge_cache_purge_records",
		"Purge records the node keeps (bounded by max_purge_records; each invalidates older entries with its tag until max_ttl + purge_settle has passed).", []string{"cache"}, nil)
	l2Bytes = prometheus.NewDesc("muejam_edge_cache_l2_bytes",
		"Memory used by the cache's Valkey (used_memory of the server, or summed over a cluster's primaries: all of it, which the cache dominates), as of the last probe (every 15s).", []string{"cache"}, nil)
	l2Count = prometheus.NewDesc("muejam_edge_cache_l2_entries",
		"Keys in the cache's Valkey (DBSIZE of the server, or summed over a cluster's primaries: all keys), as of the last probe (every 15s).", []string{"cache"}, nil)
)

// sizes reports the sizes of every store in the pool when scraped.
type sizes struct{}

func (sizes) Describe(ch chan<- *prometheus.Desc) {
	ch <- l1Bytes
	ch <- l1Count
	ch <- purgeRecs
	ch <- l2Bytes
	ch <- l2Count
}

// Collect sums by cache name: while a reload changes a cache's settings, its old and new
// stores both exist for a moment.
func (sizes) Collect(ch chan<- prometheus.Metric) {
	type total struct{ l1Bytes, l1Count, purgeRecs, l2Bytes, l2Count float64 }
	totals := map[string]*total{}
	stores.Range(func(_, v any) bool {
		s := v.(*store)
		t := totals[s.name]
		if t == nil {
			t = &total{}
			totals[s.name] = t
		}
		t.l1Bytes += float64(s.l1.WeightedSize())
		t.l1Count += float64(s.l1.EstimatedSize())
		t.purgeRecs += float64(s.purgeRecords())
		if s.l2 != nil {
			n, b := s.l2.sizes()
			t.l2Count, t.l2Bytes = float64(n), float64(b)
		}
		return true
	})
	for name, t := range totals {
		ch <- prometheus.MustNewConstMetric(l1Bytes, prometheus.GaugeValue, t.l1Bytes, name)
		ch <- prometheus.MustNewConstMetric(l1Count, prometheus.GaugeValue, t.l1Count, name)
		ch <- prometheus.MustNewConstMetric(purgeRecs, prometheus.GaugeValue, t.purgeRecs, name)
		ch <- prometheus.MustNewConstMetric(l2Bytes, prometheus.GaugeValue, t.l2Bytes, name)
		ch <- prometheus.MustNewConstMetric(l2Count, prometheus.GaugeValue, t.l2Count, name)
	}
}

var sizeCollector = sizes{}

// initSeries makes a cache's counters exist at zero from the start, so that rates and
// alerts see "nothing happened yet" rather than no series.
func initSeries(name string, withL2 bool) {
	for _, o := range []string{outcomeHit, outcomeStale, outcomeRevalidated, outcomeMiss, outcomeCoalesced, outcomeBypass} {
		lookups.WithLabelValues(name, o)
	}
	for _, src := range []string{"response", "admin", "remote"} {
		purges.WithLabelValues(name, src)
	}
	evictions.WithLabelValues(name)
	if withL2 {
		l2Errors.WithLabelValues(name)
		l2Dropped.WithLabelValues(name)
	}
}

// registerMetrics registers the collectors on a config's registry.
func registerMetrics(reg prometheus.Registerer) error {
	return promreg.Register(reg, lookups, purges, evictions, l2Errors, l2Dropped, l2Seconds, sizeCollector)
}
