package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

// standalone is the config of one Valkey server.
func standalone(addr string) *valkeyconn.Config {
	return &valkeyconn.Config{Addresses: []string{addr}}
}

// devCluster is the config of the dev Valkey Cluster; the test fails when it is not up.
func devCluster(t testing.TB) *valkeyconn.Config {
	t.Helper()
	return &valkeyconn.Config{Addresses: testenv.RequireValkeyCluster(t), Cluster: true}
}

// onBackends runs f against the dev Valkey server and the dev Valkey Cluster, as subtests.
func onBackends(t *testing.T, f func(t *testing.T, vk *valkeyconn.Config)) {
	t.Run("standalone", func(t *testing.T) { f(t, standalone(testenv.ValkeyAddr)) })
	t.Run("cluster", func(t *testing.T) { f(t, devCluster(t)) })
}

// uniqueZone returns a zone name no earlier run has used, so that Valkey holds no events
// of it.
func uniqueZone(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// provision provisions h as Caddy would and cleans it up when the test ends.
func provision(t testing.TB, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

var okHandler = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
})

// serve sends one request with the given user id (empty for none) through h.
func serve(h *Handler, user string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	repl := caddy.NewReplacer()
	if user != "" {
		repl.Set("http.auth.user.id", user)
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, okHandler); err != nil {
		w.Code = caddyhttp.Error(0, err).StatusCode
		if w.Code == 0 {
			w.Code = http.StatusInternalServerError
		}
	}
	return w
}

func userZone(name string, events int, window time.Duration) *Zone {
	return &Zone{Name: name, Key: "{http.auth.user.id}", Events: events, Window: caddy.Duration(window)}
}

// waitConnected waits for the handler's first Valkey connection.
func waitConnected(t *testing.T, h *Handler) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "connect to valkey", func() bool { return h.remote.Client() != nil })
}

// TestValkeyExact: through Valkey, the (N+1)-th request of a window is refused and the key
// is admitted again once the window has slid past its oldest event, not before.
func TestValkeyExact(t *testing.T) { onBackends(t, testValkeyExact) }

func testValkeyExact(t *testing.T, vk *valkeyconn.Config) {
	const n, win = 5, time.Second
	zone := uniqueZone("exact")
	// A generous timeout: this test is about Valkey's decisions, and on a machine loaded by
	// the whole test run a call can take longer than the default 25 ms (which would fall back,
	// as TestValkeyDiesAndReturns tests).
	h := provision(t, &Handler{Valkey: vk, ValkeyTimeout: caddy.Duration(time.Second), Zones: []*Zone{userZone(zone, n, win)}})
	waitConnected(t, h)
	first := time.Now()
	for i := range n {
		if w := serve(h, "alice"); w.Code != http.StatusNoContent {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
	}
	w := serve(h, "alice")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("request %d: %d, want 429", n+1, w.Code)
	}
	if got := w.Header().Get("Ratelimit"); got != `"`+zone+`";r=0;t=1` {
		t.Errorf("RateLimit = %q", got)
	}
	if f := testutil.ToFloat64(fallbacks.WithLabelValues(zone)); f != 0 {
		t.Fatalf("%v fallbacks with Valkey up", f)
	}
	testenv.Eventually(t, 3*win, "admitted again", func() bool { return serve(h, "alice").Code == http.StatusNoContent })
	if since := time.Since(first); since < win-50*time.Millisecond {
		t.Fatalf("admitted again after %v, before the window slid", since)
	}
}

// admission is when one admitted request was decided: between start and end.
type admission struct{ start, end time.Time }

// maxInWindow returns the most admissions certainly inside one window-long span: those
// decided wholly within [a.start, a.start+window-slack) for some a. The slack, window/500, is
// the most two clocks may disagree over a window: Valkey stamps events with its TIME, the
// wall clock, which NTP may slew by up to 500 ppm, while the test measures on Go's monotonic
// clock; a limiter admitting at the very edge of its window (as under load, where the next
// request waits for the oldest event to expire) could otherwise seem to admit one too many.
func maxInWindow(adm []admission, window time.Duration) int { return len(densest(adm, window)) }

// densest returns the admissions maxInWindow counts: the most certainly inside one span of
// window less the slack, sorted by start.
func densest(adm []admission, window time.Duration) []admission {
	window -= window / 500
	slices.SortFunc(adm, func(a, b admission) int { return a.start.Compare(b.start) })
	var most []admission
	for i, a := range adm {
		var in []admission
		for _, b := range adm[i:] {
			if b.start.Sub(a.start) >= window {
				break
			}
			if b.end.Before(a.start.Add(window)) {
				in = append(in, b)
			}
		}
		if len(in) > len(most) {
			most = in
		}
	}
	return most
}

