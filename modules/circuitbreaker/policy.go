package circuitbreaker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/muejam/edge/internal/breaker"
)

// Policy configures the breakers of a module: when they trip, how long they stay open, how
// they find out that the upstream is back, and which responses count as failures. Trip
// conditions combine: a breaker opens as soon as any configured condition holds. With no
// condition configured, a breaker opens after 5 consecutive failures.
//
// Only the upstream's health counts: connection errors (refused, reset, DNS), timeouts and
// the statuses of FailureStatus (default 502, 503 and 504). A 500, which a client can often
// provoke with a request the application cannot handle, is no failure unless listed.
type Policy struct {
	// ConsecutiveFailures opens the breaker after this many failures in a row. A burst of
	// refused connections meets it in milliseconds.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`

	// FailureRatio opens the breaker when the share of failed requests in the rolling window
	// reaches it (a number in (0, 1]), once the window holds at least MinRequests requests.
	FailureRatio float64 `json:"failure_ratio,omitempty"`

	// SlowRatio opens the breaker when the share of slow requests (SlowThreshold or longer
	// until the response headers) in the rolling window reaches it (a number in (0, 1]), once
	// the window holds at least MinRequests requests.
	SlowRatio float64 `json:"slow_ratio,omitempty"`

	// SlowThreshold is the latency from which a request counts as slow. Required with
	// SlowRatio.
	SlowThreshold caddy.Duration `json:"slow_threshold,omitempty"`

	// MinRequests is the number of requests the rolling window must hold before a ratio
	// can trip the breaker. Default: 10.
	MinRequests int `json:"min_requests,omitempty"`

	// Window is the span of the rolling window of the ratio conditions. Default: 10s.
	Window caddy.Duration `json:"window,omitempty"`

	// OpenDuration is how long a tripped breaker short-circuits requests before it lets
	// half-open requests through. With Probe, a healthy probe closes it sooner: the open
	// duration is then the upper bound, for an upstream whose health endpoint stays
	// unhealthy while its other answers would be good. Default: 10s.
	OpenDuration caddy.Duration `json:"open_duration,omitempty"`

	// MaxOpenDuration, when longer than OpenDuration, makes the open duration double on
	// every trip that follows a failed half-open request or a close by a probe, up to this
	// cap. Default: OpenDuration (fixed).
	MaxOpenDuration caddy.Duration `json:"max_open_duration,omitempty"`

	// HalfOpenProbes is the number of requests a half-open breaker lets through; it closes
	// when they all succeed and opens again at the first failure. Default: 1.
	HalfOpenProbes int `json:"half_open_probes,omitempty"`

	// FailureStatus lists the response status codes that count as failures; a one-digit
	// entry stands for its class (5 is 5xx). Connection errors, timeouts and the proxy's
	// own 502/503/504 errors (no upstream answered at all) always count. Default: 502, 503
	// and 504.
	FailureStatus []int `json:"failure_status,omitempty"`

	// Probe, when set, makes a background prober request the upstream's health endpoint
	// while a breaker is open or half-open, and close the breaker at the first healthy
	// answer instead of waiting for the open duration to end.
	Probe *Probe `json:"probe,omitempty"`
}

// Probe configures the active probes of open breakers. Every Interval, a prober requests
// Path from the upstream of each breaker that is open or half-open (not one an operator
// forced open) and closes the breaker as soon as one answers with a status of Status. A
// probe never counts as a request of the breaker, and nothing is probed while every breaker
// is closed.
type Probe struct {
	// Path is the path, with an optional query, of the upstream's health endpoint, such as
	// /v1/health. Required.
	Path string `json:"path,omitempty"`

	// Upstreams are the upstreams that the probes of a circuit_breaker handler or of the
	// gobreaker slot request: host:port (over http) or a URL with the http or https scheme
	// and no path. Any healthy one closes the breaker. Required for those two modules; the
	// circuit_breaker transport probes the upstream of each of its breakers through its own
	// HTTP transport (TLS and all) and takes none.
	Upstreams []string `json:"upstreams,omitempty"`

	// Interval is the time between two probes of an upstream. Retry-After, while probes
	// run, is at most this (and at least 1 second). Default: 250ms.
	Interval caddy.Duration `json:"interval,omitempty"`

	// Timeout bounds a probe, connecting included; a probe that runs out of time is
	// unhealthy, and no other probe of the same upstream starts before it ends. Default: 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Status lists the statuses of a healthy answer; a one-digit entry stands for its
	// class. Default: 2xx.
	Status []int `json:"status,omitempty"`

	urls []string // Upstreams as URLs with Path, made in provision
}

// Defaults of Probe.
const (
	defaultProbeInterval = 250 * time.Millisecond
	defaultProbeTimeout  = time.Second
)

