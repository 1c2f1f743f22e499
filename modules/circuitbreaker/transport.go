package circuitbreaker

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/muejam/edge/internal/breaker"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Transport is http.reverse_proxy.transport.circuit_breaker: reverse_proxy's standard HTTP
// transport (every option of transport http applies) with a circuit breaker per upstream
// address. It sees every round trip: connection errors and timeouts count as failures, as do
// the statuses in FailureStatus; the time until the response headers is the latency the
// slow-call condition measures.
//
// A request for an upstream whose breaker is open is not sent: RoundTrip returns a dial error,
// which reverse_proxy retries on another upstream when retries are configured (lb_retries or
// lb_try_duration; safe for every method, since nothing was sent). When no upstream is left,
// reverse_proxy fails the request; a circuit_breaker handler before reverse_proxy turns that
// into a 503 problem document with Retry-After.
type Transport struct {
	reverseproxy.HTTPTransport

	Policy

	owner *owner
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.circuit_breaker",
		New: func() caddy.Module { return new(Transport) },
	}
}

// Provision sets up the HTTP transport, registers the metrics and takes over the breakers
// of the previous config's transports with the same policy.
func (t *Transport) Provision(ctx caddy.Context) error {
	if err := t.validate(); err != nil {
		return err
	}
	if err := t.HTTPTransport.Provision(ctx); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	t.owner = newOwner("transport", t.settings(), ctx.Logger(), 0)
	return t.owner.adoptGroup()
}

// Validate checks the breaker policy.
func (t *Transport) Validate() error {
	return t.validate()
}

// Cleanup releases the breakers and the HTTP transport's idle connections.
func (t *Transport) Cleanup() error {
	if t.owner != nil {
		t.owner.release()
	}
	return t.HTTPTransport.Cleanup()
}

// RoundTrip sends req through the breaker of its upstream.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	di, ok := reverseproxy.GetDialInfo(req.Context())
	if !ok {
		return t.HTTPTransport.RoundTrip(req)
	}
	e, err := t.owner.get(di.Address)
	if err != nil {
		return nil, err
	}
	done, err := e.allow()
	if err != nil {
		oe := &openError{name: e.name, retryAfter: e.b.Load().RetryAfter()}
		noteOpen(req, oe)
		return nil, reverseproxy.NewDialError(oe)
	}
	start := time.Now()
	resp, err := t.HTTPTransport.RoundTrip(req)
	latency := time.Since(start)
	switch {
	case err != nil && errors.Is(err, context.Canceled) && req.Context().Err() != nil:
		done(breaker.Ignored, latency) // the client gave up
	case err != nil:
		done(breaker.Failure, latency) // refused, reset, timed out, ...
	case t.failed(resp.StatusCode):
		done(breaker.Failure, latency)
	default:
		done(breaker.Success, latency)
	}
	return resp, err
}

// Interface guards
var (
	_ caddy.Provisioner                                = (*Transport)(nil)
	_ caddy.Validator                                  = (*Transport)(nil)
	_ caddy.CleanerUpper                               = (*Transport)(nil)
	_ http.RoundTripper                                = (*Transport)(nil)
	_ reverseproxy.TLSTransport                        = (*Transport)(nil)
	_ reverseproxy.H2CTransport                        = (*Transport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*Transport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*Transport)(nil)
)
