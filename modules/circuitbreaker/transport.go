package circuitbreaker

import (
	"context"
	"net/http"
	"net/url"
	"strings"
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
// address. It sees every round trip: connection errors (refused, reset, DNS) and timeouts
// count as failures at once, as do the statuses in FailureStatus (default 502, 503, 504);
// the time until the response headers is the latency the slow-call condition measures. A
// round trip that failed because the client went away or its request body broke off counts
// for nothing. (Caddy's own circuit_breaker slot never hears of connection errors:
// reverse_proxy calls its RecordMetric only with the status of a response it got.)
//
// With a probe, a prober requests the probe path from each open upstream through this
// transport (its TLS, HTTP versions and dial timeout) every probe interval, and closes the
// upstream's breaker at the first healthy answer. Probes do not work with proxy_protocol.
//
// A request for an upstream whose breaker is open is not sent: RoundTrip returns a dial error,
// which reverse_proxy retries on another upstream when retries are configured (lb_retries or
// lb_try_duration; safe for every method, since nothing was sent). When no upstream is left,
// reverse_proxy fails the request; a circuit_breaker handler before reverse_proxy turns that
// into a 503 problem document with Retry-After.
type Transport struct {
	reverseproxy.HTTPTransport

	Policy

	owner  *owner
	prober *prober
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.circuit_breaker",
		New: func() caddy.Module { return new(Transport) },
	}
}

// Provision sets up the HTTP transport, registers the metrics, takes over the breakers of
// the previous config's transports with the same policy and starts the prober.
func (t *Transport) Provision(ctx caddy.Context) error {
	if err := t.validate(true); err != nil {
		return err
	}
	if err := t.HTTPTransport.Provision(ctx); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	t.owner = newOwner(transportGroup, t.settings(), ctx.Logger(), 0)
	if err := t.owner.adoptGroup(); err != nil {
		return err
	}
	if t.Probe != nil {
		t.Probe.provision()
		t.prober = t.startProber(ctx, t.owner, func(e *entry) []string { return []string{e.name} }, t.probe)
	}
	return nil
}

// Validate checks the breaker policy.
func (t *Transport) Validate() error {
	return t.validate(true)
}

// Cleanup stops the prober, releases the breakers and the HTTP transport's idle
// connections.
func (t *Transport) Cleanup() error {
	t.prober.stop()
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
	if prev := e.dial.Load(); prev == nil || *prev != di {
		e.dial.Store(&di)
	}
	done, err := e.allow()
	if err != nil {
		oe := &openError{name: e.name, retryAfter: t.retryAfter(e.b.Load())}
		noteOpen(req, oe)
		return nil, reverseproxy.NewDialError(oe)
	}
	var body *bodyWatch
	if req.Body != nil && req.Body != http.NoBody {
		req = req.WithContext(req.Context()) // a shallow copy: RoundTrip must not modify req
		body = watchBody(req)
	}
	start := time.Now()
	resp, err := t.HTTPTransport.RoundTrip(req)
	latency := time.Since(start)
	switch {
	case err != nil && req.Context().Err() != nil:
		done(breaker.Ignored, latency) // the client gave up
	case err != nil && body.failed():
		done(breaker.Ignored, latency) // the client's request body broke off
	case err != nil:
		done(breaker.Failure, latency) // refused, reset, timed out, ...
	case t.failed(resp.StatusCode):
		done(breaker.Failure, latency)
	default:
		done(breaker.Success, latency)
	}
	return resp, err
}

// dialInfoKey is the context key under which reverse_proxy hands the transport the
// DialInfo of a request (reverseproxy.GetDialInfo reads it); probes set it so that the
// transport dials them as it dials requests (unix sockets included).
const dialInfoKey caddy.CtxKey = "reverse_proxy.dial_info"

// probe requests the probe path from the upstream at addr through the HTTP transport, and
// returns nil when the answer is healthy.
func (t *Transport) probe(ctx context.Context, addr string) error {
	u, err := url.Parse(t.Probe.Path)
	if err != nil {
		return err
	}
	u.Host = addr
	if e := t.owner.lookup(addr); e != nil {
		if di := e.dial.Load(); di != nil {
			ctx = context.WithValue(ctx, dialInfoKey, *di)
			if strings.HasPrefix(di.Network, "unix") {
				u.Host = "localhost"
			}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	return probeOnce(&t.HTTPTransport, req, t.Probe.healthy)
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