// defaultFailureStatus is the default of Policy.FailureStatus.
var defaultFailureStatus = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// settings returns the breaker settings of p.
func (p Policy) settings() breaker.Settings {
	s := breaker.Settings{
		ConsecutiveFailures: p.ConsecutiveFailures,
		FailureRatio:        p.FailureRatio,
		SlowCallRatio:       p.SlowRatio,
		SlowCallThreshold:   time.Duration(p.SlowThreshold),
		MinRequests:         p.MinRequests,
		Window:              time.Duration(p.Window),
		OpenDuration:        time.Duration(p.OpenDuration),
		MaxOpenDuration:     time.Duration(p.MaxOpenDuration),
		HalfOpenProbes:      p.HalfOpenProbes,
	}
	if s.ConsecutiveFailures == 0 && s.FailureRatio == 0 && s.SlowCallRatio == 0 {
		s.ConsecutiveFailures = 5
	}
	return s
}

// validate checks p's values. ownUpstream is true for the transport, whose probes go to
// the upstream of each breaker, and false for the modules whose probes need Upstreams.
func (p Policy) validate(ownUpstream bool) error {
	if err := checkStatuses("failure status", p.FailureStatus); err != nil {
		return err
	}
	if p.Probe != nil {
		if err := p.Probe.validate(ownUpstream); err != nil {
			return err
		}
	}
	return p.settings().Validate()
}

// checkStatuses reports an entry of codes that is neither a status code nor a class.
func checkStatuses(what string, codes []int) error {
	for _, code := range codes {
		if !validStatus(code) {
			return fmt.Errorf("%s %d is not a status code (100-599) or class (1-5)", what, code)
		}
	}
	return nil
}

func validStatus(code int) bool { return code >= 1 && code <= 5 || code >= 100 && code <= 599 }

// failed reports whether a response with this status counts as a failure.
func (p Policy) failed(status int) bool {
	codes := p.FailureStatus
	if len(codes) == 0 {
		codes = defaultFailureStatus
	}
	for _, code := range codes {
		if caddyhttp.StatusCodeMatches(status, code) {
			return true
		}
	}
	return false
}

// retryAfter is how long a client should wait before retrying a request that b refused or
// that failed: the rest of b's open period, or with probes at most one probe interval (the
// next probe may close it). It is zero when neither applies; Retry-After rounds it up to at
// least a second.
func (p Policy) retryAfter(b *breaker.Breaker) time.Duration {
	d := b.RetryAfter()
	if p.Probe != nil {
		if iv := time.Duration(p.Probe.Interval); d == 0 || d > iv {
			d = iv
		}
	}
	return d
}

// provision fills in the probe's defaults and makes its URLs. It runs after
// validate, which checked the upstreams.
func (pr *Probe) provision() {
	if pr.Interval == 0 {
		pr.Interval = caddy.Duration(defaultProbeInterval)
	}
	if pr.Timeout == 0 {
		pr.Timeout = caddy.Duration(defaultProbeTimeout)
	}
	if len(pr.Status) == 0 {
		pr.Status = []int{2}
	}
	pr.urls = pr.urls[:0]
	for _, u := range pr.Upstreams {
		base, _ := probeBase(u)
		pr.urls = append(pr.urls, base+pr.Path)
	}
}

// validate checks the probe. ownUpstream: see Policy.validate.
func (pr *Probe) validate(ownUpstream bool) error {
	switch {
	case !strings.HasPrefix(pr.Path, "/"):
		return fmt.Errorf("probe path %q does not start with /", pr.Path)
	case pr.Interval < 0:
		return errors.New("probe interval must not be negative")
	case pr.Timeout < 0:
		return errors.New("probe timeout must not be negative")
	case ownUpstream && len(pr.Upstreams) > 0:
		return errors.New("probe upstreams: the transport probes the upstream of each breaker; leave them out")
	case !ownUpstream && len(pr.Upstreams) == 0:
		return errors.New("probe needs upstreams to request")
	}
	if _, err := url.Parse(pr.Path); err != nil {
		return fmt.Errorf("probe path %q: %v", pr.Path, err)
	}
	for _, u := range pr.Upstreams {
		if _, err := probeBase(u); err != nil {
			return err
		}
	}
	return checkStatuses("probe status", pr.Status)
}

// probeBase returns the scheme and authority of a probe upstream (host:port or an http or
// https URL without a path), as a URL that Path completes.
func probeBase(upstream string) (string, error) {
	if !strings.Contains(upstream, "://") {
		if _, _, err := net.SplitHostPort(upstream); err != nil {
			return "", fmt.Errorf("probe upstream %q is not host:port or an http(s) URL", upstream)
		}
		return "http://" + upstream, nil
	}
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("probe upstream %q is not host:port or an http(s) URL without a path", upstream)
	}
	return u.Scheme + "://" + u.Host, nil
}

