package ratelimit

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muejam/edge/internal/promtext"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

// The process tests run bin/caddy (from `make caddy`) as edge nodes sharing Valkey, against
// the standalone server and the cluster. Each node's only route is edge_rate_limit with two
// zones, one over every request ("all") and one per client (the X-Client request header),
// then a 204. A client's requests thus touch two keys, which on a cluster are in two slots.

// procZones are the two zones of a process test: events per window for "all" and per client.
type procZones struct {
	all, client          string
	events, clientEvents int
	window               time.Duration
}

func newProcZones(events, clientEvents int, window time.Duration) procZones {
	return procZones{all: uniqueZone("procs"), client: uniqueZone("client"), events: events,
		clientEvents: clientEvents, window: window}
}

// caddyNode is one bin/caddy process.
type caddyNode struct {
	addr, admin string
	proc        *testenv.Process
}

// startCaddy runs bin/caddy with a JSON config: a server on a free address running the
// zones over vk with opts (valkey_timeout, valkey_retry, ...), and its admin endpoint
// (metrics) on a free port. Errors and warnings are logged to the process's output, which
// the test reports when it fails. The process stops when the test ends.
func startCaddy(t *testing.T, vk *valkeyconn.Config, zs procZones, opts map[string]any) *caddyNode {
	t.Helper()
	n := &caddyNode{addr: testenv.FreeAddr(t), admin: testenv.FreeAddr(t)}
	limiter := map[string]any{"handler": "edge_rate_limit", "valkey": vk, "fallback_share": 2,
		"zones": []any{
			map[string]any{"name": zs.all, "key": "all", "events": zs.events, "window": zs.window.String()},
			map[string]any{"name": zs.client, "key": "{http.request.header.X-Client}", "events": zs.clientEvents, "window": zs.window.String()},
		}}
	for k, v := range opts {
		limiter[k] = v
	}
	cfg, err := json.Marshal(map[string]any{
		"admin":   map[string]any{"listen": n.admin, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "WARN"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"limit": map[string]any{
			"listen": []string{n.addr},
			"routes": []any{map[string]any{"handle": []any{
				limiter,
				map[string]any{"handler": "static_response", "status_code": 204},
			}}},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.proc = testenv.StartCaddy(t, nil, string(cfg), "")
	// Ready once connected to Valkey: GET /edge/limits says mode valkey for the zones.
	testenv.Eventually(t, 10*time.Second, "bin/caddy on "+n.addr+" connected to valkey", func() bool {
		resp, err := http.Get("http://" + n.admin + "/edge/limits")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var list LimitList
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return false
		}
		ready := 0
		for _, z := range list.Zones {
			if (z.Name == zs.all || z.Name == zs.client) && z.Mode == "valkey" {
				ready++
			}
		}
		return ready == 2
	})
	return n
}

// metric sums a metric of the node's /metrics with the given labels.
func (n *caddyNode) metric(t *testing.T, name, labels string) float64 {
	t.Helper()
	text, err := promtext.Fetch(context.Background(), n.admin)
	if err != nil {
		t.Fatal(err)
	}
	return promtext.Sum(text, name, labels)
}

// fallbacks is the node's count of decisions taken on local windows, over both zones.
func (n *caddyNode) fallbacks(t *testing.T, zs procZones) float64 {
	return n.metric(t, "muejam_edge_rate_limit_fallbacks_total", `zone="`+zs.all+`"`)
}

// procLoad is what a load through the nodes saw.
type procLoad struct {
	mu       sync.Mutex
	all      []admission            // admitted requests
	byClient map[string][]admission // by X-Client
	bad      []string               // errors and statuses other than 204 and 429
	total    int
	done     chan struct{} // closed when the load's goroutines have ended
}

// clientNames returns n client names whose keys are spread over the first 200 slots of the
// three slot ranges `--cluster create` gives three primaries (0, 5461, 10923): a reshard of
// 200 slots from any primary that holds one of those ranges moves some of the clients' keys.
func clientNames(n int) []string {
	var names []string
	for i := 0; len(names) < n; i++ {
		name := "c" + strconv.Itoa(i)
		slot := int(keySlot(valkeyKey("z", name)))
		if start := []int{0, 5461, 10923}[len(names)%3]; slot >= start && slot < start+200 {
			names = append(names, name)
		}
	}
	return names
}

// runLoad sends requests through every node from clients goroutines per node (each its own
// X-Client) until stop is closed.
func runLoad(nodes []*caddyNode, clients int, stop <-chan struct{}) *procLoad {
	l := &procLoad{byClient: map[string][]admission{}, done: make(chan struct{})}
	names := clientNames(len(nodes) * clients)
	var wg sync.WaitGroup
	for i, n := range nodes {
		for c := range clients {
			client := names[i*clients+c]
			wg.Go(func() {
				hc := &http.Client{Timeout: 5 * time.Second}
				for {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest(http.MethodGet, "http://"+n.addr+"/", nil)
					req.Header.Set("X-Client", client)
					start := time.Now()
					resp, err := hc.Do(req)
					end := time.Now()
					l.mu.Lock()
					l.total++
					switch {
					case err != nil:
						l.bad = append(l.bad, err.Error())
					case resp.StatusCode == http.StatusNoContent:
						l.all = append(l.all, admission{start, end})
						l.byClient[client] = append(l.byClient[client], admission{start, end})
					case resp.StatusCode != http.StatusTooManyRequests:
						l.bad = append(l.bad, resp.Status)
					}
					l.mu.Unlock()
					if err == nil {
						resp.Body.Close()
					}
				}
			})
		}
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l
}

// wait waits for the load's goroutines to end (after stop is closed).
func (l *procLoad) wait() { <-l.done }

// admittedIn returns the admissions of one client (or all, for "") that started within
// [from, to).
func (l *procLoad) admittedIn(client string, from, to time.Time) []admission {
	l.mu.Lock()
	defer l.mu.Unlock()
	src := l.all
	if client != "" {
		src = l.byClient[client]
	}
	var out []admission
	for _, a := range src {
		if !a.start.Before(from) && a.start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// noPanics fails the test if a node logged or counted a recovered panic.
func noPanics(t *testing.T, nodes []*caddyNode) {
	t.Helper()
	for _, n := range nodes {
		if strings.Contains(n.proc.Output(), "panic") {
			t.Errorf("bin/caddy on %s logged a panic", n.addr)
		}
		if p := n.metric(t, "muejam_edge_panics_total", ""); p != 0 {
			t.Errorf("bin/caddy on %s recovered %v panics", n.addr, p)
		}
	}
}

// TestTwoCaddyProcessesShareValkey: two bin/caddy processes with the same two zones over
// one Valkey (server or cluster), both under load for 2 s: never more than N admitted in any
// window-long span, per client and over all. fallback_share is 2, as production sets it to
// the number of nodes: on a machine loaded enough to make a Valkey call miss its timeout, the
// local fallback keeps the sum in bounds.
func TestTwoCaddyProcessesShareValkey(t *testing.T) {
	onBackends(t, func(t *testing.T, vk *valkeyconn.Config) {
		const n, perClient, win = 40, 8, time.Second
		zs := newProcZones(n, perClient, win)
		opts := map[string]any{"valkey_timeout": "1s"}
		nodes := []*caddyNode{startCaddy(t, vk, zs, opts), startCaddy(t, vk, zs, opts)}
		stop := make(chan struct{})
		start := time.Now()
		l := runLoad(nodes, 3, stop)
		time.Sleep(2 * time.Second) // the load's length
		close(stop)
		l.wait()
		if len(l.bad) > 0 {
			t.Fatalf("errors or statuses other than 204/429: %v", l.bad[:min(10, len(l.bad))])
		}
		most := maxInWindow(l.admittedIn("", start, time.Now()), win)
		fb := fallbacksOf2(t, nodes, zs)
		t.Logf("two processes, 2 s, %d requests: %d admitted, at most %d in one window (limit %d); %v decisions on local windows",
			l.total, len(l.all), most, n, fb)
		// The shared limit is exact while every decision is Valkey's. A decision taken on
		// local windows (a Valkey call past its 1 s timeout on a starved machine) may admit up
		// to events ÷ fallback_share on its node regardless of the other's admissions.
		if limit := n + int(fb); most > limit {
			t.Errorf("%d admitted within one window across two processes, limit %d (%v local decisions)", most, n, fb)
		}
		for client, adm := range l.byClient {
			if m := maxInWindow(adm, win); m > perClient+int(fb) {
				t.Errorf("client %s: %d admitted within one window, limit %d", client, m, perClient)
			}
		}
		if len(l.all) < n {
			t.Errorf("only %d admitted in 2 s of windows of %d", len(l.all), n)
		}
		noPanics(t, nodes)
	})
}

// fallbacksOf2 sums the nodes' fallbacks.
func fallbacksOf2(t *testing.T, nodes []*caddyNode, zs procZones) float64 {
	t.Helper()
	fb := 0.0
	for _, n := range nodes {
		fb += n.fallbacks(t, zs)
	}
	return fb
}

// fallbackBound is the most a zone of events per window admits in one window-long span over
// nodes nodes with fallback_share share when Valkey fails for part of it: the shared events,
// plus each node's local events ÷ share.
func fallbackBound(events, nodes, share int) int {
	return events + nodes*((events+share-1)/share)
}

// waitShared waits until neither node has counted a fallback for quiet, and returns when the
// last fallback was seen (from).
func waitShared(t *testing.T, nodes []*caddyNode, zs procZones, from time.Time, quiet, within time.Duration) time.Time {
	t.Helper()
	last, lastSeen := -1.0, from
	deadline := time.Now().Add(within)
	for {
		fb := fallbacksOf2(t, nodes, zs)
		now := time.Now()
		if fb != last {
			last, lastSeen = fb, now
		}
		if now.Sub(lastSeen) >= quiet {
			return lastSeen
		}
		if now.After(deadline) {
			t.Fatalf("still falling back %v after %v (%v fallbacks)", now.Sub(from), within, fb)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// TestCaddyProcessesValkeyFailure: two bin/caddy nodes under load while Valkey fails. On one
// server: it is killed, then started again (empty). On a cluster: the primary of the "all"
// key's slot is killed (SIGKILL), its replica is promoted, then a range of slots is moved
// between primaries (`--cluster reshard`) under the same load. Throughout, no request fails
// or is reset and no node logs a panic; while Valkey fails the nodes decide on their local
// windows (within the documented bound: events plus events ÷ fallback_share per node), and
// they return to shared decisions (exact again) once Valkey is back.
func TestCaddyProcessesValkeyFailure(t *testing.T) {
	const n, perClient, win, share = 30, 6, time.Second, 2
	opts := map[string]any{"valkey_timeout": "250ms", "valkey_retry": "250ms"}
	// check checks the load of a subtest: start of the load, failure, return to shared
	// decisions (with the fallbacks counted then: any later one, say a call past its timeout
	// on a loaded machine, relaxes the exact limit after the return by one).
	check := func(t *testing.T, l *procLoad, nodes []*caddyNode, zs procZones, start, failed, back time.Time, fbBack float64) {
		t.Helper()
		late := int(fallbacksOf2(t, nodes, zs) - fbBack)
		if len(l.bad) > 0 {
			t.Errorf("%d of %d requests failed: %v", len(l.bad), l.total, l.bad[:min(10, len(l.bad))])
		}
		if most, bound := maxInWindow(l.admittedIn("", start, time.Now()), win), fallbackBound(n, 2, share); most > bound {
			t.Errorf("%d admitted within one window across the failure, bound %d", most, bound)
		}
		// Exact while shared: before the failure, and from one window after the return.
		before := maxInWindow(l.admittedIn("", start, failed), win)
		after := maxInWindow(l.admittedIn("", back.Add(win), time.Now()), win)
		if before > n || after > n+late {
			t.Errorf("shared decisions: %d admitted in one window before the failure, %d after the return; limit %d (+%d late fallbacks)", before, after, n, late)
			t.Logf("densest window before the failure (start–end of each admission): %s", spans(densest(l.admittedIn("", start, failed), win)))
		}
		noPanics(t, nodes)
		t.Logf("%d requests, %d admitted; at most %d in one window before the failure, %d after the return (%d later fallbacks), %d across it (bound %d)",
			l.total, len(l.all), before, after, late, maxInWindow(l.admittedIn("", start, time.Now()), win), fallbackBound(n, 2, share))
	}

	t.Run("standalone", func(t *testing.T) {
		v := testenv.StartValkey(t)
		zs := newProcZones(n, perClient, win)
		vk := standalone(v.Addr)
		nodes := []*caddyNode{startCaddy(t, vk, zs, opts), startCaddy(t, vk, zs, opts)}
		stop := make(chan struct{})
		start := time.Now()
		l := runLoad(nodes, 3, stop)
		time.Sleep(1200 * time.Millisecond)
		if fb := fallbacksOf2(t, nodes, zs); fb != 0 {
			t.Errorf("%v fallbacks before the failure", fb)
		}
		failed := time.Now()
		v.Stop(t)
		time.Sleep(1500 * time.Millisecond)
		fb := fallbacksOf2(t, nodes, zs)
		v.Start(t)
		up := time.Now()
		back := waitShared(t, nodes, zs, up, 500*time.Millisecond, 15*time.Second)
		fbBack := fallbacksOf2(t, nodes, zs)
		time.Sleep(1500 * time.Millisecond)
		close(stop)
		l.wait()
		if fb == 0 {
			t.Error("no fallback while Valkey was down")
		}
		t.Logf("Valkey down 1.5 s: %v fallbacks; shared decisions again %v after it was back", fb, back.Sub(up).Round(time.Millisecond))
		check(t, l, nodes, zs, start, failed, back, fbBack)
	})

	t.Run("cluster", func(t *testing.T) {
		c := testenv.StartValkeyCluster(t)
		zs := newProcZones(n, perClient, win)
		vk := &valkeyconn.Config{Addresses: c.Seeds(), Cluster: true}
		nodes := []*caddyNode{startCaddy(t, vk, zs, opts), startCaddy(t, vk, zs, opts)}
		stop := make(chan struct{})
		start := time.Now()
		l := runLoad(nodes, 3, stop)
		time.Sleep(1200 * time.Millisecond)
		if fb := fallbacksOf2(t, nodes, zs); fb != 0 {
			t.Errorf("%v fallbacks before the failover", fb)
		}

		failed := time.Now()
		dead := c.KillPrimaryOf(t, valkeyKey(zs.all, "all"))
		c.WaitHealthy(t, 30*time.Second)
		promoted := time.Now()
		fb := fallbacksOf2(t, nodes, zs)
		back := waitShared(t, nodes, zs, promoted, 500*time.Millisecond, 20*time.Second)
		fbBack := fallbacksOf2(t, nodes, zs)
		t.Logf("primary %s killed; replica promoted after %v (%v fallbacks meanwhile); shared decisions again %v after the promotion",
			dead.Addr, promoted.Sub(failed).Round(time.Millisecond), fb, back.Sub(promoted).Round(time.Millisecond))
		if fb == 0 {
			t.Error("no fallback while the primary of the shared key was dead")
		}

		// Move 200 slots between the two primaries that remain from the start, under load.
		ps := c.Primaries(t)
		if len(ps) < 2 {
			t.Fatalf("%d primaries after the failover", len(ps))
		}
		before := fallbacksOf2(t, nodes, zs)
		resharded := time.Now()
		c.Reshard(t, ps[0], ps[1], 200)
		c.WaitHealthy(t, 30*time.Second)
		took := time.Since(resharded)
		time.Sleep(1200 * time.Millisecond)
		close(stop)
		l.wait()
		t.Logf("200 slots moved from %s to %s in %v under load: %v fallbacks", ps[0].Addr, ps[1].Addr,
			took.Round(time.Millisecond), fallbacksOf2(t, nodes, zs)-before)
		check(t, l, nodes, zs, start, failed, back, fbBack)
	})
}
