package piiscrub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/pii"
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

// registerMetrics registers the counter on a config's registry; it is already there when
// another module of the same config registered it first.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := reg.Register(redactions); err != nil {
		if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
			return err
		}
	}
	return nil
}
