package circuitbreaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
)

// prober closes open breakers when their upstream is healthy again. Every interval it asks
// due for the breakers to probe, grouped by target (a URL or an upstream address), runs
// check once for each target that has no probe in flight, and closes the target's breakers
// when check returns nil. Each probe runs in its own goroutine under timeout; a panic in a
// round or a probe is recovered, logged and counted, and probing goes on. stop ends the
// loop and waits for every probe, which the stopped context cancels.
type prober struct {
	interval time.Duration
	timeout  time.Duration
	logger   *zap.Logger
	due      func() map[string][]*entry
	check    func(ctx context.Context, target string) error

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]bool // targets with a probe running
}

// startProber starts probing with the given intervals, until stop or until ctx ends.
func startProber(ctx context.Context, interval, timeout time.Duration, logger *zap.Logger,
	due func() map[string][]*entry, check func(ctx context.Context, target string) error) *prober {
	p := &prober{interval: interval, timeout: timeout, logger: logger, due: due, check: check,
		inflight: map[string]bool{}}
	ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(1)
	go p.loop(ctx)
	return p
}

// stop ends probing and waits for the probes in flight. It may be called on a nil prober and
// more than once.
func (p *prober) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
}

func (p *prober) loop(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.round(ctx)
		}
	}
}

// round starts a probe of every due target that has none in flight.
func (p *prober) round(ctx context.Context) {
	defer panics.Recover(p.logger, "circuit_breaker.probe", nil)
	for target, entries := range p.due() {
		p.mu.Lock()
		busy := p.inflight[target]
		p.inflight[target] = true
		p.mu.Unlock()
		if busy {
			continue
		}
		p.wg.Add(1)
		go p.probe(ctx, target, entries)
	}
}

// probe checks target once and closes entries' breakers when it is healthy.
func (p *prober) probe(ctx context.Context, target string, entries []*entry) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.inflight, target)
		p.mu.Unlock()
	}()
	defer panics.Recover(p.logger, "circuit_breaker.probe", nil)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	err := p.check(ctx, target)
	if err != nil {
		if c := p.logger.Check(zap.DebugLevel, "circuit breaker probe unhealthy"); c != nil {
			c.Write(zap.String("target", target), zap.Duration("duration", time.Since(start)), zap.Error(err))
		}
		return
	}
	for _, e := range entries {
		b := e.b.Load()
		// An operator's force-open stands; a breaker closed meanwhile needs nothing.
		if b == nil || b.State() == breaker.Closed || b.Snapshot().Forced {
			continue
		}
		b.Close()
		p.logger.Info("circuit breaker closed by a healthy probe",
			zap.String("breaker", e.name), zap.String("target", target), zap.Duration("duration", time.Since(start)))
	}
}

// dueEntries groups the breakers among held that a prober should probe now (open or
// half-open, not forced open) by the targets that targets names for each.
func dueEntries(held []*entry, targets func(*entry) []string) map[string][]*entry {
	var due map[string][]*entry
	for _, e := range held {
		b := e.b.Load()
		if b == nil || b.State() == breaker.Closed || b.Snapshot().Forced {
			continue
		}
		if due == nil {
			due = map[string][]*entry{}
		}
		for _, t := range targets(e) {
			due[t] = append(due[t], e)
		}
	}
	return due
}

// newProbeTransport returns the HTTP transport of the probes of a handler or the gobreaker
// slot: no proxy from the environment, dials and TLS handshakes bounded by timeout, one idle
// connection per upstream.
func newProbeTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		TLSHandshakeTimeout: timeout,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
}

// errUnhealthy is the error of a probe answered with a status that is not healthy.
var errUnhealthy = errors.New("unhealthy status")

// probeOnce sends req with rt and returns nil when the answer's status is healthy. It reads
// (a little of) and closes the body, so that the connection can serve the next probe.
func probeOnce(rt http.RoundTripper, req *http.Request, healthy func(int) bool) error {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if !healthy(resp.StatusCode) {
		return fmt.Errorf("%w %d", errUnhealthy, resp.StatusCode)
	}
	return nil
}
