package circuitbreaker

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testenv/testcaddy"
	_ "github.com/muejam/edge/modules/edgecache" // edge_cache in front of the breakers
)

// The integration tests run one in-process Caddy (testcaddy) in front of real HTTP
// upstreams on 127.0.0.1. They are not parallel: they share that Caddy.
var client = &http.Client{Timeout: 10 * time.Second}

// loadCaddy (re)loads Caddy with one site whose body is site (fmt-formatted with args).
func loadCaddy(t testing.TB, site string, args ...any) {
	t.Helper()
	testcaddy.LoadSite(t, fmt.Sprintf(site, args...))
	client.CloseIdleConnections() // the old config's server closes them
}

// upstream is a real HTTP server on 127.0.0.1 that counts the requests it receives and
// answers with a status (and after a delay) the test sets.
type upstream struct {
	srv    *httptest.Server
	hits   atomic.Int64
	status atomic.Int64
	delay  atomic.Int64
	hold   atomic.Pointer[gate] // when set, requests wait at the gate
}

// gate holds requests: each announces itself on arrived and waits for release to close.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitArrivals waits for n requests at the gate.
func (g *gate) waitArrivals(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-g.arrived:
		case <-timeout:
			t.Fatalf("only %d of %d requests reached the upstream", i, n)
		}
	}
}

func newUpstream(t *testing.T, status int) *upstream {
	u := &upstream{}
	u.status.Store(int64(status))
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if g := u.hold.Load(); g != nil {
			g.arrived <- struct{}{}
			<-g.release
		}
		if d := u.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d)) // the upstream is slow; the test asserts nothing on it
		}
		w.WriteHeader(int(u.status.Load()))
		fmt.Fprintf(w, "from %s", r.Host)
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() { // first: let held requests finish, so that Close returns
		if g := u.hold.Load(); g != nil {
			g.open()
		}
	})
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// get requests path from the site and returns the status, the Retry-After header and body.
func get(t testing.TB, path string) (int, string, string) {
	t.Helper()
	status, retry, body, err := tryGet(path)
	if err != nil {
		t.Fatal(err)
	}
	return status, retry, body
}

// tryGet is get for other goroutines than the test's: the status is 0 on error.
func tryGet(path string) (int, string, string, error) {
	resp, err := client.Get(testcaddy.SiteURL + path)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body), err
}

// breakerState returns the state of the named breaker from GET /edge/breakers.
func breakerState(t *testing.T, name string) breaker.Snapshot {
	t.Helper()
	resp, err := client.Get(testcaddy.AdminURL + "/edge/breakers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list BreakerList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Breakers {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no breaker %q in %+v", name, list.Breakers)
	return breaker.Snapshot{}
}

