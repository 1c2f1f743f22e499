package edgecache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testenv/testcaddy"
	"github.com/muejam/edge/internal/valkeyconn"
)

// rfcStore returns the store of the integration tests' cache.
func rfcStore(t *testing.T) *store {
	t.Helper()
	handlersMu.Lock()
	defer handlersMu.Unlock()
	for h := range liveHandlers {
		if h.Name == "rfc" && h.store != nil {
			return h.store
		}
	}
	t.Fatal("no handler of cache rfc")
	return nil
}

// TestInvalidationNeedsIdentity: an unsafe request invalidates cached URLs (RFC 9111 §4.4)
// only when it has an identity (invalidate_when, here a header standing for the verified
// user), only on a 2xx, only on the request's host, and only URLs that are cached.
func TestInvalidationNeedsIdentity(t *testing.T) {
	o := loadCaddy(t, "invalidate_when {http.request.header.X-User}")
	o.handle("/popular", numbered("popular", "Cache-Control", "max-age=600"))
	// /submit answers with the status and Location the test asks for.
	o.handle("/submit", func(w http.ResponseWriter, r *http.Request, n int) {
		if l := r.Header.Get("X-Loc"); l != "" {
			w.Header().Set("Location", l)
		}
		if l := r.Header.Get("X-Content-Loc"); l != "" {
			w.Header().Set("Content-Location", l)
		}
		status, _ := strconv.Atoi(r.Header.Get("X-Status"))
		w.WriteHeader(status)
	})
	get(t, "/popular").expect(t, 200, "popular 1", "stored")
	post := func(headers ...string) {
		t.Helper()
		r := do(t, http.MethodPost, "/submit", headers...)
		if r.status == 0 {
			t.Fatal("no response")
		}
	}
	stillCached := func(what string) {
		t.Helper()
		r := get(t, "/popular")
		if r.body != "popular 1" {
			t.Fatalf("%s evicted /popular: %q %q", what, r.body, r.header.Get(HeaderStatus))
		}
		r.expect(t, 200, "popular 1", "hit")
	}
	s := rfcStore(t)
	records := s.purgeRecords()

	// Anonymous: nothing is invalidated, whatever the answer.
	for range 20 {
		post("X-Status", "201", "X-Loc", "/popular")
		post("X-Status", "200", "X-Content-Loc", "/popular")
	}
	stillCached("an anonymous POST")
	post("X-User", "", "X-Status", "201", "X-Loc", "/popular")
	stillCached("a POST with an empty identity")

	// Signed in, but not a 2xx.
	for _, st := range []string{"303", "302", "400", "403", "404", "500"} {
		post("X-User", "u1", "X-Status", st, "X-Loc", "/popular")
	}
	stillCached("a signed-in POST answered with a 3xx, 4xx or 5xx")

	// Signed in, 2xx, but another host, or not http(s).
	post("X-User", "u1", "X-Status", "201", "X-Loc", "http://evil.example/popular")
	post("X-User", "u1", "X-Status", "201", "X-Loc", "//evil.example/popular")
	post("X-User", "u1", "X-Status", "201", "X-Content-Loc", "ftp"+strings.TrimPrefix(testcaddy.SiteURL, "http")+"/popular")
	stillCached("a cross-host Location")

	// Signed in, 2xx, URLs nothing holds: no purge record is added.
	for i := range 50 {
		post("X-User", "u1", "X-Status", "201", "X-Loc", "/never-cached/"+strconv.Itoa(i))
	}
	if got := s.purgeRecords(); got != records {
		t.Fatalf("invalidations of uncached URLs added purge records: %d → %d", records, got)
	}

	// Signed in, 2xx, same host: evicted (relative and absolute Location, Content-Location).
	post("X-User", "u1", "X-Status", "201", "X-Loc", "/popular")
	get(t, "/popular").expect(t, 200, "popular 2", "fwd=miss", "stored")
	post("X-User", "u1", "X-Status", "200", "X-Loc", testcaddy.SiteURL+"/popular")
	get(t, "/popular").expect(t, 200, "popular 3", "fwd=miss", "stored")
	post("X-User", "u1", "X-Status", "204", "X-Content-Loc", "/popular")
	get(t, "/popular").expect(t, 200, "popular 4", "fwd=miss", "stored")
	expectCount(t, o, "/popular", 4)
}