// healthy reports whether a probe answer with this status is a healthy one.
func (pr *Probe) healthy(status int) bool {
	for _, code := range pr.Status {
		if caddyhttp.StatusCodeMatches(status, code) {
			return true
		}
	}
	return false
}

// upstreamError reports whether err, the error of the rest of a route that answered
// nothing, is a connection error or a timeout of reverse_proxy's: those count as failures
// whatever the status list says.
func upstreamError(err error) bool {
	if _, ok := errors.AsType[reverseproxy.DialError](err); ok {
		return true
	}
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// openError is the error of a request that a transport breaker short-circuited. The
// transport returns it to reverse_proxy as a dial error (so that reverse_proxy retries the
// request on another upstream) and also leaves it in the request's vars under openVar,
// because reverse_proxy's DialError does not unwrap: the circuit_breaker handler finds it
// there when reverse_proxy gives up.
type openError struct {
	name       string
	retryAfter time.Duration
}

// openVar is the request var under which the transport leaves its openError (the one
// with the shortest Retry-After when it short-circuited several upstreams).
const openVar = "circuit_breaker.open"

// openPrefix starts the message of every openError.
const openPrefix = "circuit breaker open: "

func (e *openError) Error() string {
	return openPrefix + e.name
}

// Unwrap makes errors.Is(err, breaker.ErrOpen) hold.
func (e *openError) Unwrap() error { return breaker.ErrOpen }

// noteOpen leaves oe in the request's vars unless one that ends sooner is there.
func noteOpen(r *http.Request, oe *openError) {
	if prev, ok := caddyhttp.GetVar(r.Context(), openVar).(*openError); !ok || oe.retryAfter < prev.retryAfter {
		caddyhttp.SetVar(r.Context(), openVar, oe)
	}
}

// openErrorOf returns the openError behind err, the error of the rest of the route, when
// reverse_proxy failed the request because transport breakers refused it.
func openErrorOf(r *http.Request, err error) (*openError, bool) {
	if err == nil {
		return nil, false
	}
	if oe, ok := errors.AsType[*openError](err); ok {
		return oe, true
	}
	var de reverseproxy.DialError
	if !errors.As(err, &de) || !strings.HasPrefix(de.Error(), openPrefix) {
		return nil, false
	}
	oe, ok := caddyhttp.GetVar(r.Context(), openVar).(*openError)
	return oe, ok
}

// startProber starts the prober of the breakers o holds when p has a probe, and returns nil
// otherwise. targets names what to request for a breaker; check requests it.
func (p Policy) startProber(ctx caddy.Context, o *owner, targets func(*entry) []string,
	check func(ctx context.Context, target string) error) *prober {
	if p.Probe == nil {
		return nil
	}
	return startProber(ctx, time.Duration(p.Probe.Interval), time.Duration(p.Probe.Timeout), ctx.Logger(),
		func() map[string][]*entry { return dueEntries(o.entries(), targets) }, check)
}

// urlProbes are the probes of a handler or of the gobreaker slot: GET requests to the
// probe's URLs over a transport of their own.
//
// A URL that answers healthy does not close the breaker while the breaker of a
// circuit_breaker transport for the same host:port is open: the route would still refuse
// its requests (and each refusal counts against reverse_proxy's passive health), so the
// handler waits for the transport's own probe, at most one more interval.
type urlProbes struct {
	probe *Probe
	rt    *http.Transport
	hosts map[string]string // URL: its host:port
}

// newURLProbes returns the probes of pr (provisioned), or nil without one.
func newURLProbes(pr *Probe) *urlProbes {
	if pr == nil {
		return nil
	}
	u := &urlProbes{probe: pr, rt: newProbeTransport(time.Duration(pr.Timeout)), hosts: map[string]string{}}
	for _, raw := range pr.urls {
		if pu, err := url.Parse(raw); err == nil {
			host := pu.Host
			if pu.Port() == "" {
				host = net.JoinHostPort(pu.Hostname(), map[string]string{"http": "80", "https": "443"}[pu.Scheme])
			}
			u.hosts[raw] = host
		}
	}
	return u
}

// targets returns the probe's URLs, the same for every breaker.
func (u *urlProbes) targets(*entry) []string { return u.probe.urls }

// check requests a probe URL.
func (u *urlProbes) check(ctx context.Context, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	if err := probeOnce(u.rt, req, u.probe.healthy); err != nil {
		return err
	}
	if host := u.hosts[target]; host != "" && transportOpen(host) {
		return fmt.Errorf("healthy, but the transport's breaker of %s is still open", host)
	}
	return nil
}

// close drops the idle connections of the probes. It may be called on nil.
func (u *urlProbes) close() {
	if u != nil {
		u.rt.CloseIdleConnections()
	}
}
