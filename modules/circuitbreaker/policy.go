package circuitbreaker

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/muejam/edge/internal/breaker"
)

// Policy configures the breakers of a module: when they trip, how long they stay open, how
// they probe, and which responses count as failures. Trip conditions combine: a breaker
// opens as soon as any configured condition holds. With no condition configured, a breaker
// opens after 5 consecutive failures.
type Policy struct {
	// ConsecutiveFailures opens the breaker after this many failures in a row.
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
	// probes through. Default: 10s.
	OpenDuration caddy.Duration `json:"open_duration,omitempty"`

	// MaxOpenDuration, when longer than OpenDuration, makes the open duration double on
	// every trip that follows a failed probe, up to this cap. Default: OpenDuration (fixed).
	MaxOpenDuration caddy.Duration `json:"max_open_duration,omitempty"`

	// HalfOpenProbes is the number of requests a half-open breaker lets through; it closes
	// when they all succeed and opens again at the first failure. Default: 1.
	HalfOpenProbes int `json:"half_open_probes,omitempty"`

	// FailureStatus lists the response status codes that count as failures; a one-digit
	// entry stands for its class (5 is 5xx). Connection errors and timeouts always count.
	// Default: every 5xx status except 501.
	FailureStatus []int `json:"failure_status,omitempty"`
}

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

// validate checks p's values.
func (p Policy) validate() error {
	for _, code := range p.FailureStatus {
		if !(code >= 1 && code <= 5 || code >= 100 && code <= 599) {
			return fmt.Errorf("failure status %d is not a status code (100-599) or class (1-5)", code)
		}
	}
	return p.settings().Validate()
}

// failed reports whether a response with this status counts as a failure.
func (p Policy) failed(status int) bool {
	if len(p.FailureStatus) == 0 {
		return status >= 500 && status != http.StatusNotImplemented
	}
	for _, code := range p.FailureStatus {
		if caddyhttp.StatusCodeMatches(status, code) {
			return true
		}
	}
	return false
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