// TestInvalidateMatch: a matcher set lets requests without an identity invalidate, and the
// default placeholder is the verified user.
func TestInvalidateMatch(t *testing.T) {
	o := loadCaddy(t, "invalidate_when off\n\t\tinvalidate_match {\n\t\t\tremote_ip 127.0.0.1/32\n\t\t\theader X-Internal yes\n\t\t}")
	o.handle("/im", numbered("im", "Cache-Control", "max-age=600"))
	get(t, "/im").expect(t, 200, "im 1", "stored")
	do(t, http.MethodPost, "/im")
	get(t, "/im").expect(t, 200, "im 1", "hit")
	do(t, http.MethodPost, "/im", "X-Internal", "yes")
	get(t, "/im").expect(t, 200, "im 4", "fwd=miss") // the POSTs were 2 and 3

	h := &Handler{}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if h.InvalidateWhen = "user"; h.Validate() == nil {
		t.Fatal("invalidate_when without a placeholder was accepted")
	}
	d := &Handler{}
	setDefault(&d.InvalidateWhen, defaultInvalidateWhen)
	if d.InvalidateWhen != "{http.auth.user.id}" {
		t.Fatal(d.InvalidateWhen)
	}
}

// TestPurgeRecordsBounded: a flood of distinct purge tags keeps the records within
// max_purge_records (and their byte bound); entries older than a dropped record stay
// invalid; the gauge reports the count.
func TestPurgeRecordsBounded(t *testing.T) {
	const limit = 1000
	cfg := storeConfig{name: "bounded", maxBytes: 1 << 20, maxTTL: time.Hour, maxPurges: limit}
	s, err := takeStore(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = stores.Delete(cfg.poolKey()) }()
	before := time.Now().Add(-time.Second)
	s.recordPurge([]string{"first"}, time.Now())
	if !s.purgedSince([]string{"first"}, before) {
		t.Fatal("not purged")
	}
	for i := range 100 * limit {
		s.recordPurge([]string{"flood:" + strconv.Itoa(i)}, time.Now())
		if n := s.purgeRecords(); n > limit {
			t.Fatalf("%d records after %d purges, want at most %d", n, i+1, limit)
		}
	}
	long := string(bytes.Repeat([]byte("x"), 4096))
	for i := range 1000 {
		s.recordPurge([]string{long + strconv.Itoa(i)}, time.Now())
		s.purgeMu.RLock()
		b := s.purgeBytes
		s.purgeMu.RUnlock()
		if b > limit*purgeRecordBytes {
			t.Fatalf("%d bytes of purge records, want at most %d", b, limit*purgeRecordBytes)
		}
	}
	if _, ok := s.purgedAt("first"); ok {
		t.Fatal("the oldest record was not dropped")
	}
	// Dropped, its record still invalidates the entry through the floor; an entry requested
	// now, with a tag never purged, is valid.
	if !s.purgedSince([]string{"first"}, before) {
		t.Fatal("dropping the record brought the purged entry back")
	}
	time.Sleep(time.Millisecond)
	if s.purgedSince([]string{"unrelated"}, time.Now()) {
		t.Fatal("a new entry is purged")
	}

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(sizeCollector); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "muejam_edge_cache_purge_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "bounded" {
				found = true
				if v := m.GetGauge().GetValue(); v < 1 || v > limit {
					t.Fatalf("gauge %v", v)
				}
			}
		}
	}
	if !found {
		t.Fatal("no muejam_edge_cache_purge_records series")
	}
}

