package circuitbreaker

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muejam/edge/internal/adapttest"
	"github.com/muejam/edge/internal/testenv"
)

// adaptCaddyfile returns the JSON that bin/caddy adapts caddyfiles/<name> to, with env.
func adaptCaddyfile(t *testing.T, name string, env ...string) map[string]any {
	t.Helper()
	return adapttest.File(t, filepath.Join(testenv.RepoRoot(t), "caddyfiles", name), env...)
}

// handlerOf returns the one handler named name in cfg, at any depth.
func handlerOf(t *testing.T, cfg any, name string) map[string]any {
	t.Helper()
	found := adapttest.Handlers(cfg, name)
	if len(found) != 1 {
		t.Fatalf("%d %s handlers, want 1", len(found), name)
	}
	return found[0]
}

// TestDevBreakersAreProductions: dev.Caddyfile runs production.Caddyfile's breakers: the
// same handler policy (but the probe's upstreams, the app's address), the same transport
// policy and HTTP timeouts, the same retries and passive health.
func TestDevBreakersAreProductions(t *testing.T) {
	dev, prod := adaptCaddyfile(t, "dev.Caddyfile"), adaptCaddyfile(t, "production.Caddyfile")
	breakers := func(cfg any) map[string]any {
		cb := handlerOf(t, cfg, "circuit_breaker")
		probe, _ := cb["probe"].(map[string]any)
		delete(probe, "upstreams")
		rp := handlerOf(t, cfg, "reverse_proxy")
		lb, _ := rp["load_balancing"].(map[string]any)
		delete(lb, "selection_policy") // one upstream in dev
		return map[string]any{"handler": cb, "transport": rp["transport"], "load_balancing": lb, "health_checks": rp["health_checks"]}
	}
	d, p := breakers(dev), breakers(prod)
	if !reflect.DeepEqual(d, p) {
		dj, _ := json.MarshalIndent(d, "", " ")
		pj, _ := json.MarshalIndent(p, "", " ")
		t.Errorf("dev.Caddyfile's breakers differ from production's:\ndev %s\nproduction %s", dj, pj)
	}
}

// sample is one request of the load in TestProductionBreakersThroughAnOutage.
type sample struct {
	start, end time.Time
	status     int // 0: the request to the edge failed
	retryAfter string
	problem    bool
}

