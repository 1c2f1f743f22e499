package ratelimit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valkey-io/valkey-go"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

// request is a GET of path with the given verified user (empty for none) and client IP
// (empty for none), as Caddy's server would hand it to the handler.
func request(path, user, ip string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	repl := caddy.NewReplacer()
	if user != "" {
		repl.Set("http.auth.user.id", user)
	}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	vars := map[string]any{}
	if ip != "" {
		vars[caddyhttp.ClientIPVarKey] = ip
	}
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, vars)
	return r.WithContext(ctx)
}

// serveReq sends r through h, its error (if any) turned into a status as Caddy would.
func serveReq(h *Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, okHandler); err != nil {
		w.Code = caddyhttp.Error(0, err).StatusCode
		if w.Code == 0 {
			w.Code = http.StatusInternalServerError
		}
	}
	return w
}

// onModes runs f in local mode and against the dev Valkey server and Valkey Cluster, as
// subtests; vk is nil in local mode.
func onModes(t *testing.T, f func(t *testing.T, vk *valkeyconn.Config)) {
	t.Run("local", func(t *testing.T) { f(t, nil) })
	onBackends(t, f)
}

// provisionMode provisions h with vk (nil: local) and waits for the Valkey connection.
func provisionMode(t *testing.T, h *Handler, vk *valkeyconn.Config) *Handler {
	t.Helper()
	h.Valkey = vk
	h.ValkeyTimeout = caddy.Duration(time.Second) // decisions on Valkey, even under -race on 2 cores
	provision(t, h)
	if vk != nil {
		waitConnected(t, h)
	}
	return h
}

// noFallbacks fails the test if a zone was decided locally with Valkey configured.
func noFallbacks(t *testing.T, h *Handler) {
	t.Helper()
	if h.remote == nil {
		return
	}
	for _, z := range h.Zones {
		if f := testutil.ToFloat64(fallbacks.WithLabelValues(z.Name)); f != 0 {
			t.Errorf("zone %s: %v fallbacks with Valkey up", z.Name, f)
		}
	}
}

// TestRefusedRequestCountsInNoZone: a request refused by one zone is not counted in the
// others. A flooder whose own zone (per user) refuses it keeps hammering; the zone it shares
// with everyone ("all", decided first) must still have room for the others. On a cluster the
// two zones' keys are in different slots, so this is the two-phase path.
func TestRefusedRequestCountsInNoZone(t *testing.T) { onModes(t, testRefusedRequestCountsInNoZone) }

func testRefusedRequestCountsInNoZone(t *testing.T, vk *valkeyconn.Config) {
	shared, own := uniqueZone("shared"), uniqueZone("own")
	if keySlot(valkeyKey(shared, "all")) == keySlot(valkeyKey(own, "flooder")) {
		t.Fatal("the zones' keys share a slot: pick other names")
	}
	h := provisionMode(t, &Handler{MaxKeys: 3000, Zones: []*Zone{
		{Name: shared, Key: "all", Events: 5, Window: caddy.Duration(time.Minute)},
		userZone(own, 2, time.Minute),
	}}, vk)
	admitted := 0
	var last *httptest.ResponseRecorder
	for range 10 {
		last = serve(h, "flooder")
		if last.Code == http.StatusNoContent {
			admitted++
		}
	}
	if admitted != 2 {
		t.Fatalf("flooder: %d admitted, want 2", admitted)
	}
	var problem struct {
		Violated []string `json:"violated-policies"`
	}
	if err := json.Unmarshal(last.Body.Bytes(), &problem); err != nil || len(problem.Violated) != 1 || problem.Violated[0] != own {
		t.Errorf("429 body %q", last.Body)
	}
	// The refused request's header fields: its own zone at 0, the shared one as it stands
	// (2 of 5 used: the refused requests did not count).
	if got, want := last.Header().Get("Ratelimit"), `"`+shared+`";r=3;t=60, "`+own+`";r=0;t=`; !strings.HasPrefix(got, want) {
		t.Errorf("RateLimit = %q, want %q...", got, want)
	}
	// 3 of the shared 5 are left, whatever the flooder's 8 refused requests.
	for i, user := range []string{"bystander-1", "bystander-1", "bystander-2"} {
		if w := serve(h, user); w.Code != http.StatusNoContent {
			t.Fatalf("request %d (%s): %d; the flooder's refused requests used up the shared zone", i+1, user, w.Code)
		}
	}
	w := serve(h, "bystander-2")
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), `"violated-policies":["`+shared+`"]`) {
		t.Fatalf("6th request in the shared zone: %d %q, want 429 from %s", w.Code, w.Body, shared)
	}
	noFallbacks(t, h)
}