// TestPurgeRecordsGaugeExported: the gauge exists from provisioning, at zero.
func TestPurgeRecordsGaugeExported(t *testing.T) {
	loadCaddy(t, "")
	resp, err := http.Get(testcaddy.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(body, []byte(`muejam_edge_cache_purge_records{cache="rfc"}`)) {
		t.Fatal("/metrics lacks muejam_edge_cache_purge_records")
	}
}

func TestKeyNormalization(t *testing.T) {
	k, err := newKeyer(nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	key := func(u string) string { return k.key(httptest.NewRequest(http.MethodGet, "http://example.com"+u, nil)) }
	for _, same := range [][]string{
		{"/a%2fb", "/a%2Fb"},
		{"/%41bc", "/Abc", "/%41%62%63"},
		{"/~user", "/%7Euser", "/%7euser"},
		{"/a-b_c.d", "/a%2Db%5Fc%2Ed"},
		{"/x%3a", "/x%3A"},
		{"/caf%c3%a9", "/caf%C3%A9", "/café"},
		{"/p?q=%7euser", "/p?q=~user"},
		{"/p?%61=1&b=%2f", "/p?b=%2F&a=1"},
		{"/p?q=a%2bb", "/p?q=a%2Bb"},
	} {
		for _, v := range same[1:] {
			if key(v) != key(same[0]) {
				t.Errorf("%q and %q have different keys: %q, %q", same[0], v, key(same[0]), key(v))
			}
		}
	}
	for _, differ := range [][2]string{
		{"/a%2Fb", "/a/b"},
		{"/a%3Fb", "/a?b"},
		{"/p?q=a%26b", "/p?q=a&b"},
		{"/p?q=%3D", "/p?q=="},
		{"/p?q=a%2Bb", "/p?q=a+b"},
		{"/%25", "/%2525"},
		{"/a%20b", "/a+b"},
	} {
		if key(differ[0]) == key(differ[1]) {
			t.Errorf("%q and %q share the key %q", differ[0], differ[1], key(differ[0]))
		}
	}
	if got := normalizePercent("/%zz%4"); got != "/%zz%4" {
		t.Errorf("malformed escapes changed: %q", got)
	}
}

// TestKeyNormalizationServed: percent-encoding variants of one URL share an entry.
func TestKeyNormalizationServed(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/norm/x/y", numbered("n", "Cache-Control", "max-age=600"))
	get(t, "/norm/x%2fy").expect(t, 200, "n 1", "stored")
	get(t, "/norm/x%2Fy").expect(t, 200, "n 1", "hit")
	get(t, "/norm/%78%2fy").expect(t, 200, "n 1", "hit")
	get(t, "/norm/x/y").expect(t, 200, "n 2", "fwd=miss") // a reserved '/' is not "%2F"
	get(t, "/norm/x%2fy?%71=%7e").expect(t, 200, "n 3", "stored")
	get(t, "/norm/x%2Fy?q=~").expect(t, 200, "n 3", "hit")
	expectCount(t, o, "/norm/x/y", 3)
}

// FuzzNormalizePercent: normalizing is idempotent and keeps what the URL means (the
// decoded string is the same).
func FuzzNormalizePercent(f *testing.F) {
	for _, s := range []string{"/a%2fb", "%41%7e%7E", "%", "%4", "%zz", "/caf%c3%a9?q=%3d&%61=1", "%2541", "%%41", "%%410"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := normalizePercent(s)
		if nn := normalizePercent(n); nn != n {
			t.Fatalf("not idempotent: %q → %q → %q", s, n, nn)
		}
		a, errA := url.PathUnescape(s)
		b, errB := url.PathUnescape(n)
		if (errA == nil) != (errB == nil) || a != b {
			t.Fatalf("meaning changed: %q (%q, %v) → %q (%q, %v)", s, a, errA, n, b, errB)
		}
		if len(n) > len(s) {
			t.Fatalf("grew: %q → %q", s, n)
		}
	})
}

// TestNoCacheRequestsCoalesced: request no-cache from anonymous clients revalidates with the
// stored validators, and concurrent ones share one conditional request (RFC 9111 §5.2.1.4);
// clients with an identity revalidate each for themselves.
func TestNoCacheRequestsCoalesced(t *testing.T) {
	o := loadCaddy(t, "invalidate_when {http.request.header.X-User}")
	var conditional, full atomic.Int64
	path := "/nc/" + strconv.FormatInt(time.Now().UnixNano(), 36) // a new entry on every run (-count)
	o.handle(path, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			conditional.Add(1)
			time.Sleep(300 * time.Millisecond)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		full.Add(1)
		fmt.Fprint(w, "nc body")
	})
	get(t, path).expect(t, 200, "nc body", "stored")

	const n = 20
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = get(t, path, "Cache-Control", "no-cache")
		}()
	}
	wg.Wait()
	collapsed := 0
	for _, r := range results {
		r.expect(t, 200, "nc body", "fwd=request")
		if strings.Contains(r.header.Get(HeaderStatus), "collapsed") {
			collapsed++
		}
	}
	if c, f := conditional.Load(), full.Load(); c != 1 || f != 1 {
		t.Fatalf("%d no-cache requests: %d conditional and %d full origin requests, want 1 conditional (and the first fetch)", n, c, f)
	}
	if collapsed != n-1 {
		t.Fatalf("%d of %d responses collapsed, want %d", collapsed, n, n-1)
	}
	get(t, path).expect(t, 200, "nc body", "hit")

	// Signed in: each no-cache request validates for itself.
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = get(t, path, "Cache-Control", "no-cache", "X-User", "u1")
		}()
	}
	wg.Wait()
	if c := conditional.Load(); c != 3 {
		t.Fatalf("signed-in no-cache requests: %d conditional origin requests in all, want 3", c)
	}
}

