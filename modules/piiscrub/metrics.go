package piiscrub

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/pii"
	"github.com/muejam/edge/internal/promreg"
)

// redactions counts the values replaced in log lines by kind; never a value.
var redactions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "muejam_edge",
	Subsystem: "pii",
	Name:      "redactions_total",
	Help:      "Values replaced in log lines by the PII scrubber, by kind of personal data.",
}, []string{"kind"})

// kindCounters holds the counter of each kind, so that counting takes no label lookup.
var kindCounters = func() []prometheus.Counter {
	cs := make([]prometheus.Counter, len(pii.Kinds()))
	for _, k := range pii.Kinds() {
		cs[k] = redactions.WithLabelValues(k.String())
	}
	return cs
}()

// countRedaction is the scrubber's OnRedact callback.
func countRedaction(k pii.Kind) { kindCounters[k].Inc() }

// registerMetrics registers the collectors on a config's registry.
func registerMetrics(reg prometheus.Registerer) error {
	return promreg.Register(reg, redactions)
}