func adminPost(t *testing.T, path string) int {
	t.Helper()
	resp, err := client.Post(testcaddy.AdminURL+path, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkShortCircuit checks a short-circuit answer: 503, a problem document, Retry-After.
func checkShortCircuit(t *testing.T, status int, retryAfter, body string, maxRetry int) {
	t.Helper()
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503", status, body)
	}
	var p struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != 503 || p.Title != "Service Unavailable" {
		t.Errorf("body %q is not the 503 problem document (%v)", body, err)
	}
	if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 || n > maxRetry {
		t.Errorf("Retry-After %q, want 1..%d seconds", retryAfter, maxRetry)
	}
}

// TestHandlerOpensShortCircuitsProbesAndCloses: an upstream answering 503s opens the
// breaker after the configured consecutive failures; short-circuited requests never reach
// it; after the open time exactly the allowed probes reach it; their success closes it.
func TestHandlerOpensShortCircuitsProbesAndCloses(t *testing.T) {
	up := newUpstream(t, http.StatusServiceUnavailable)
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 3
		open_duration 2s
		half_open_probes 2
	}
	reverse_proxy %s`, up.addr())
	name := "127.0.0.1" // the default key: the request's host
	before := testutil.ToFloat64(shortCircuited.WithLabelValues(name))

	for i := range 3 {
		if status, _, body := get(t, "/"); status != 503 || !strings.HasPrefix(body, "from ") {
			t.Fatalf("request %d: status %d (%s), want the upstream's 503", i, status, body)
		}
	}
	opened := time.Now()
	if s := breakerState(t, name); s.State != "open" {
		t.Fatalf("after 3 failures the breaker is %+v, want open", s)
	}
	for range 5 {
		status, retry, body := get(t, "/")
		checkShortCircuit(t, status, retry, body, 2)
	}
	if hits := up.hits.Load(); hits != 3 {
		t.Fatalf("upstream got %d requests, want 3: short-circuited requests reached it", hits)
	}
	if got := testutil.ToFloat64(shortCircuited.WithLabelValues(name)) - before; got != 5 {
		t.Errorf("short-circuited counter grew by %v, want 5", got)
	}
	if got := testutil.ToFloat64(stateGauge.WithLabelValues(name)); got != float64(breaker.Open) {
		t.Errorf("state gauge %v, want %d (open)", got, breaker.Open)
	}

	// After the open time: the upstream is healthy again, and holds the probes in flight.
	up.status.Store(http.StatusOK)
	g := newGate()
	up.hold.Store(g)
	time.Sleep(time.Until(opened.Add(2*time.Second + 50*time.Millisecond))) // the open duration
	type result struct{ status int }
	results := make(chan result, 5)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			status, _, _, _ := tryGet("/")
			results <- result{status}
		})
	}
	// The three requests over the probe limit come back at once, short-circuited.
	for range 3 {
		if r := <-results; r.status != 503 {
			t.Fatalf("a request over the probe limit got %d, want 503", r.status)
		}
	}
	g.waitArrivals(t, 2)
	if hits := up.hits.Load(); hits != 5 {
		t.Fatalf("upstream got %d requests, want 3 + exactly 2 probes", hits)
	}
	up.hold.Store(nil)
	g.open()
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != 200 {
			t.Errorf("a probe got %d, want 200", r.status)
		}
	}
	if s := breakerState(t, name); s.State != "closed" {
		t.Fatalf("after 2 good probes the breaker is %+v, want closed", s)
	}
	if status, _, _ := get(t, "/"); status != 200 || up.hits.Load() != 6 {
		t.Errorf("closed breaker: status %d, upstream hits %d; want 200 and 6", status, up.hits.Load())
	}
	if got := testutil.ToFloat64(transitions.WithLabelValues(name, "half_open", "closed")); got < 1 {
		t.Errorf("half_open>closed transitions %v, want at least 1", got)
	}
}

// TestStateSurvivesReload: a reload to another config with the same breaker settings keeps
// an open breaker open, with its open time running on.
func TestStateSurvivesReload(t *testing.T) {
	up := newUpstream(t, http.StatusBadGateway)
	const site = `
	circuit_breaker {
		consecutive_failures 2
		open_duration 1m
	}
	reverse_proxy %s
	header X-Config %s`
	loadCaddy(t, site, up.addr(), "one")
	get(t, "/")
	get(t, "/")
	if s := breakerState(t, "127.0.0.1"); s.State != "open" {
		t.Fatalf("breaker %+v, want open", s)
	}
	loadCaddy(t, site, up.addr(), "two")
	resp, err := client.Get(testcaddy.SiteURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Config") != "two" {
		t.Fatalf("X-Config %q: the reload did not happen", resp.Header.Get("X-Config"))
	}
	checkShortCircuit(t, resp.StatusCode, resp.Header.Get("Retry-After"), string(body), 60)
	if hits := up.hits.Load(); hits != 2 {
		t.Errorf("upstream got %d requests, want 2", hits)
	}
	// A config that changes the breaker's settings starts it afresh.
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 3
	}
	reverse_proxy %s`, up.addr())
	if status, _, _ := get(t, "/"); status != 502 {
		t.Errorf("after a settings change: status %d, want the upstream's 502 from a fresh breaker", status)
	}
}

