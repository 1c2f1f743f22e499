package circuitbreaker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/promreg"
)

// The metrics of every breaker, labelled by breaker name only. Names are bounded: a
// handler makes at most max_breakers of them, a transport one per upstream address, and a
// breaker's series go when no config uses it any more.
var (
	stateGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "muejam_edge",
		Subsystem: "circuit_breaker",
		Name:      "state",
		Help:      "State of each circuit breaker: 0 closed, 1 half-open, 2 open.",
	}, []string{"breaker"})
	transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge",
		Subsystem: "circuit_breaker",
		Name:      "transitions_total",
		Help:      "State changes of each circuit breaker.",
	}, []string{"breaker", "from", "to"})
	shortCircuited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "muejam_edge",
		Subsystem: "circuit_breaker",
		Name:      "short_circuited_total",
		Help:      "Requests each circuit breaker answered without calling the upstream.",
	}, []string{"breaker"})
)

// registerMetrics registers the collectors on a config's registry, with the counter of
// recovered panics (request path and prober).
func registerMetrics(reg prometheus.Registerer) error {
	if err := panics.Register(reg); err != nil {
		return err
	}
	return promreg.Register(reg, stateGauge, transitions, shortCircuited)
}

func observeState(name string, s breaker.State) {
	stateGauge.WithLabelValues(name).Set(float64(s))
}

func observeChange(name string, from, to breaker.State) {
	observeState(name, to)
	transitions.WithLabelValues(name, from.String(), to.String()).Inc()
}

func forgetMetrics(name string) {
	labels := prometheus.Labels{"breaker": name}
	stateGauge.DeletePartialMatch(labels)
	transitions.DeletePartialMatch(labels)
	shortCircuited.DeletePartialMatch(labels)
}