// TestProductionBreakersThroughAnOutage runs bin/caddy with the breakers of
// production.Caddyfile (its circuit_breaker and reverse_proxy handlers, adapted with the
// test's upstream as APP_UPSTREAMS) under a steady load of 8 clients, kills the upstream (a
// TCP proxy in front of it stops listening and drops its connections, as a crashed server
// would), keeps it away for 2 s, and brings it back. It reports the time from the upstream's
// death to the open breaker, the latency of the 503s while it is open, and the time from
// the upstream's return to the first 200. Bounds are generous (a loaded 2-core machine);
// the log has the measured figures.
func TestProductionBreakersThroughAnOutage(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	px := testenv.NewProxy(t, up.addr())
	prod := adaptCaddyfile(t, "production.Caddyfile", "APP_UPSTREAMS="+px.Addr)
	edge, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg, err := json.Marshal(map[string]any{
		"admin":   map[string]any{"listen": admin, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "WARN"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"edge": map[string]any{
			"listen": []string{edge},
			"routes": []any{map[string]any{"handle": []any{
				handlerOf(t, prod, "circuit_breaker"), handlerOf(t, prod, "reverse_proxy"),
			}}},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StartCaddy(t, nil, string(cfg), "")
	testenv.WaitHTTP(t, "http://"+edge+"/")
	state := func() string {
		resp, err := http.Get("http://" + admin + "/edge/breakers")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list BreakerList
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		for _, b := range list.Breakers {
			if !strings.Contains(b.Name, ":") { // the handler's, keyed by host
				return b.State
			}
		}
		return "none"
	}

	// The load: 8 clients, each a request every 5ms, to an uncacheable path.
	var (
		mu      sync.Mutex
		samples []sample
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				s := sample{start: time.Now()}
				resp, err := c.Get("http://" + edge + "/v1/stories/42/whispers")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					s.status, s.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
					s.problem = resp.Header.Get("Content-Type") == "application/problem+json" &&
						strings.Contains(string(body), `"status":`+strconv.Itoa(resp.StatusCode))
				}
				s.end = time.Now()
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	waitUntil := func(what string, limit time.Duration, ok func() bool) time.Duration {
		start := time.Now()
		for !ok() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return time.Since(start)
	}

	time.Sleep(time.Second) // steady state
	if s := state(); s != "closed" {
		t.Fatalf("handler breaker %s before the outage", s)
	}
	died := time.Now()
	px.Down()
	toOpen := waitUntil("the handler breaker opens", 10*time.Second, func() bool { return state() == "open" })
	opened := time.Now()
	time.Sleep(2 * time.Second)
	if s := state(); s != "open" {
		t.Fatalf("handler breaker %s while the upstream is away, want open", s)
	}
	px.Up(t)
	back := time.Now()
	toClosed := waitUntil("the handler breaker closes", 10*time.Second, func() bool { return state() == "closed" })
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	counts := map[string]map[int]int{"before": {}, "tripping": {}, "open": {}, "after": {}}
	var open503 []time.Duration
	var first200, firstShort, lastError time.Duration = -1, -1, -1
	for _, s := range samples {
		var phase string
		switch {
		case s.end.Before(died):
			phase = "before"
		case s.start.Before(opened):
			phase = "tripping" // in flight at the death or started before the trip
		case s.start.Before(back):
			phase = "open"
		default:
			phase = "after"
		}
		counts[phase][s.status]++
		if s.status == 0 {
			t.Errorf("a request to the edge failed in phase %s", phase)
		}
		if s.status == 502 || s.status == 503 || s.status == 504 {
			if n, err := strconv.Atoi(s.retryAfter); err != nil || n < 1 || !s.problem {
				t.Errorf("%d without Retry-After (%q) or problem document", s.status, s.retryAfter)
			}
		}
		if phase == "open" && s.status == 503 {
			open503 = append(open503, s.end.Sub(s.start))
		}
		if s.status == 503 && s.start.After(died) && (firstShort < 0 || s.end.Sub(died) < firstShort) {
			firstShort = s.end.Sub(died)
		}
		if phase == "after" && s.status == 200 && (first200 < 0 || s.end.Sub(back) < first200) {
			first200 = s.end.Sub(back)
		}
		if phase == "after" && s.status != 200 && s.end.Sub(back) > lastError {
			lastError = s.end.Sub(back)
		}
	}
	for _, phase := range []string{"before", "tripping", "open", "after"} {
		t.Logf("%-8s statuses %v", phase, counts[phase])
	}
	if counts["before"][200] == 0 || len(counts["before"]) != 1 {
		t.Errorf("before the outage: %v, want only 200s", counts["before"])
	}
	if len(open503) == 0 || len(counts["open"]) != 1 {
		t.Fatalf("while open: %v, want only 503s", counts["open"])
	}
	slices.Sort(open503)
	p50, p99, worst := open503[len(open503)/2], open503[len(open503)*99/100], open503[len(open503)-1]
	t.Logf("death to open breaker (admin API, polled every 2ms): %v; to the first 503: %v", toOpen, firstShort)
	t.Logf("503s while open: %d, p50 %v, p99 %v, max %v", len(open503), p50, p99, worst)
	t.Logf("return to the first 200: %v; to the closed breaker (admin API): %v; to the last 503: %v", first200, toClosed, lastError)
	if toOpen > 3*time.Second {
		t.Errorf("the breaker opened %v after the upstream died, want within about a second", toOpen)
	}
	if p99 > 250*time.Millisecond {
		t.Errorf("p99 of the 503s while open %v, want milliseconds (below production's 250ms dial timeout)", p99)
	}
	if first200 < 0 || first200 > 3*time.Second {
		t.Errorf("first 200 %v after the upstream's return, want within about a second", first200)
	}
	if fmt.Sprint(counts["after"]) == "map[]" {
		t.Error("no request after the return")
	}
}