// spans says when each admission of adm started and ended, from the first one's start.
func spans(adm []admission) string {
	var b strings.Builder
	for i, a := range adm {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v–%v", a.start.Sub(adm[0].start).Round(10*time.Microsecond), a.end.Sub(adm[0].start).Round(10*time.Microsecond))
	}
	return b.String()
}

// load sends requests of one user through each handler from workers goroutines until
// stop is closed, and returns the admissions and the statuses other than 204 and 429.
func load(hs []*Handler, workers int, user string, stop <-chan struct{}) (adm []admission, bad []int, lat []time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hs {
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					code := serve(h, user).Code
					end := time.Now()
					mu.Lock()
					lat = append(lat, end.Sub(start))
					switch code {
					case http.StatusNoContent:
						adm = append(adm, admission{start, end})
					case http.StatusTooManyRequests:
					default:
						bad = append(bad, code)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return adm, bad, lat
}

// TestValkeyTwoNodesShareLimit: two limiter instances (two edge nodes: separate local
// windows and Valkey connections) under concurrent load for 2 s never admit more than N in
// any span of one window, and together admit about N per window.
func TestValkeyTwoNodesShareLimit(t *testing.T) { onBackends(t, testValkeyTwoNodesShareLimit) }

func testValkeyTwoNodesShareLimit(t *testing.T, vk *valkeyconn.Config) {
	const n, win = 50, time.Second
	zone := uniqueZone("shared")
	// Distinct max_keys and valkey_retry keep the nodes' pooled state apart. A generous
	// timeout: this test is about sharing, and the race detector on 2 cores can make a call
	// take longer than 25 ms (which would fall back, as TestValkeyDiesAndReturns tests).
	timeout := caddy.Duration(time.Second)
	a := provision(t, &Handler{Valkey: vk, ValkeyTimeout: timeout, MaxKeys: 1000,
		Zones: []*Zone{userZone(zone, n, win)}})
	b := provision(t, &Handler{Valkey: vk, ValkeyTimeout: timeout, MaxKeys: 1001,
		ValkeyRetry: caddy.Duration(2 * time.Second), Zones: []*Zone{userZone(zone, n, win)}})
	if a.remote == b.remote || a.Zones[0].state == b.Zones[0].state {
		t.Fatal("the two nodes share state in this process")
	}
	waitConnected(t, a)
	waitConnected(t, b)
	stop := make(chan struct{})
	time.AfterFunc(2*time.Second, func() { close(stop) })
	adm, bad, _ := load([]*Handler{a, b}, 4, "carol", stop)
	if len(bad) > 0 {
		t.Fatalf("statuses other than 204/429: %v", bad[:min(10, len(bad))])
	}
	most := maxInWindow(adm, win)
	t.Logf("two nodes, 2 s: %d admitted, at most %d in one window (limit %d)", len(adm), most, n)
	if most > n {
		t.Errorf("%d admitted within one window, limit %d", most, n)
	}
	if len(adm) < 2*n || len(adm) > 3*n {
		t.Errorf("%d admitted in 2 s of windows of %d", len(adm), n)
	}
	if f := testutil.ToFloat64(fallbacks.WithLabelValues(zone)); f != 0 {
		t.Errorf("%v fallbacks with Valkey up", f)
	}
}

// TestValkeyDiesAndReturns: Valkey cut mid-load (a proxy in front of it goes down): no
// request fails, decisions stop calling the dead Valkey (counted), the limit holds on the
// local windows, and once Valkey is back, decisions are shared again.
func TestValkeyDiesAndReturns(t *testing.T) {
	const n, win = 20, 2 * time.Second
	// Longer than the default 25 ms: on a loaded machine a healthy Valkey's answer can miss
	// that, and a request decided locally while another one's call is still in flight does
	// not see that one (docs/operators.md, "Degraded mode"), which can pass the limit by one
	// before the outage this test is about. The cut itself fails every call in flight.
	timeout := 250 * time.Millisecond
	zone := uniqueZone("fallback")
	proxy := testenv.NewProxy(t, testenv.ValkeyAddr)
	h := provision(t, &Handler{Valkey: standalone(proxy.Addr), ValkeyTimeout: caddy.Duration(timeout), ValkeyRetry: caddy.Duration(200 * time.Millisecond),
		MaxKeys: 1002, Zones: []*Zone{userZone(zone, n, win)}})
	waitConnected(t, h)

	stop := make(chan struct{})
	var result struct {
		adm []admission
		bad []int
		lat []time.Duration
	}
	done := make(chan struct{})
	go func() {
		result.adm, result.bad, result.lat = load([]*Handler{h}, 4, "dave", stop)
		close(done)
	}()
	testenv.Eventually(t, 5*time.Second, "valkey decisions", func() bool {
		return testutil.ToFloat64(decisions.WithLabelValues(zone, "denied")) > 0
	})
	proxy.Down()
	callsBefore := valkeyCalls(t, zone) // from the cut on: calls completing later were failures
	testenv.Eventually(t, 5*time.Second, "fallbacks", func() bool { return testutil.ToFloat64(fallbacks.WithLabelValues(zone)) > 100 })
	deadline := time.Now().Add(1500 * time.Millisecond)
	testenv.Eventually(t, 2*time.Second, "1.5 s of fallback load", func() bool { return time.Now().After(deadline) })
	close(stop)
	<-done

	if len(result.bad) > 0 {
		t.Fatalf("statuses other than 204/429 while Valkey was down: %v", result.bad[:min(10, len(result.bad))])
	}
	slices.Sort(result.lat)
	p99 := result.lat[len(result.lat)*99/100]
	calls := valkeyCalls(t, zone) - callsBefore
	t.Logf("%d decisions, p99 %v, max %v, %v fallbacks, %d Valkey calls during the outage", len(result.lat), p99,
		result.lat[len(result.lat)-1], testutil.ToFloat64(fallbacks.WithLabelValues(zone)), calls)
	// A dead Valkey costs no per-request wait: once the breaker is open, decisions do not
	// call it. Counted, not timed, so that a loaded machine cannot fail it: the 4 clients'
	// calls in flight and until three failures open the breaker, then one probe per open
	// period (200 ms, doubling) over the 1.5 s and more of the outage: a few dozen at most,
	// against thousands of decisions.
	if calls > 40 {
		t.Errorf("%d Valkey calls during the outage for %d decisions: decisions kept waiting on a dead Valkey", calls, len(result.lat))
	}
	if most := maxInWindow(result.adm, win); most > n {
		t.Errorf("%d admitted within one window across the outage, limit %d", most, n)
	}

	proxy.Up(t)
	// Back on Valkey: a fresh user's requests are decided by Valkey again (no fallback) and
	// a second node sees them.
	testenv.Eventually(t, 10*time.Second, "valkey decisions again", func() bool {
		before := testutil.ToFloat64(fallbacks.WithLabelValues(zone))
		serve(h, "erin")
		return testutil.ToFloat64(fallbacks.WithLabelValues(zone)) == before
	})
	other := provision(t, &Handler{Valkey: standalone(testenv.ValkeyAddr), MaxKeys: 1003, Zones: []*Zone{userZone(zone, n, win)}})
	waitConnected(t, other)
	for serve(h, "frank").Code == http.StatusNoContent {
	}
	if w := serve(other, "frank"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("the other node admitted a user the first used up: %d", w.Code)
	}
}

// TestFallbackShare: with Valkey unreachable from the start (nothing listens at its
// address), every decision is local and at once, and each node admits events ÷
// fallback_share.
func TestFallbackShare(t *testing.T) {
	zone := uniqueZone("share")
	h := provision(t, &Handler{Valkey: standalone(testenv.FreeAddr(t)), FallbackShare: 4, MaxKeys: 1004,
		Zones: []*Zone{userZone(zone, 18, time.Minute)}})
	admitted := 0
	start := time.Now()
	for range 20 {
		if serve(h, "gina").Code == http.StatusNoContent {
			admitted++
		}
	}
	if took := time.Since(start); took > 20*defaultTimeout {
		t.Errorf("20 decisions took %v with Valkey unreachable", took)
	}
	if admitted != 5 { // ceil(18 / 4)
		t.Errorf("%d admitted, want 5 (18 events shared by 4 nodes)", admitted)
	}
	if f := testutil.ToFloat64(fallbacks.WithLabelValues(zone)); f != 20 {
		t.Errorf("%v fallbacks counted, want 20", f)
	}
}

// valkeyCalls returns how many Valkey calls the zone's decisions made (timed or failed).
func valkeyCalls(t *testing.T, zone string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := valkeySeconds.WithLabelValues(zone).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
