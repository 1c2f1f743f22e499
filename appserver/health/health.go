// Package health answers GET /v1/health: it probes every dependency of the app server
// concurrently, each under a timeout, and reports each probe's result and latency.
package health

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/muejam/edge/appserver/httpjson"
)

// A Probe checks one dependency. It returns details worth reporting (may be nil) and an error
// when the dependency is not usable.
type Probe func(ctx context.Context) (map[string]any, error)

// Check is a named probe.
type Check struct {
	Name  string
	Probe Probe
}

// Result is one check's outcome in the report.
type Result struct {
	Status    string         `json:"status"` // "up" or "down"
	LatencyMS float64        `json:"latency_ms"`
	Error     string         `json:"error,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
}

// Report is the body of GET /v1/health.
type Report struct {
	Status    string            `json:"status"` // "healthy" or "unhealthy"
	Timestamp time.Time         `json:"timestamp"`
	Checks    map[string]Result `json:"checks"`
}

// Checker runs a fixed set of checks.
type Checker struct {
	checks  []Check
	timeout time.Duration
}

// New returns a Checker running checks, each bounded by timeout.
func New(timeout time.Duration, checks ...Check) *Checker {
	return &Checker{checks: checks, timeout: timeout}
}

// Run probes every dependency concurrently and reports. The report is healthy when every
// check is up.
func (c *Checker) Run(ctx context.Context) Report {
	rep := Report{Status: "healthy", Timestamp: time.Now().UTC(), Checks: make(map[string]Result, len(c.checks))}
	results := make([]Result, len(c.checks))
	var wg sync.WaitGroup
	for i, chk := range c.checks {
		wg.Go(func() { results[i] = c.probe(ctx, chk.Probe) })
	}
	wg.Wait()
	for i, chk := range c.checks {
		rep.Checks[chk.Name] = results[i]
		if results[i].Status != "up" {
			rep.Status = "unhealthy"
		}
	}
	return rep
}

func (c *Checker) probe(ctx context.Context, p Probe) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	details, err := p(ctx)
	res := Result{
		Status:    "up",
		LatencyMS: float64(time.Since(start).Microseconds()) / 1000,
		Details:   details,
	}
	if err != nil {
		res.Status, res.Error = "down", err.Error()
	}
	return res
}

// ServeHTTP answers 200 with a healthy report, 503 with an unhealthy one. Health must never
// be cached.
func (c *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := c.Run(r.Context())
	status := http.StatusOK
	if rep.Status != "healthy" {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, rep)
}
