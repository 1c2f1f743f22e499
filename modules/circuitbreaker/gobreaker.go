package circuitbreaker

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/muejam/edge/internal/breaker"
)

func init() {
	caddy.RegisterModule(Gobreaker{})
}

// Gobreaker is http.reverse_proxy.circuit_breakers.gobreaker, for the circuit_breaker field
// of reverse_proxy's JSON config. Caddy gives that slot one breaker for all the upstreams of
// the proxy, asks it (OK) whether upstreams may be selected, and tells it (RecordMetric)
// only the status and latency of the responses it got: a refused connection, a reset or a
// timeout never reaches it. Its failures are the responses with a status of FailureStatus
// (default 502, 503, 504); while it is open every upstream counts as unavailable, and
// reverse_proxy answers 503. For a breaker per upstream that counts connection errors and
// timeouts at once, use the circuit_breaker transport (or, with this slot, reverse_proxy's
// passive health checks, fail_duration, for connection errors).
//
// With a probe (its upstreams are required: the slot is never told the proxy's), a prober
// closes the open breaker as soon as one of them answers the probe path healthy.
type Gobreaker struct {
	// Name names the breaker in metrics and on the admin API. Default: reverse_proxy.
	Name string `json:"name,omitempty"`

	Policy

	owner  *owner
	entry  *entry
	probes *urlProbes
	prober *prober
}

// CaddyModule returns the Caddy module information.
func (Gobreaker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.circuit_breakers.gobreaker",
		New: func() caddy.Module { return new(Gobreaker) },
	}
}

// Provision takes (or makes) the named breaker and starts the prober.
func (g *Gobreaker) Provision(ctx caddy.Context) error {
	if g.Name == "" {
		g.Name = "reverse_proxy"
	}
	if err := g.validate(false); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	g.owner = newOwner("gobreaker", g.settings(), ctx.Logger(), 0)
	e, err := g.owner.get(g.Name)
	if err != nil {
		return err
	}
	g.entry = e
	if g.Probe != nil {
		g.Probe.provision()
		g.probes = newURLProbes(g.Probe)
		g.prober = g.startProber(ctx, g.owner, g.probes.targets, g.probes.check)
	}
	return nil
}

// Validate checks the breaker policy.
func (g *Gobreaker) Validate() error {
	return g.validate(false)
}

// Cleanup stops the prober and releases the breaker.
func (g *Gobreaker) Cleanup() error {
	g.prober.stop()
	g.probes.close()
	if g.owner != nil {
		g.owner.release()
	}
	return nil
}

// OK reports whether the upstreams may be selected: false while the breaker is open.
func (g *Gobreaker) OK() bool {
	return g.entry.b.Load().State() != breaker.Open
}

// RecordMetric counts a response of one of the upstreams.
func (g *Gobreaker) RecordMetric(statusCode int, latency time.Duration) {
	r := breaker.Success
	if g.failed(statusCode) {
		r = breaker.Failure
	}
	g.entry.b.Load().Record(r, latency)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gobreaker)(nil)
	_ caddy.Validator             = (*Gobreaker)(nil)
	_ caddy.CleanerUpper          = (*Gobreaker)(nil)
	_ reverseproxy.CircuitBreaker = (*Gobreaker)(nil)
)