// TestTransportConnectionErrorsTrip: an upstream that stops accepting connections trips
// its breaker; the handler answers the 502s of the refused dials with a problem document
// and Retry-After; then reverse_proxy does not dial the upstream and the handler answers
// 503, which counts against its own breaker (the route has no upstream left).
func TestTransportConnectionErrorsTrip(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	addr := up.addr()
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 100
	}
	reverse_proxy %s {
		transport circuit_breaker {
			consecutive_failures 2
			open_duration 30s
		}
	}`, addr)
	if status, _, _ := get(t, "/"); status != 200 {
		t.Fatalf("status %d before the upstream went away", status)
	}
	up.srv.Close() // connections are now refused
	for i := range 2 {
		status, retry, body := get(t, "/")
		if status != http.StatusBadGateway || retry != "1" || !strings.Contains(body, `"title":"Bad Gateway"`) {
			t.Fatalf("request %d to a closed port: %d, Retry-After %q, %s; want 502 with Retry-After 1 and a problem document", i, status, retry, body)
		}
	}
	if s := breakerState(t, addr); s.State != "open" || s.ConsecutiveFailures != 0 || s.Trips != 1 {
		t.Fatalf("breaker %+v, want open after one trip", s)
	}
	before := testutil.ToFloat64(shortCircuited.WithLabelValues(addr))
	status, retry, body := get(t, "/")
	checkShortCircuit(t, status, retry, body, 30)
	if got := testutil.ToFloat64(shortCircuited.WithLabelValues(addr)) - before; got != 1 {
		t.Errorf("the transport's breaker short-circuited %v requests, want 1", got)
	}
	// The 502s and the short-circuit counted against the handler's own breaker.
	if s := breakerState(t, "127.0.0.1"); s.State != "closed" || s.Failures != 3 || s.ConsecutiveFailures != 3 {
		t.Errorf("handler breaker %+v, want closed with 3 failures in a row (2 refused, 1 short-circuited)", s)
	}
}

// TestTransportSlowUpstreamTrips: responses slower than the threshold trip the breaker.
func TestTransportSlowUpstreamTrips(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	up.delay.Store(int64(150 * time.Millisecond))
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 100
	}
	reverse_proxy %s {
		transport circuit_breaker {
			slow_ratio 0.5
			slow_threshold 100ms
			min_requests 3
			open_duration 30s
		}
	}`, up.addr())
	for i := range 3 {
		if status, _, _ := get(t, "/"); status != 200 {
			t.Fatalf("slow request %d: status %d, want 200", i, status)
		}
	}
	if s := breakerState(t, up.addr()); s.State != "open" {
		t.Fatalf("after 3 slow calls the breaker is %+v, want open", s)
	}
	status, retry, body := get(t, "/")
	checkShortCircuit(t, status, retry, body, 30)
	if hits := up.hits.Load(); hits != 3 {
		t.Errorf("slow upstream got %d requests, want 3", hits)
	}
}