// TestDryRunZoneDoesNotBlock: a dry-run zone that would refuse neither refuses nor keeps the
// request from being counted in the enforcing zones, and counts only the requests it has
// room for.
func TestDryRunZoneDoesNotBlock(t *testing.T) { onModes(t, testDryRunZoneDoesNotBlock) }

func testDryRunZoneDoesNotBlock(t *testing.T, vk *valkeyconn.Config) {
	dry, user := uniqueZone("dry"), uniqueZone("user")
	h := provisionMode(t, &Handler{MaxKeys: 3001, Zones: []*Zone{
		{Name: dry, Key: "all", Events: 1, Window: caddy.Duration(time.Minute), DryRun: true},
		userZone(user, 3, time.Minute),
	}}, vk)
	for i := range 3 {
		if w := serve(h, "alice"); w.Code != http.StatusNoContent {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
	}
	if w := serve(h, "alice"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("request 4: %d, want 429 from %s", w.Code, user)
	}
	allowed := testutil.ToFloat64(decisions.WithLabelValues(dry, "allowed"))
	denied := testutil.ToFloat64(decisions.WithLabelValues(dry, "dry_run_denied"))
	if allowed != 1 || denied != 3 {
		t.Errorf("dry-run zone: %v allowed, %v dry_run_denied; want 1 and 3", allowed, denied)
	}
	if got := testutil.ToFloat64(decisions.WithLabelValues(user, "allowed")); got != 3 {
		t.Errorf("user zone: %v allowed, want 3", got)
	}
	noFallbacks(t, h)
}

// TestMultiZoneConcurrentExact: many clients at once through two zones (per user, and one
// over everyone) on two nodes: no span of one window admits more than either zone's limit,
// and the users refused by their own zone leave the shared zone's quota to the others.
func TestMultiZoneConcurrentExact(t *testing.T) { onModes(t, testMultiZoneConcurrentExact) }

func testMultiZoneConcurrentExact(t *testing.T, vk *valkeyconn.Config) {
	const perUser, all, win = 3, 40, 500 * time.Millisecond
	shared, own := uniqueZone("all"), uniqueZone("user")
	zones := func() []*Zone {
		return []*Zone{{Name: shared, Key: "all", Events: all, Window: caddy.Duration(win)}, userZone(own, perUser, win)}
	}
	nodes := []*Handler{provisionMode(t, &Handler{MaxKeys: 3002, Zones: zones()}, vk)}
	if vk != nil { // a second node: its own windows and connection
		nodes = append(nodes, provisionMode(t, &Handler{MaxKeys: 3003, ValkeyRetry: caddy.Duration(3 * time.Second), Zones: zones()}, vk))
	}
	var (
		mu      sync.Mutex
		byUser  = map[string][]admission{}
		refused = map[string][]admission{} // the refused requests' spans, by user
		allAdm  []admission
		bad     []int
		wg      sync.WaitGroup
		stop    = time.Now().Add(1100 * time.Millisecond)
		clients = 8
	)
	for c := range clients {
		user := "u" + string(rune('a'+c))
		h := nodes[c%len(nodes)]
		wg.Go(func() {
			for time.Now().Before(stop) {
				start := time.Now()
				code := serve(h, user).Code
				end := time.Now()
				mu.Lock()
				switch code {
				case http.StatusNoContent:
					byUser[user] = append(byUser[user], admission{start, end})
					allAdm = append(allAdm, admission{start, end})
				case http.StatusTooManyRequests:
					refused[user] = append(refused[user], admission{start, end})
				default:
					bad = append(bad, code)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("statuses other than 204/429: %v", bad[:min(10, len(bad))])
	}
	if most := maxInWindow(allAdm, win); most > all {
		t.Errorf("%d admitted in one window, shared limit %d", most, all)
	}
	for user, adm := range byUser {
		if most := maxInWindow(adm, win); most > perUser {
			t.Errorf("%s: %d admitted in one window, limit %d", user, most, perUser)
		}
	}
	// 8 users × 3 per window = 24 < 40: the shared zone never refuses, so a user is refused
	// only by their own zone, whatever the others' refused requests: at every refusal the
	// user had perUser admissions that may have been decided in the window before it (from
	// the span of each call: the decision falls somewhere in it). Counting each user's
	// admissions instead would measure how much CPU their client got.
	n := 0
	for user, ref := range refused {
		n += len(ref)
		for _, r := range ref {
			inWindow := 0
			for _, a := range byUser[user] {
				if !a.start.After(r.end) && a.end.After(r.start.Add(-win)) {
					inWindow++
				}
			}
			if inWindow < perUser {
				t.Errorf("%s: refused at %s with %d admissions in the window before, own limit %d: the shared zone refused it",
					user, r.start.Format("15:04:05.000"), inWindow, perUser)
				break
			}
		}
	}
	if n == 0 {
		t.Errorf("no request refused: the clients never reached their own limit")
	}
	t.Logf("%d admitted over %d users", len(allAdm), len(byUser))
	for _, h := range nodes {
		noFallbacks(t, h)
	}
}

// TestAllowAllExact: AllowAll under concurrent calls on overlapping zones keeps each zone
// exact and counts a refused request nowhere, with the race detector watching the locks.
func TestAllowAllExact(t *testing.T) {
	a, b := NewWindows(time.Hour, 100), NewWindows(time.Hour, 100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := map[string]int{}
	for g := range 8 {
		key := "k" + string(rune('0'+g%4)) // pairs of goroutines share a key in b
		wg.Go(func() {
			for range 200 {
				checks := []Check{{Windows: a, Key: "all", Limit: 50}, {Windows: b, Key: key, Limit: 5}}
				if g%2 == 1 { // the other order: the locks are taken in one order anyway
					checks[0], checks[1] = checks[1], checks[0]
				}
				if AllowAll(checks, time.Now()) {
					mu.Lock()
					admitted[key]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for key, n := range admitted {
		if n != 5 {
			t.Errorf("key %s: %d admitted, want 5", key, n)
		}
		total += n
	}
	// 4 keys × 5: the 1,580 refused requests left "all" at 20 of 50.
	if d := a.Allow("all", 50, time.Now()); !d.Allowed || d.Remaining != 50-total-1 {
		t.Errorf("all: %+v after %d admitted, want %d remaining", d, total, 50-total-1)
	}
}

func TestClientPrefix(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		v4, v6 int
		want   string
	}{
		{"203.0.113.7", 32, 64, "203.0.113.7/32"},
		{"203.0.113.7", 24, 64, "203.0.113.0/24"},
		{"2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 32, 56, "2001:db8:1::/56"},
		{"2001:db8:1:2:3:4:5:6", 32, 128, "2001:db8:1:2:3:4:5:6/128"},
		{"::ffff:203.0.113.7", 32, 64, "203.0.113.7/32"},
		{"fe80::1%eth0", 32, 64, "fe80::/64"},
		{"[2001:db8::1]:443", 32, 64, "2001:db8::/64"},
		{"203.0.113.7:1234", 32, 64, "203.0.113.7/32"},
		{"not-an-ip", 32, 64, "not-an-ip"},
	} {
		if got := clientPrefix(tc.ip, tc.v4, tc.v6); got != tc.want {
			t.Errorf("clientPrefix(%q, %d, %d) = %q, want %q", tc.ip, tc.v4, tc.v6, got, tc.want)
		}
	}
}

// TestClientPrefixKeys: {http.rate_limit.client_prefix} keys IPv6 clients by /64 and IPv4
// clients by /32 by default, and by the configured prefixes otherwise.
func TestClientPrefixKeys(t *testing.T) {
	zone := func() []*Zone {
		return []*Zone{{Name: uniqueZone("prefix"), Key: "{" + clientPrefixPlaceholder + "}", Events: 2, Window: caddy.Duration(time.Minute)}}
	}
	h := provision(t, &Handler{MaxKeys: 3004, Zones: zone()})
	send := func(h *Handler, ip string) int { return serveReq(h, request("/", "", ip)).Code }
	// One /64: two addresses of it share the quota.
	if send(h, "2001:db8:1:2::1") != http.StatusNoContent || send(h, "2001:db8:1:2:ffff::9") != http.StatusNoContent {
		t.Fatal("first two requests of a /64 refused")
	}
	if c := send(h, "2001:db8:1:2:abcd::1"); c != http.StatusTooManyRequests {
		t.Fatalf("third address of the same /64: %d, want 429", c)
	}
	if c := send(h, "2001:db8:1:3::1"); c != http.StatusNoContent {
		t.Fatalf("another /64: %d", c)
	}
	// IPv4: each address its own key.
	for range 2 {
		send(h, "203.0.113.7")
	}
	if c := send(h, "203.0.113.8"); c != http.StatusNoContent {
		t.Fatalf("another IPv4 address: %d", c)
	}
	// The placeholder is set for the logs.
	r := request("/", "", "2001:db8:9::1")
	serveReq(h, r)
	if v, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).GetString(clientPrefixPlaceholder); v != "2001:db8:9::/64" {
		t.Errorf("{%s} = %q", clientPrefixPlaceholder, v)
	}

	wide := provision(t, &Handler{MaxKeys: 3005, IPv4Prefix: 24, IPv6Prefix: 48, Zones: zone()})
	send(wide, "203.0.113.7")
	send(wide, "203.0.113.99")
	if c := send(wide, "203.0.113.200"); c != http.StatusTooManyRequests {
		t.Fatalf("ipv4_prefix 24: a third address of the /24: %d, want 429", c)
	}
	send(wide, "2001:db8:1:2::1")
	send(wide, "2001:db8:1:ffff::1")
	if c := send(wide, "2001:db8:1:1234::1"); c != http.StatusTooManyRequests {
		t.Fatalf("ipv6_prefix 48: a third /64 of the /48: %d, want 429", c)
	}
}

// TestExempt: a request matching an exempt matcher set (the load balancer's health checks:
// the health path from its own addresses) is neither limited nor counted and gets no header
// fields; the same path from a viewer's address is limited like any request.
func TestExempt(t *testing.T) {
	h := provision(t, &Handler{MaxKeys: 3006,
		ExemptRaw: []caddy.ModuleMap{{"path": json.RawMessage(`["/v1/health"]`),
			"client_ip": json.RawMessage(`{"ranges":["10.0.0.0/16","127.0.0.1/8"]}`)}},
		Zones: []*Zone{{Name: uniqueZone("exempt"), Key: "all", Events: 1, Window: caddy.Duration(time.Minute)}}})
	for i := range 20 {
		w := serveReq(h, request("/v1/health", "", "10.0.3.7"))
		if w.Code != http.StatusNoContent || w.Header().Get("Ratelimit") != "" {
			t.Fatalf("health check %d: %d %v", i+1, w.Code, w.Header())
		}
	}
	if w := serveReq(h, request("/v1/stories", "", "192.0.2.1")); w.Code != http.StatusNoContent {
		t.Fatalf("first other request: %d (did the health checks count?)", w.Code)
	}
	if w := serveReq(h, request("/v1/health", "", "192.0.2.1")); w.Code != http.StatusTooManyRequests {
		t.Fatalf("the health path from a viewer's address: %d, want 429", w.Code)
	}
	if w := serveReq(h, request("/v1/health", "", "127.0.0.1")); w.Code != http.StatusNoContent {
		t.Fatalf("an in-task probe once the zone is used up: %d", w.Code)
	}
}

// panicMatcher panics, as a bug in a matcher (or anywhere in the limiter) would.
type panicMatcher struct{}

func (panicMatcher) Match(*http.Request) bool { panic("boom") }

func (panicMatcher) MatchWithError(*http.Request) (bool, error) { panic("boom") }

// TestPanicIs500: a panic in the limiter's work is answered with a 500 problem document,
// logged and counted, and does not reach net/http (which would reset the connection).
func TestPanicIs500(t *testing.T) {
	h := provision(t, &Handler{MaxKeys: 3007, Zones: []*Zone{userZone(uniqueZone("panic"), 10, time.Minute)}})
	h.Zones[0].match = caddyhttp.MatcherSet{panicMatcher{}}
	before := testutil.ToFloat64(panics.Total.WithLabelValues("edge_rate_limit.serve"))
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, request("/", "alice", ""), caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatal("the request went on after a panic")
		return nil
	}))
	if err != nil || w.Code != http.StatusInternalServerError || w.Header().Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(w.Body.String(), `"status":500`) {
		t.Fatalf("after a panic: err %v, %d %v %q", err, w.Code, w.Header(), w.Body)
	}
	if got := testutil.ToFloat64(panics.Total.WithLabelValues("edge_rate_limit.serve")) - before; got != 1 {
		t.Errorf("muejam_edge_panics_total{where=edge_rate_limit.serve} grew by %v, want 1", got)
	}
}

// TestKeySlot: keySlot agrees with the cluster (CLUSTER KEYSLOT through the client) on the
// limiter's keys, and the zones of one request key share a slot.
func TestKeySlot(t *testing.T) {
	conn := clusterConn(t)
	for _, k := range []string{valkeyKey("user", "42"), valkeyKey("global", "2001:db8::/64"), valkeyKey("ip", "203.0.113.7/32"),
		"plain", "{}empty", "a{b}c", "{odd", "muejam:rl:{a}b}:z"} {
		got, err := conn.Client().Do(context.Background(), conn.Client().B().ClusterKeyslot().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if uint16(got) != keySlot(k) {
			t.Errorf("keySlot(%q) = %d, cluster says %d", k, keySlot(k), got)
		}
	}
	if keySlot(valkeyKey("user", "42")) != keySlot(valkeyKey("writes", "42")) {
		t.Error("two zones of one key are in different slots")
	}
}

// clusterConn connects to the dev Valkey Cluster.
func clusterConn(t *testing.T) *valkeyconn.Conn {
	t.Helper()
	conn, err := valkeyconn.New(*devCluster(t), valkeyconn.Options{Name: "test", OpenFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	testenv.Eventually(t, 5*time.Second, "cluster connection", func() bool { return conn.Client() != nil })
	return conn
}

// TestClusterCommands runs every command the limiter sends against a cluster client: the
// decision script by EVALSHA and by EVAL, for one key, for zones sharing a slot and for zones
// in different slots (admitted, and refused by one group: the removal from the others). Any
// panic of the client's command builder (cross-slot keys) or error fails it.
func TestClusterCommands(t *testing.T) {
	conn := clusterConn(t)
	r := remoteOf(conn)
	panicsBefore := testutil.ToFloat64(panics.Total.WithLabelValues("edge_rate_limit.valkey"))
	zu, zw, zg := uniqueZone("u"), uniqueZone("w"), uniqueZone("g")
	check := func(zone, key string, limit int) remoteCheck {
		return remoteCheck{Key: valkeyKey(zone, key), Window: time.Minute, WindowArg: "60000000",
			LimitArg: strconv.Itoa(limit), Limit: limit}
	}
	ctx := context.Background()
	decide := func(what string, want bool, checks ...remoteCheck) []remoteCheck {
		t.Helper()
		admitted, _, err := r.decideAll(ctx, 5*time.Second, checks)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if admitted != want {
			t.Fatalf("%s: admitted %v, want %v (%+v)", what, admitted, want, checks)
		}
		return checks
	}
	decide("one key", true, check(zu, "alice", 2))
	// user and writes share alice's slot: one script.
	decide("one slot", true, check(zu, "alice", 2), check(zw, "alice", 5))
	// three zones over two slots (alice's and the global key's).
	if keySlot(valkeyKey(zg, "all")) == keySlot(valkeyKey(zu, "alice")) {
		t.Fatal("pick other names: the keys share a slot")
	}
	got := decide("two slots, refused by alice's", false, check(zg, "all", 10), check(zu, "alice", 2), check(zw, "alice", 5))
	for _, c := range got {
		if c.Key == valkeyKey(zg, "all") && (!c.Decision.Allowed || c.Decision.Remaining != 10) {
			t.Errorf("global after a refused request: %+v, want allowed with 10 remaining", c.Decision)
		}
	}
	// Its group admitted it (phase 1) and the removal (phase 2) took it back.
	n, err := conn.Client().Do(ctx, conn.Client().B().Zcard().Key(valkeyKey(zg, "all")).Build()).AsInt64()
	if err != nil || n != 0 {
		t.Errorf("global holds %d events (%v), want 0: the refused request was not taken back", n, err)
	}
	decide("two slots, admitted", true, check(zg, "all", 10), check(zu, "bob", 2))
	// The EVAL path (a node without the script, as after a failover), one command per slot.
	checks := []remoteCheck{check(zg, "all", 10), check(zu, "carol", 2), check(zw, "carol", 5)}
	_, err = conn.Call(ctx, 5*time.Second, "edge_rate_limit.valkey", func(ctx context.Context, c valkey.Client) error {
		for i := range checks {
			checks[i].Slot = keySlot(checks[i].Key)
		}
		sortBySlot(checks)
		w1 := []*waiter{{member: "test:eval1", checks: checks[:1]}}
		w2 := []*waiter{{member: "test:eval2", checks: checks[1:]}}
		cmds := []valkey.Completed{buildDecide(c, w1, true), buildDecide(c, w2, true)}
		for i, rs := range c.DoMulti(ctx, cmds...) {
			vals, err := rs.AsIntSlice()
			if err == nil {
				err = readDecide(vals, [][]*waiter{w1, w2}[i])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("EVAL: %v", err)
	}
	// A batch of four requests with the same keys in one call (EVALSHA): carol has used 1 of
	// her 2 (the EVAL above), so the first is admitted and the other three are refused, and
	// her writes zone counts the first only (2 of 5).
	batchChecks := func() []remoteCheck { return []remoteCheck{check(zu, "carol", 2), check(zw, "carol", 5)} }
	ws := []*waiter{{member: "b1", checks: batchChecks()}, {member: "b2", checks: batchChecks()},
		{member: "b3", checks: batchChecks()}, {member: "b4", checks: batchChecks()}}
	_, err = conn.Call(ctx, 5*time.Second, "edge_rate_limit.valkey", func(ctx context.Context, c valkey.Client) error {
		return decideBatch(ctx, c, ws)
	})
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	for i, w := range ws {
		if w.ok != (i == 0) || w.checks[0].Decision.Allowed != (i == 0) || w.checks[1].Decision.Remaining != 3 {
			t.Errorf("batch request %d: admitted %v, %+v", i+1, w.ok, w.checks)
		}
	}
	if d := testutil.ToFloat64(panics.Total.WithLabelValues("edge_rate_limit.valkey")) - panicsBefore; d != 0 {
		t.Errorf("%v panics recovered", d)
	}
}

// TestClusterHandler: a handler with three zones over two slots decides on the dev cluster
// without a fallback or a panic.
func TestClusterHandler(t *testing.T) {
	zones := []*Zone{
		{Name: uniqueZone("global"), Key: "all", Events: 100, Window: caddy.Duration(time.Minute)},
		userZone(uniqueZone("user"), 3, time.Minute),
		userZone(uniqueZone("writes"), 10, time.Minute),
	}
	h := provisionMode(t, &Handler{MaxKeys: 3008, Zones: zones}, devCluster(t))
	for i := range 3 {
		if w := serve(h, "dana"); w.Code != http.StatusNoContent {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
	}
	if w := serve(h, "dana"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("request 4: %d, want 429", w.Code)
	}
	if w := serve(h, "erik"); w.Code != http.StatusNoContent || !strings.HasPrefix(w.Header().Get("Ratelimit"), `"`+zones[0].Name+`";r=96;`) {
		t.Fatalf("another user: %d %q (global at 96: the refused request did not count)", w.Code, w.Header().Get("Ratelimit"))
	}
	noFallbacks(t, h)
}

// TestBatchedDecisions: 32 concurrent clients of one key on one node share script calls
// (group commit): fewer calls than decisions, and the limit stays exact.
func TestBatchedDecisions(t *testing.T) {
	const n, win = 30, 500 * time.Millisecond
	zone := uniqueZone("batch")
	h := provisionMode(t, &Handler{MaxKeys: 3009, Zones: []*Zone{userZone(zone, n, win)}}, standalone(testenv.ValkeyAddr))
	stop := make(chan struct{})
	time.AfterFunc(1500*time.Millisecond, func() { close(stop) })
	calls := h.remote.calls.Load()
	adm, bad, lat := load([]*Handler{h}, 32, "hot", stop)
	calls = h.remote.calls.Load() - calls
	if len(bad) > 0 {
		t.Fatalf("statuses other than 204/429: %v", bad[:min(10, len(bad))])
	}
	if most := maxInWindow(adm, win); most > n {
		t.Errorf("%d admitted in one window, limit %d", most, n)
	}
	t.Logf("%d decisions in %d script calls (%.1f a call); %d admitted", len(lat), calls, float64(len(lat))/float64(calls), len(adm))
	if calls == 0 || float64(calls) > 0.9*float64(len(lat)) {
		t.Errorf("%d script calls for %d decisions: concurrent decisions of one key were not batched", calls, len(lat))
	}
	noFallbacks(t, h)
}

// TestBatchWaitsAtMostTheTimeout: with Valkey frozen (connections open, nothing answered),
// concurrent requests of one key, the first sending a call and the others waiting for the
// next, all fall back within the Valkey timeout: waiting behind a call in flight does not add
// to it.
func TestBatchWaitsAtMostTheTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	v := testenv.StartValkey(t)
	zone := uniqueZone("frozen")
	h := provision(t, &Handler{Valkey: standalone(v.Addr), ValkeyTimeout: caddy.Duration(timeout),
		ValkeyRetry: caddy.Duration(10 * time.Second), MaxKeys: 3010, Zones: []*Zone{userZone(zone, 1000, time.Minute)}})
	waitConnected(t, h)
	// Before the freeze: the scripts loaded, and every connection of the client made (valkey-go
	// dials its second pipeline connection on first use, and a dial to a frozen server waits
	// for the dial timeout whatever the call's deadline).
	var warm sync.WaitGroup
	for i := range 16 {
		warm.Go(func() {
			for range 20 {
				serve(h, "warm-"+strconv.Itoa(i))
			}
		})
	}
	warm.Wait()
	if w := serve(h, "ice"); w.Code != http.StatusNoContent {
		t.Fatalf("before the freeze: %d", w.Code)
	}
	fallbacksBefore := testutil.ToFloat64(fallbacks.WithLabelValues(zone))
	v.Freeze(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	codes := map[int]int{}
	for range 16 {
		wg.Go(func() {
			start := time.Now()
			code := serve(h, "ice").Code
			took := time.Since(start)
			mu.Lock()
			codes[code]++
			slowest = max(slowest, took)
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("16 requests with Valkey frozen: %v, slowest %v (timeout %v)", codes, slowest, timeout)
	if codes[http.StatusNoContent] != 16 {
		t.Errorf("statuses %v, want 16 × 204 decided locally", codes)
	}
	// The timeout plus scheduling on a loaded machine; twice the timeout would mean a request
	// waited for the call in flight and then for its own.
	if slowest > timeout+timeout*3/4 {
		t.Errorf("a request took %v with a Valkey timeout of %v", slowest, timeout)
	}
	if f := testutil.ToFloat64(fallbacks.WithLabelValues(zone)) - fallbacksBefore; f != 16 {
		t.Errorf("%v fallbacks, want 16", f)
	}
}
