// Package circuitbreaker provides the circuit breakers of MueJam Edge as Caddy modules, all
// built on internal/breaker:
//
//   - http.handlers.circuit_breaker, the `circuit_breaker` directive: a breaker per key
//     (default: the request's host) around the rest of the route, which also answers the
//     short-circuits of the transport below with a 503 problem document, and every 502,
//     503 or 504 error of the rest of the route (reverse_proxy's dial errors, timeouts, no
//     upstream left) with a problem document and Retry-After;
//   - http.reverse_proxy.transport.circuit_breaker: reverse_proxy's HTTP transport with a
//     breaker per upstream address, which sees connection errors, timeouts, statuses and
//     latencies of every round trip and refuses requests to an open upstream before they
//     are sent, as a dial error that reverse_proxy retries on another upstream;
//   - http.reverse_proxy.circuit_breakers.gobreaker, for reverse_proxy's JSON
//     circuit_breaker slot (one breaker for the whole proxy, fed by responses only).
//
// Breakers count only the upstream's health: connection errors, timeouts and 502, 503 and
// 504 by default, never a 500 that a client could provoke. With a probe configured, an open
// breaker is closed by a background prober as soon as the upstream's health endpoint answers
// healthy, within one probe interval of the upstream's return, instead of after a fixed
// open duration.
//
// Breakers live in a usage pool keyed by name, so their state survives `caddy reload`; the
// admin API lists them and lets operators open, close and reset them (GET /edge/breakers,
// POST /edge/breakers/{name}/open|close|reset).
package circuitbreaker

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is http.handlers.circuit_breaker: it passes each request through the breaker its
// Key names and counts the outcome of the rest of the route: the status of the response
// (against FailureStatus), or its error when it answered nothing (connection errors and
// timeouts always count), and the time until the response headers. An open breaker
// answers 503 at once with an RFC 9457 problem document and Retry-After: the open time
// left, or with a probe at most the probe interval, and at least 1 second.
//
// A request that reverse_proxy could not send because the breakers of all the upstreams it
// tried are open (transport circuit_breaker) gets the same 503 and counts as a failure: the
// route has no upstream left. Requests whose client went away, or whose body the client
// failed to send, count for nothing.
//
// The handler answers every 502, 503 and 504 error of the rest of the route itself (a
// response already under way is left alone), with a problem document, Cache-Control:
// no-store and Retry-After, so that every such status the edge makes tells clients when to
// come back; handle_errors does not see them. A response cache in front (edge_cache,
// stale-if-error) sees these statuses as upstream failures and can answer with a stale
// entry instead.
//
// Placeholders it sets:
//
//	{http.circuit_breaker.name}            the breaker the request went through
//	{http.circuit_breaker.short_circuited} true when a breaker refused the request
type Handler struct {
	// Key is a placeholder template that names the breaker of a request; requests with the
	// same key share a breaker. Default: {http.request.host}.
	Key string `json:"key,omitempty"`

	// MaxBreakers caps the number of breakers (distinct keys) this handler makes, which
	// bounds memory and metric series; requests with further keys pass unguarded and a
	// warning is logged once. Default: 100.
	MaxBreakers int `json:"max_breakers,omitempty"`

	Policy

	owner  *owner
	logger *zap.Logger
	probes *urlProbes
	prober *prober
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.circuit_breaker",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, registers the metrics, takes over the breakers that the same
// handler made in the previous config and starts the prober.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.Key == "" {
		h.Key = "{http.request.host}"
	}
	if h.MaxBreakers == 0 {
		h.MaxBreakers = 100
	}
	h.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := h.Validate(); err != nil {
		return err
	}
	h.owner = newOwner("handler "+h.Key, h.settings(), h.logger, h.MaxBreakers)
	if err := h.owner.adoptGroup(); err != nil {
		return err
	}
	if h.Probe != nil {
		h.Probe.provision()
		h.probes = newURLProbes(h.Probe)
		h.prober = h.startProber(ctx, h.owner, h.probes.targets, h.probes.check)
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.MaxBreakers < 0 {
		return errMaxBreakers
	}
	return h.validate(false)
}

// Cleanup stops the prober and releases the handler's breakers.
func (h *Handler) Cleanup() error {
	h.prober.stop()
	h.probes.close()
	if h.owner != nil {
		h.owner.release()
	}
	return nil
}