// TestTransportOneOfTwoUpstreamsFailing: only the failing upstream's breaker opens, and
// after the trip every client request succeeds on the healthy one, under concurrency. A
// short-circuit is a dial error to reverse_proxy: it retries the request at once, and
// counts a passive health failure (fail_duration), so that the load balancer stops picking
// the open upstream.
func TestTransportOneOfTwoUpstreamsFailing(t *testing.T) {
	bad := newUpstream(t, http.StatusServiceUnavailable)
	good := newUpstream(t, http.StatusOK)
	loadCaddy(t, `
	reverse_proxy %s %s {
		lb_policy round_robin
		lb_retries 1
		fail_duration 10s
		transport circuit_breaker {
			consecutive_failures 2
			open_duration 1m
		}
	}`, bad.addr(), good.addr())
	for bad.hits.Load() < 2 {
		get(t, "/") // round robin: every other request meets the failing upstream
	}
	if s := breakerState(t, bad.addr()); s.State != "open" {
		t.Fatalf("failing upstream's breaker %+v, want open", s)
	}
	var wg sync.WaitGroup
	var errs atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 25 {
				if status, _, _, _ := tryGet("/"); status != 200 {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := errs.Load(); n != 0 {
		t.Errorf("%d of 100 client requests failed after the trip, want 0", n)
	}
	if hits := bad.hits.Load(); hits != 2 {
		t.Errorf("failing upstream got %d requests, want only the 2 that tripped it", hits)
	}
	if s := breakerState(t, good.addr()); s.State != "closed" || s.Failures != 0 {
		t.Errorf("healthy upstream's breaker %+v, want closed without failures", s)
	}
}

// TestAdminOpenCloseReset drives a breaker from the admin API.
func TestAdminOpenCloseReset(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	loadCaddy(t, `
	circuit_breaker {
		open_duration 7s
	}
	reverse_proxy %s`, up.addr())
	get(t, "/")
	if code := adminPost(t, "/edge/breakers/127.0.0.1/open"); code != 200 {
		t.Fatalf("POST open: %d", code)
	}
	status, retry, body := get(t, "/")
	checkShortCircuit(t, status, retry, body, 7)
	if s := breakerState(t, "127.0.0.1"); s.State != "open" || !s.Forced {
		t.Errorf("after POST open: %+v", s)
	}
	if code := adminPost(t, "/edge/breakers/127.0.0.1/close"); code != 200 {
		t.Fatalf("POST close: %d", code)
	}
	if status, _, _ := get(t, "/"); status != 200 {
		t.Errorf("after POST close: status %d", status)
	}
	if code := adminPost(t, "/edge/breakers/127.0.0.1/reset"); code != 200 {
		t.Fatalf("POST reset: %d", code)
	}
	if s := breakerState(t, "127.0.0.1"); s.State != "closed" || s.Calls != 0 {
		t.Errorf("after POST reset: %+v", s)
	}
	for path, want := range map[string]int{
		"/edge/breakers/nosuch/open":   404,
		"/edge/breakers/127.0.0.1/fix": 404,
		"/edge/breakers/open":          404,
	} {
		if code := adminPost(t, path); code != want {
			t.Errorf("POST %s: %d, want %d", path, code, want)
		}
	}
	resp, err := client.Get(testcaddy.AdminURL + "/edge/breakers/127.0.0.1/open")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET of an action: %d, want 405", resp.StatusCode)
	}
}

// TestGobreakerSlot: the JSON circuit_breaker slot of reverse_proxy counts 502s (not
// 500s) and stops selecting the upstreams when its breaker opens.
func TestGobreakerSlot(t *testing.T) {
	up := newUpstream(t, http.StatusInternalServerError)
	testcaddy.Load(t, fmt.Sprintf(`{
		"admin": {"listen": "localhost:%d"},
		"apps": {"http": {"servers": {"srv0": {
			"listen": ["127.0.0.1:%d"],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [{
				"handler": "reverse_proxy",
				"upstreams": [{"dial": %q}],
				"circuit_breaker": {"type": "gobreaker", "name": "slot", "consecutive_failures": 2, "open_duration": "1m",
					"probe": {"path": "/v1/health", "upstreams": [%q], "interval": "100ms"}}
			}]}]
		}}}}
	}`, testcaddy.AdminPort, testcaddy.HTTPPort, up.addr(), up.addr()), "json")
	client.CloseIdleConnections()
	// The server of the previous test's config shares the listener until it has shut down,
	// and may take a first connection and close it (EOF, in one CI run): wait for an answer.
	// The upstream's 500s are not failures to the slot, so the wait counts nothing.
	testenv.Eventually(t, 5*time.Second, "the JSON config answers", func() bool {
		_, _, _, err := tryGet("/")
		return err == nil
	})
	up.hits.Store(0)
	for range 5 {
		if status, _, _ := get(t, "/"); status != 500 {
			t.Fatalf("status %d, want the upstream's 500", status)
		}
	}
	if s := breakerState(t, "slot"); s.State != "closed" || s.Failures != 0 {
		t.Fatalf("slot breaker after 5 answers of 500: %+v, want closed without failures", s)
	}
	up.status.Store(http.StatusBadGateway)
	for range 2 {
		if status, _, _ := get(t, "/"); status != 502 {
			t.Fatalf("status %d, want the upstream's 502", status)
		}
	}
	if status, _, _ := get(t, "/"); status != http.StatusServiceUnavailable {
		t.Errorf("open slot breaker: status %d, want reverse_proxy's 503 (no upstream available)", status)
	}
	if hits := up.hits.Load(); hits != 7 {
		t.Errorf("upstream got %d requests, want 7", hits)
	}
	if s := breakerState(t, "slot"); s.State != "open" {
		t.Errorf("slot breaker %+v, want open", s)
	}
	// The upstream's health endpoint answers 502 too: the probes keep the breaker open.
	time.Sleep(300 * time.Millisecond)
	if s := breakerState(t, "slot"); s.State != "open" {
		t.Errorf("slot breaker %+v while the probes fail, want open", s)
	}
	up.status.Store(http.StatusOK)
	closed := testenv.Eventually(t, 5*time.Second, "the slot's probes close it after the upstream's recovery", func() bool { return breakerState(t, "slot").State == "closed" })
	t.Logf("slot breaker closed %v after the upstream's recovery (probe interval 100ms)", closed)
	if status, _, _ := get(t, "/"); status != 200 {
		t.Errorf("after the probe closed the slot: status %d, want 200", status)
	}
}

// loadError posts a config to the admin API, expects it to be refused, and returns why.
func loadError(t *testing.T, cfg, contentType string) string {
	t.Helper()
	resp, err := client.Post(testcaddy.AdminURL+"/load", contentType, strings.NewReader(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("config accepted, want it refused:\n%s", cfg)
	}
	return string(body)
}

// TestConfigRejectsNonsense: a bad value fails the Caddyfile with its file and line, a bad
// JSON config fails to load, and the running config stays.
func TestConfigRejectsNonsense(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	loadCaddy(t, `reverse_proxy %s`, up.addr())
	msg := loadError(t, fmt.Sprintf(`{
	admin localhost:%d
}
http://127.0.0.1:%d {
	circuit_breaker {
		failure_ratio 2
	}
}`, testcaddy.AdminPort, testcaddy.HTTPPort), "text/caddyfile")
	if !strings.Contains(msg, "Caddyfile:6") || !strings.Contains(msg, "failure_ratio") {
		t.Errorf("Caddyfile error %q does not name failure_ratio at Caddyfile:6", msg)
	}
	msg = loadError(t, fmt.Sprintf(`{
		"admin": {"listen": "localhost:%d"},
		"apps": {"http": {"servers": {"srv0": {"listen": ["127.0.0.1:%d"],
			"routes": [{"handle": [{"handler": "circuit_breaker", "slow_ratio": 0.5}]}]}}}}
	}`, testcaddy.AdminPort, testcaddy.HTTPPort), "application/json")
	if !strings.Contains(msg, "slow call ratio needs a positive slow call threshold") {
		t.Errorf("JSON error %q does not explain the slow ratio", msg)
	}
	if status, _, _ := get(t, "/"); status != 200 {
		t.Errorf("after refused configs: status %d, want the running config's 200", status)
	}
	if err := new(Handler).Validate(); err != nil {
		t.Errorf("the zero handler does not validate: %v", err)
	}
}

// BenchmarkShortCircuitLoopback measures short-circuited requests through the real Caddy
// over loopback, under a bounded load of 1, 2 and 8 concurrent keep-alive clients (on the
// same machine as Caddy), and reports the latency percentiles the clients saw.
func BenchmarkShortCircuitLoopback(b *testing.B) {
	loadCaddy(b, `
	circuit_breaker {
		open_duration 1h
	}
	respond "not short-circuited" 200`)
	get(b, "/") // makes the breaker
	resp, err := client.Post(testcaddy.AdminURL+"/edge/breakers/127.0.0.1/open", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("forcing the breaker open: status %d", resp.StatusCode)
	}
	for _, workers := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("clients=%d", workers), func(b *testing.B) { loopbackLoad(b, workers) })
	}
}

