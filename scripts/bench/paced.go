package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// pacedResult is the latency of an open-loop load at a fixed rate.
type pacedResult struct {
	Rate          int     `json:"rate"`
	Requests      int     `json:"requests"`
	Errors        int     `json:"errors"`
	P50ms, P99ms  float64 `json:"-"`
	MaxMs         float64 `json:"-"`
	UnexpectedRCs int     `json:"-"`
}

// pacedLoad sends GET url at rate requests per second for d, open loop: request i is released
// at start + i/rate whether or not earlier ones have answered, and its latency is measured from
// its release, so a stall counts for every request it delays (no coordinated omission).
// wrk's closed loop at saturation measures queueing; this measures what a client sees at a
// load the server can carry. status is the status every answer must have.
func pacedLoad(ctx context.Context, url string, headers []string, rate int, d time.Duration, status int) (pacedResult, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	defer client.CloseIdleConnections()
	n := int(d.Seconds() * float64(rate))
	due := make(chan time.Time, n)
	lat := make([]time.Duration, n)
	var (
		mu   sync.Mutex
		errs int
		bad  int
		next int
		wg   sync.WaitGroup
	)
	worker := func() {
		defer wg.Done()
		for at := range due {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				panic(err) // the URL is the harness's own
			}
			for _, h := range headers {
				k, v, _ := strings.Cut(h, ":")
				req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			took := time.Since(at)
			mu.Lock()
			switch {
			case err != nil:
				errs++
			case resp.StatusCode != status:
				bad++
			}
			lat[next] = took
			next++
			mu.Unlock()
		}
	}
	for range 64 {
		wg.Add(1)
		go worker()
	}
	start := time.Now().Add(10 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			break
		}
		// The clock starts when the request is released, after the generator's timer woke:
		// waiting for a free worker (a slow server) counts, the timer's own lateness (up to a
		// millisecond on a VM) does not.
		due <- time.Now()
	}
	close(due)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return pacedResult{}, err
	}
	lat = lat[:next]
	if len(lat) == 0 {
		return pacedResult{}, fmt.Errorf("no request completed")
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1e6 }
	return pacedResult{Rate: rate, Requests: len(lat), Errors: errs, UnexpectedRCs: bad,
		P50ms: ms(0.50), P99ms: ms(0.99), MaxMs: float64(lat[len(lat)-1]) / 1e6}, nil
}

// note says what pacedLoad measured, for the table's notes.
func (r pacedResult) note(id string, d time.Duration) string {
	s := fmt.Sprintf("%s paced at %d req/s for %s (open loop, latency from each request's release): p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d requests",
		id, r.Rate, d, r.P50ms, r.P99ms, r.MaxMs, r.Requests)
	if r.Errors+r.UnexpectedRCs > 0 {
		s += fmt.Sprintf("; %d errors, %d unexpected statuses", r.Errors, r.UnexpectedRCs)
	}
	return s
}