// TestCaddyfileAbuseOptions: invalidate_when, invalidate_match and max_purge_records parse,
// and bad values are reported.
func TestCaddyfileAbuseOptions(t *testing.T) {
	var h Handler
	in := "edge_cache {\n invalidate_when {http.request.header.X-User}\n invalidate_match {\n  remote_ip 10.0.0.0/8\n }\n max_purge_records 5000\n}"
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	if h.InvalidateWhen != "{http.request.header.X-User}" || len(h.InvalidateMatchRaw) != 1 || h.MaxPurgeRecords != 5000 {
		t.Fatalf("parsed %q %v %d", h.InvalidateWhen, h.InvalidateMatchRaw, h.MaxPurgeRecords)
	}
	for _, c := range []struct{ in, want string }{
		{"edge_cache {\n invalidate_when user\n}", "want a placeholder"},
		{"edge_cache {\n invalidate_when\n}", "wrong argument count"},
		{"edge_cache {\n max_purge_records 0\n}", "at least 1"},
		{"edge_cache {\n invalidate_match extra {\n }\n}", "wrong argument count"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.want)
		}
	}
}

// TestHoldsAsksL2: an invalidation counts a URL as cached when another node stored it in L2
// (this node's L1 does not have it), not when nothing holds it, and when Valkey cannot tell
// in time.
func TestHoldsAsksL2(t *testing.T) {
	cfg := storeConfig{name: procCacheName("holds"), maxBytes: 1 << 20, maxTTL: time.Minute,
		valkey:  valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}},
		timeout: time.Second, retry: time.Second, queue: 64, purgeWait: time.Second}
	a, err := newStore(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Destruct()
	b, err := newStore(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destruct()
	primary := "GET edge.test /holds ?"
	ctx := context.Background()
	testenv.Eventually(t, 5*time.Second, "a connected", func() bool { return !a.holds(ctx, "GET edge.test /nothing ?") })
	a.put(primary, l2TestEntry([]string{keyTag(primary)}, nil, nil, time.Now()))
	// Until b is connected, Valkey cannot tell: everything may be held.
	testenv.Eventually(t, 5*time.Second, "b connected: an uncached URL not held", func() bool { return !b.holds(ctx, "GET edge.test /nothing ?") })
	testenv.Eventually(t, 5*time.Second, "the entry in L2", func() bool { return b.holds(ctx, primary) })
	if !a.holds(ctx, primary) {
		t.Fatal("L1 entry not held")
	}

	// Valkey unreachable: it may hold it.
	cfg.name, cfg.valkey = procCacheName("holds-down"), valkeyconn.Config{Addresses: []string{"127.0.0.1:1"}}
	cfg.timeout = 50 * time.Millisecond
	c, err := newStore(cfg, zap.NewNop())
	if err != nil {
		t.Skipf("store with an unreachable Valkey: %v", err)
	}
	defer c.Destruct()
	if !c.holds(ctx, "GET edge.test /unknown ?") {
		t.Fatal("with Valkey down, an URL is taken as not cached")
	}
}