// loopbackLoad sends b.N requests to the site from workers concurrent clients and reports
// the p50 and p99 latencies; every answer must be a short-circuit.
func loopbackLoad(b *testing.B, workers int) {
	lc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 5 * time.Second}
	latencies := make([][]time.Duration, workers)
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				resp, err := lc.Get(testcaddy.SiteURL + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				latencies[w] = append(latencies[w], time.Since(start))
				if resp.StatusCode != 503 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed or were not short-circuited", n)
	}
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// TestFiveHundredsDoNotTrip: an upstream answering 500s (which clients can provoke) trips
// neither the handler's breaker nor the transport's, however many in a row.
func TestFiveHundredsDoNotTrip(t *testing.T) {
	up := newUpstream(t, http.StatusInternalServerError)
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 2
	}
	reverse_proxy %s {
		transport circuit_breaker {
			consecutive_failures 2
		}
	}`, up.addr())
	for i := range 20 {
		if status, _, body := get(t, "/"); status != 500 || !strings.HasPrefix(body, "from ") {
			t.Fatalf("request %d: %d %q, want the upstream's 500", i, status, body)
		}
	}
	for _, name := range []string{"127.0.0.1", up.addr()} {
		if s := breakerState(t, name); s.State != "closed" || s.Failures != 0 {
			t.Errorf("breaker %s after 20 answers of 500: %+v, want closed without failures", name, s)
		}
	}
	// 503 and 504 from the upstream do count.
	for _, code := range []int{503, 504} {
		up.status.Store(int64(code))
		get(t, "/")
	}
	if s := breakerState(t, up.addr()); s.State != "open" {
		t.Errorf("transport breaker after a 503 and a 504: %+v, want open", s)
	}
}

// TestEdgeErrorsCarryRetryAfter: every 502, 503 and 504 the edge makes (a refused dial, a
// response header timeout, every upstream short-circuited, no upstream available) carries
// Retry-After and a problem document; the upstream's own answers are passed on as they are.
func TestEdgeErrorsCarryRetryAfter(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	up.delay.Store(int64(300 * time.Millisecond))
	dead := testenv.FreeAddr(t)
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 100
	}
	handle /refused {
		reverse_proxy %s
	}
	handle /slow {
		reverse_proxy %s {
			transport http {
				response_header_timeout 100ms
			}
		}
	}
	handle /open {
		reverse_proxy %s {
			transport circuit_breaker {
				consecutive_failures 1
				open_duration 1m
			}
		}
	}
	handle /none {
		reverse_proxy %s {
			fail_duration 1m
			max_fails 1
		}
	}`, dead, up.addr(), dead, testenv.FreeAddr(t))
	for _, tc := range []struct {
		path   string
		status int
		retry  string
	}{
		{"/refused", 502, "1"}, {"/slow", 504, "1"},
		{"/open", 502, "1"}, {"/open", 503, "60"}, // the transport breaker's open time left
		{"/none", 502, "1"}, {"/none", 503, "1"}, // a refused dial marks the only upstream down: no upstream left
	} {
		status, retry, body := get(t, tc.path)
		if status != tc.status || retry != tc.retry || !strings.Contains(body, fmt.Sprintf(`"status":%d`, tc.status)) {
			t.Errorf("GET %s: %d, Retry-After %q, %q; want %d, Retry-After %s and a problem document", tc.path, status, retry, body, tc.status, tc.retry)
		}
	}
	up.delay.Store(0)
	up.status.Store(http.StatusServiceUnavailable)
	if status, retry, body := get(t, "/slow"); status != 503 || retry != "" || !strings.HasPrefix(body, "from ") {
		t.Errorf("the upstream's own 503: %d, Retry-After %q, %q; want it as it is", status, retry, body)
	}
}