// ServeHTTP guards the rest of the route with the request's breaker.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	defer panics.Reabort(&err)
	defer panics.Recover(h.logger, "circuit_breaker.serve", &err)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	name := repl.ReplaceAll(h.Key, "")
	e, err := h.owner.get(name)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	var done breaker.Done
	if e != nil { // else over max_breakers: unguarded
		repl.Set("http.circuit_breaker.name", name)
		if done, err = e.allow(); err != nil {
			repl.Set("http.circuit_breaker.short_circuited", true)
			return writeProblem(w, r, http.StatusServiceUnavailable, h.retryAfter(e.b.Load()))
		}
	}

	body := watchBody(r)
	rec := &recorder{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, start: time.Now()}
	err = next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.latency = time.Since(rec.start)
	}
	oe, shortCircuited := openErrorOf(r, err)
	if shortCircuited {
		repl.Set("http.circuit_breaker.short_circuited", true)
	}
	if done != nil {
		done(h.result(r, rec.status, err, shortCircuited, body), rec.latency)
	}
	if err == nil || rec.status != 0 {
		return err
	}
	status := errorStatus(err)
	if status != http.StatusBadGateway && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
		return err
	}
	var retryAfter time.Duration
	switch {
	case shortCircuited:
		status, retryAfter = http.StatusServiceUnavailable, oe.retryAfter
	case e != nil:
		retryAfter = h.retryAfter(e.b.Load())
	}
	if !shortCircuited {
		if c := h.logger.Check(zap.ErrorLevel, "upstream failed; answered with a problem document"); c != nil {
			c.Write(zap.Int("status", status), zap.Error(err))
		}
	}
	return writeProblem(w, r, status, retryAfter)
}

// result classifies the outcome of the rest of the route: status is what it answered (0
// for nothing), err what it returned.
func (h *Handler) result(r *http.Request, status int, err error, shortCircuited bool, body *bodyWatch) breaker.Result {
	switch {
	case r.Context().Err() != nil:
		return breaker.Ignored // the client went away: says nothing about the upstream
	case body.failed():
		return breaker.Ignored // the client's request body broke off: the same
	case shortCircuited:
		return breaker.Failure // every upstream tried is open
	case status != 0:
		// The upstream answered; an error after that (the client went away while the body
		// was copied) says nothing about it.
	case err == nil:
		status = http.StatusOK
	case upstreamError(err):
		return breaker.Failure // refused, reset, DNS, timed out
	default:
		status = errorStatus(err)
		if status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout {
			// No answer at all, and the proxy gave up: every upstream was marked down by
			// passive health ("no upstreams available") or none could be reached. That is an
			// outage whatever FailureStatus says, which lists the statuses of answers.
			return breaker.Failure
		}
	}
	if h.failed(status) {
		return breaker.Failure
	}
	return breaker.Success
}

// errorStatus is the status Caddy answers an error with.
func errorStatus(err error) int {
	if herr, ok := errors.AsType[caddyhttp.HandlerError](err); ok && herr.StatusCode != 0 {
		return herr.StatusCode
	}
	return http.StatusInternalServerError
}

// errMaxBreakers is the Validate error of a negative max_breakers.
var errMaxBreakers = errors.New("max breakers must not be negative")

// problems are the bodies of the answers the edge makes itself (RFC 9457). They name no
// breaker or upstream: those are upstream addresses, which are not the client's business.
var problems = map[int][]byte{
	http.StatusBadGateway: []byte(`{"type":"about:blank","title":"Bad Gateway","status":502,` +
		`"detail":"The service could not be reached; retry after the time in Retry-After."}` + "\n"),
	http.StatusServiceUnavailable: []byte(`{"type":"about:blank","title":"Service Unavailable","status":503,` +
		`"detail":"The service is failing and was not called; retry after the time in Retry-After."}` + "\n"),
	http.StatusGatewayTimeout: []byte(`{"type":"about:blank","title":"Gateway Timeout","status":504,` +
		`"detail":"The service did not answer in time; retry after the time in Retry-After."}` + "\n"),
}

// writeProblem answers with status (502, 503 or 504), its problem document (problemBody), and
// Retry-After in whole seconds (at least 1).
func writeProblem(w http.ResponseWriter, r *http.Request, status int, retryAfter time.Duration) error {
	secs := max(1, int(math.Ceil(retryAfter.Seconds())))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Retry-After", strconv.Itoa(secs))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(problemBody(r, status))
	return err
}

// problemBody is the problem document of status with the extension member request_id: the
// request's {http.request.uuid}, the X-Request-Id the edge sends the app server and logs, so a
// client's report finds the request in the edge's log. Without a Caddy replacer (unit
// tests), the document alone.
func problemBody(r *http.Request, status int) []byte {
	doc := problems[status]
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return doc
	}
	id, _ := repl.GetString("http.request.uuid")
	if id == "" {
		return doc
	}
	quoted, err := json.Marshal(id)
	if err != nil {
		return doc
	}
	out := make([]byte, 0, len(doc)+len(quoted)+16)
	out = append(out, doc[:len(doc)-2]...) // without "}\n"
	out = append(out, `,"request_id":`...)
	out = append(out, quoted...)
	return append(out, "}\n"...)
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

// bodyWatch wraps a request body and notes a read error: the client's request broke off
// (or was over a size limit), which says nothing about the upstream.
type bodyWatch struct {
	io.ReadCloser
	broke atomic.Bool
}

// watchBody wraps r's body (in place) in a bodyWatch, or returns nil when r has none.
func watchBody(r *http.Request) *bodyWatch {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &bodyWatch{ReadCloser: r.Body}
	r.Body = b
	return b
}

// Read reads the body, noting an error other than the end.
func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) {
		b.broke.Store(true)
	}
	return n, err
}

// failed reports whether reading the body failed. It may be called on nil.
func (b *bodyWatch) failed() bool { return b != nil && b.broke.Load() }

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.ResponseWriter         = (*recorder)(nil)
)
