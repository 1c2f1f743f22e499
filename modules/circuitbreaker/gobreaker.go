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
// the proxy and tells it only about responses (not about connection errors or timeouts), so
// while it is open every upstream counts as unavailable. For a breaker per upstream that also
// sees network errors, use the circuit_breaker transport instead.
type Gobreaker struct {
	// Name names the breaker in metrics and on the admin API. Default: reverse_proxy.
	Name string `json:"name,omitempty"`

	Policy

	owner *owner
	entry *entry
}

// CaddyModule returns the Caddy module information.
func (Gobreaker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.circuit_breakers.gobreaker",
		New: func() caddy.Module { return new(Gobreaker) },
	}
}

// Provision takes (or makes) the named breaker.
func (g *Gobreaker) Provision(ctx caddy.Context) error {
	if g.Name == "" {
		g.Name = "reverse_proxy"
	}
	if err := g.validate(); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	g.owner = newOwner("gobreaker", g.settings(), ctx.Logger(), 0)
	e, err := g.owner.get(g.Name)
	g.entry = e
	return err
}

// Validate checks the breaker policy.
func (g *Gobreaker) Validate() error {
	return g.validate()
}

// Cleanup releases the breaker.
func (g *Gobreaker) Cleanup() error {
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