// TestProbesCloseWithinASecond: an upstream that goes away trips the transport's and the
// handler's breakers; while it is away they answer 503 at once and their probes fail; when
// it comes back on the same address the probes close both, and the first 200 comes within a
// second, long before the open duration (1m) ends.
func TestProbesCloseWithinASecond(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	px := testenv.NewProxy(t, up.addr())
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 2
		open_duration 1m
		probe /v1/health {
			upstreams %s
			interval 100ms
		}
	}
	reverse_proxy %s {
		transport circuit_breaker {
			consecutive_failures 2
			open_duration 1m
			probe /v1/health {
				interval 100ms
			}
		}
	}`, px.Addr, px.Addr)
	if status, _, _ := get(t, "/"); status != 200 {
		t.Fatalf("status %d before the outage", status)
	}
	px.Down()
	for i := 0; breakerState(t, "127.0.0.1").State != "open"; i++ {
		if i == 10 {
			t.Fatalf("handler breaker %+v after 10 requests to a dead upstream, want open", breakerState(t, "127.0.0.1"))
		}
		get(t, "/")
	}
	if s := breakerState(t, px.Addr); s.State != "open" {
		t.Fatalf("transport breaker %+v, want open", s)
	}
	hits := up.hits.Load()
	time.Sleep(500 * time.Millisecond) // probes fail meanwhile: the breakers stay open
	status, retry, body := get(t, "/")
	checkShortCircuit(t, status, retry, body, 1)
	if s := breakerState(t, "127.0.0.1"); s.State != "open" {
		t.Fatalf("handler breaker %+v while the upstream is away, want open", s)
	}

	px.Up(t)
	back := time.Now()
	var first time.Duration
	for {
		status, _, _, err := tryGet("/")
		if err == nil && status == 200 {
			first = time.Since(back)
			break
		}
		if time.Since(back) > 10*time.Second {
			t.Fatalf("no 200 within 10s of the upstream's return (last %d, %v)", status, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("first 200 %v after the upstream's return (probe interval 100ms)", first)
	if first > 2*time.Second {
		t.Errorf("first 200 %v after the upstream's return, want within about a second", first)
	}
	for _, name := range []string{"127.0.0.1", px.Addr} {
		if s := breakerState(t, name); s.State != "closed" {
			t.Errorf("breaker %s %+v after the return, want closed", name, s)
		}
	}
	if up.hits.Load() == hits {
		t.Error("the upstream saw no request after its return")
	}
}

// TestStaleThroughAnOutage: edge_cache in front of the breakers, as in production. While
// the upstream is away, a cached page with stale-if-error is served stale both for the
// edge's 502s (before the trip) and for the open breaker's 503s; a page without a stored
// entry gets the edge's answer with Retry-After.
func TestStaleThroughAnOutage(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	px := testenv.NewProxy(t, up.addr())
	loadCaddy(t, `
	edge_cache
	circuit_breaker {
		consecutive_failures 3
		open_duration 1m
	}
	reverse_proxy %s {
		header_down Cache-Control "max-age=1, stale-if-error=600"
		transport circuit_breaker {
			consecutive_failures 100
		}
	}`, px.Addr)
	get(t, "/page") // stored, fresh for a second
	time.Sleep(1100 * time.Millisecond)
	px.Down() // the entry is stale: the cache asks the upstream, which is gone
	var statuses []string
	for range 5 {
		resp, err := client.Get(testcaddy.SiteURL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cs := resp.Header.Get("Cache-Status")
		if resp.StatusCode != 200 || !strings.Contains(cs, "detail=stale-if-error") {
			t.Fatalf("GET /page during the outage: %d, Cache-Status %q; want a stale 200", resp.StatusCode, cs)
		}
		statuses = append(statuses, cs[strings.Index(cs, "fwd-status="):])
	}
	if want := "fwd-status=502; detail=stale-if-error"; statuses[0] != want || !strings.HasPrefix(statuses[4], "fwd-status=503") {
		t.Errorf("stale answers' upstream statuses %q, want 502s until the trip, then the open breaker's 503", statuses)
	}
	status, retry, body := get(t, "/uncached")
	checkShortCircuit(t, status, retry, body, 60)
}

// proberGoroutines counts the goroutines of probers (loops and probes in flight).
func proberGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "circuitbreaker.(*prober)") {
			count++
		}
	}
	return count
}

// TestProbersStopOnUnload: the probers of a config (one per module with a probe, each with a
// probe of a hanging upstream in flight) end when a reload unloads it; none is left.
func TestProbersStopOnUnload(t *testing.T) {
	hang := newUpstream(t, http.StatusOK)
	g := newGate()
	hang.hold.Store(g) // the probes hang until the unload cancels them
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 1
		probe /v1/health {
			upstreams %s
			interval 50ms
			timeout 1m
		}
	}
	reverse_proxy %s`, hang.addr(), testenv.FreeAddr(t))
	get(t, "/") // refused: the breaker opens, and probes start
	g.waitArrivals(t, 1)
	if n := proberGoroutines(); n < 2 {
		t.Fatalf("%d prober goroutines with a breaker open, want the loop and a probe", n)
	}
	loadCaddy(t, `respond "no breakers"`)
	testenv.Eventually(t, 5*time.Second, "no prober goroutine left after the unload", func() bool { return proberGoroutines() == 0 })
}

