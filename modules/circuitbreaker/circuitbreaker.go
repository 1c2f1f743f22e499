// Package circuitbreaker provides the circuit breakers of MueJam Edge as Caddy modules, all
// built on internal/breaker:
//
//   - http.handlers.circuit_breaker, the `circuit_breaker` directive: a breaker per key
//     (default: the request's host) around the rest of the route, which also answers the
//     short-circuits of the transport below with a 503 problem document;
//   - http.reverse_proxy.transport.circuit_breaker: reverse_proxy's HTTP transport with a
//     breaker per upstream address, which sees connection errors, timeouts, statuses and
//     latencies of every round trip and refuses requests to an open upstream before they
//     are sent, as a dial error that reverse_proxy retries on another upstream;
//   - http.reverse_proxy.circuit_breakers.gobreaker, for reverse_proxy's JSON
//     circuit_breaker slot (one breaker for the whole proxy, fed by responses only).
//
// Breakers live in a usage pool keyed by name, so their state survives `caddy reload`; the
// admin API lists them and lets operators open, close and reset them (GET /edge/breakers,
// POST /edge/breakers/{name}/open|close|reset).
package circuitbreaker

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/breaker"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is http.handlers.circuit_breaker: it passes each request through the breaker its
// Key names and counts the outcome of the rest of the route (the status it answers with,
// or its error, and the time until the response headers). An open breaker answers 503 at
// once with an RFC 9457 problem document and Retry-After set to the open time left.
//
// A request that reverse_proxy could not send because the breakers of all the upstreams it
// tried are open (transport circuit_breaker) gets the same 503, and does not count against
// this handler's breaker.
//
// Placeholders it sets:
//
//	{http.circuit_breaker.name}            the breaker the request went through
//	{http.circuit_breaker.short_circuited} true when a breaker refused the request
//
// A response cache in front of this handler (edge_cache, stale-if-error) recognises a
// short-circuit by the second placeholder or by the 503 status.
type Handler struct {
	// Key is a placeholder template that names the breaker of a request; requests with the
	// same key share a breaker. Default: {http.request.host}.
	Key string `json:"key,omitempty"`

	// MaxBreakers caps the number of breakers (distinct keys) this handler makes, which
	// bounds memory and metric series; requests with further keys pass unguarded and a
	// warning is logged once. Default: 100.
	MaxBreakers int `json:"max_breakers,omitempty"`

	Policy

	owner *owner
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.circuit_breaker",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, registers the metrics and takes over the breakers that the same
// handler made in the previous config.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.Key == "" {
		h.Key = "{http.request.host}"
	}
	if h.MaxBreakers == 0 {
		h.MaxBreakers = 100
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	h.owner = newOwner("handler "+h.Key, h.settings(), ctx.Logger(), h.MaxBreakers)
	if err := h.Validate(); err != nil {
		return err
	}
	return h.owner.adoptGroup()
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.MaxBreakers < 0 {
		return errMaxBreakers
	}
	return h.validate()
}

// Cleanup releases the handler's breakers.
func (h *Handler) Cleanup() error {
	if h.owner != nil {
		h.owner.release()
	}
	return nil
}

// ServeHTTP guards the rest of the route with the request's breaker.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	name := repl.ReplaceAll(h.Key, "")
	e, err := h.owner.get(name)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	if e == nil { // over max_breakers
		return next.ServeHTTP(w, r)
	}
	repl.Set("http.circuit_breaker.name", name)
	done, err := e.allow()
	if err != nil {
		repl.Set("http.circuit_breaker.short_circuited", true)
		return writeOpen(w, e.b.Load().RetryAfter())
	}

	rec := &recorder{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, start: time.Now()}
	err = next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.latency = time.Since(rec.start)
	}
	if oe, ok := openErrorOf(r, err); ok {
		done(breaker.Ignored, 0)
		repl.Set("http.circuit_breaker.short_circuited", true)
		if rec.status != 0 {
			return err
		}
		return writeOpen(w, oe.retryAfter)
	}
	done(h.result(r, rec.status, err), rec.latency)
	return err
}

// result classifies the outcome of the rest of the route.
func (h *Handler) result(r *http.Request, status int, err error) breaker.Result {
	if r.Context().Err() != nil {
		return breaker.Ignored // the client went away: says nothing about the upstream
	}
	if err != nil {
		if herr, ok := err.(caddyhttp.HandlerError); ok && herr.StatusCode != 0 {
			status = herr.StatusCode
		} else {
			status = http.StatusInternalServerError
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	if h.failed(status) {
		return breaker.Failure
	}
	return breaker.Success
}

// errMaxBreakers is the Validate error of a negative max_breakers.
var errMaxBreakers = errors.New("max breakers must not be negative")

// problem is the body of a short-circuited request (RFC 9457). It names no breaker: breaker
// names are upstream addresses, which are not the client's business.
var problem = []byte(`{"type":"about:blank","title":"Service Unavailable","status":503,` +
	`"detail":"The service is failing and was not called; retry after the time in Retry-After."}` + "\n")

// writeOpen answers a short-circuited request: 503, a problem document, and Retry-After in
// whole seconds (at least 1).
func writeOpen(w http.ResponseWriter, retryAfter time.Duration) error {
	secs := max(1, int(math.Ceil(retryAfter.Seconds())))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Retry-After", strconv.Itoa(secs))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, err := w.Write(problem)
	return err
}

// recorder notes the final status of a response and when its headers went out.
type recorder struct {
	*caddyhttp.ResponseWriterWrapper
	start   time.Time
	status  int
	latency time.Duration
}

// WriteHeader records the first final status.
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.latency = time.Since(r.start)
	}
	r.ResponseWriterWrapper.WriteHeader(code)
}

// Write records an implicit 200.
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriterWrapper.Write(p)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.ResponseWriter         = (*recorder)(nil)
)