// TestTransportTimeoutsCount: a response header timeout is a failure of the upstream's
// breaker at once (and the client gets 504 with Retry-After).
func TestTransportTimeoutsCount(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	up.delay.Store(int64(300 * time.Millisecond))
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 100
	}
	reverse_proxy %s {
		transport circuit_breaker {
			consecutive_failures 1
			http {
				response_header_timeout 50ms
			}
		}
	}`, up.addr())
	status, retry, _ := get(t, "/")
	if status != http.StatusGatewayTimeout || retry != "1" {
		t.Errorf("slow upstream: %d, Retry-After %q; want 504 with Retry-After 1", status, retry)
	}
	if s := breakerState(t, up.addr()); s.State != "open" || s.Trips != 1 {
		t.Errorf("transport breaker after one timeout: %+v, want open", s)
	}
}

// TestBrokenRequestBodiesDoNotCount: a client that sends less body than it announced makes
// the round trip fail, which is the client's doing: neither breaker counts it.
func TestBrokenRequestBodiesDoNotCount(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	loadCaddy(t, `
	circuit_breaker {
		consecutive_failures 1
	}
	reverse_proxy %s {
		transport circuit_breaker {
			consecutive_failures 1
		}
	}`, up.addr())
	get(t, "/") // makes both breakers
	for range 3 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(testcaddy.SiteURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nonly a little")
		conn.(*net.TCPConn).CloseWrite() // the body ends early; the answer can still come
		resp, _ := io.ReadAll(conn)
		conn.Close()
		t.Logf("answer to a broken body: %q", strings.SplitN(string(resp), "\r\n", 2)[0])
	}
	for _, name := range []string{"127.0.0.1", up.addr()} {
		if s := breakerState(t, name); s.State != "closed" || s.Failures != 0 {
			t.Errorf("breaker %s after 3 broken request bodies: %+v, want closed without failures", name, s)
		}
	}
}
