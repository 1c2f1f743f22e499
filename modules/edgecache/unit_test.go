package edgecache

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func TestParseDirectives(t *testing.T) {
	h := http.Header{"Cache-Control": {`public, max-age="60", s-maxage=30`, `no-cache="Set-Cookie", stale-while-revalidate=5, max-age=10`}}
	d := parseDirectives(h)
	if !d.public || d.maxAge != 60*time.Second || d.sMaxAge != 30*time.Second || !d.noCacheFields || d.noCache ||
		d.staleWhileRevalidate != 5*time.Second || d.staleIfError != -1 {
		t.Fatalf("parsed %+v", d)
	}
	// An invalid value is read as 0 (stale), and huge values are capped.
	d = parseDirectives(http.Header{"Cache-Control": {"max-age=soon, s-maxage=99999999999999"}})
	if d.maxAge != 0 || d.sMaxAge != maxDelta {
		t.Fatalf("invalid/huge values: %+v", d)
	}
	if !requestNoCache(http.Header{"Pragma": {"no-cache"}}, parseDirectives(nil)) {
		t.Fatal("Pragma: no-cache without Cache-Control is no-cache")
	}
	if requestNoCache(http.Header{"Pragma": {"no-cache"}, "Cache-Control": {"max-age=5"}}, parseDirectives(nil)) {
		t.Fatal("Pragma is ignored when Cache-Control is present")
	}
}

func TestFreshnessLifetime(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	date := now.UTC().Format(http.TimeFormat)
	cases := []struct {
		header    http.Header
		heuristic float64
		want      time.Duration
	}{
		{http.Header{"Cache-Control": {"max-age=60, s-maxage=5"}}, 0, 5 * time.Second},
		{http.Header{"Cache-Control": {"max-age=60"}, "Expires": {now.Add(time.Hour).UTC().Format(http.TimeFormat)}, "Date": {date}}, 0, time.Minute},
		{http.Header{"Expires": {now.Add(time.Hour).UTC().Format(http.TimeFormat)}, "Date": {date}}, 0, time.Hour},
		{http.Header{"Expires": {"0"}, "Date": {date}}, 0, 0},
		{http.Header{"Last-Modified": {now.Add(-10 * time.Hour).UTC().Format(http.TimeFormat)}, "Date": {date}}, 0, 0},
		{http.Header{"Last-Modified": {now.Add(-10 * time.Hour).UTC().Format(http.TimeFormat)}, "Date": {date}}, 0.1, time.Hour},
	}
	for i, c := range cases {
		e := &entry{status: 200, header: c.header, requestTime: now, responseTime: now}
		e.derive(c.heuristic)
		if e.lifetime != c.want {
			t.Errorf("case %d: lifetime %s, want %s", i, e.lifetime, c.want)
		}
	}
	// §4.2.3: the corrected initial age takes the larger of the apparent age and Age plus
	// the response delay.
	e := &entry{status: 200, requestTime: now.Add(-2 * time.Second), responseTime: now,
		header: http.Header{"Age": {"10"}, "Date": {now.Add(-5 * time.Second).UTC().Format(http.TimeFormat)}}}
	e.derive(0)
	if e.initialAge != 12*time.Second || e.age(now.Add(3*time.Second)) != 15*time.Second {
		t.Fatalf("initial age %s, age 3 s later %s", e.initialAge, e.age(now.Add(3*time.Second)))
	}
}

func TestKeys(t *testing.T) {
	k, err := newKeyer(nil, "", []string{"utm_source"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodHead, "http://Example.COM/a%20b?z=1&utm_source=x&a=2&a=1", nil)
	if got, want := k.key(req), "GET example.com /a%20b ?a=2&a=1&z=1"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	u, err := k.keyOfURL("http://example.com/a%20b?a=2&z=1&a=1", "")
	if err != nil || u != "GET example.com /a%20b ?a=2&a=1&z=1" {
		t.Fatalf("keyOfURL %q %v", u, err)
	}
	for _, c := range []struct{ in, want string }{
		{"gzip, deflate, br", "br,gzip"},
		{"br;q=1.0, gzip;q=0.8, *;q=0.1", "br,gzip,zstd"},
		{"gzip;q=0, br", "br"},
		{"identity", ""},
		{"x-gzip", "gzip"},
		{"GZIP ; q=0.000", ""},
	} {
		if got := normalizeAcceptEncoding([]string{c.in}); got != c.want {
			t.Errorf("Accept-Encoding %q → %q, want %q", c.in, got, c.want)
		}
	}
	names, star := varyNames(http.Header{"Vary": {"accept-language, Accept-Encoding", "accept-language"}})
	if star || !reflect.DeepEqual(names, []string{"Accept-Encoding", "Accept-Language"}) {
		t.Fatalf("vary names %v %v", names, star)
	}
	if _, err := newKeyer([]string{"method", "cookie"}, "", nil); err == nil {
		t.Fatal("an unknown key part was accepted")
	}
	if _, err := newKeyer(nil, "shuffle", nil); err == nil {
		t.Fatal("an unknown query mode was accepted")
	}
}

func sampleEntry() *entry {
	now := time.Now()
	e := &entry{status: 200, body: []byte(`{"data":[1,2,3]}`), tags: []string{"story:1", "key:abc"},
		header:      http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=60"}, "Set-Thing": {"a", "b"}},
		requestTime: now.Add(-time.Millisecond), responseTime: now}
	e.derive(0)
	return e
}

func TestEntryRoundTrip(t *testing.T) {
	e := sampleEntry()
	got, err := unmarshalEntry(e.marshal(nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.status != e.status || string(got.body) != string(e.body) || !reflect.DeepEqual(got.tags, e.tags) ||
		!reflect.DeepEqual(got.header, e.header) || !got.requestTime.Equal(e.requestTime) ||
		!got.responseTime.Equal(e.responseTime) || got.lifetime != e.lifetime {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
	}
	b := e.marshal(nil)
	for i := range len(b) - 1 {
		if _, err := unmarshalEntry(b[:i], 0); err == nil {
			t.Fatalf("a truncation to %d of %d bytes decoded", i, len(b))
		}
	}
}

// FuzzUnmarshalEntry: whatever Valkey holds, decoding never panics, and what decodes
// encodes back to the same bytes.
func FuzzUnmarshalEntry(f *testing.F) {
	f.Add(sampleEntry().marshal(nil))
	f.Add([]byte{entryVersion, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := unmarshalEntry(b, 0.1)
		if err != nil {
			return
		}
		again, err := unmarshalEntry(e.marshal(nil), 0.1)
		if err != nil || !reflect.DeepEqual(again.header, e.header) || string(again.body) != string(e.body) ||
			!reflect.DeepEqual(again.tags, e.tags) || again.status != e.status {
			t.Fatalf("re-encoding changed the entry: %v", err)
		}
	})
}

// FuzzCacheControl: parsing any field never panics and never yields a negative duration
// other than "absent".
func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", `no-cache="a, b", s-maxage=1`, "max-stale", "max-age=-1", "stale-if-error=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseDirectives(http.Header{"Cache-Control": {s}})
		for _, v := range []time.Duration{d.maxAge, d.sMaxAge, d.minFresh, d.maxStale, d.staleWhileRevalidate, d.staleIfError} {
			if v < -1 || v > maxDelta {
				t.Fatalf("%q: duration %d out of range", s, v)
			}
		}
		_ = normalizeAcceptEncoding([]string{s})
	})
}

func TestCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"edge_cache {\n l1_max_size -5\n}", "Testfile:2"},
		{"edge_cache {\n max_body_size lots\n}", "not a positive size"},
		{"edge_cache {\n key {\n  parts method cookie\n }\n}", "unknown key part"},
		{"edge_cache {\n key {\n  query shuffle\n }\n}", "unknown query mode"},
		{"edge_cache {\n frobnicate\n}", `unrecognized edge_cache option "frobnicate"`},
		{"edge_cache bad/name", "cache name"},
		{"edge_cache {\n heuristic 2\n}", "not a ratio"},
		{"edge_cache {\n l1_max_size 1KiB\n max_body_size 1MiB\n}", "must not exceed"},
		{"edge_cache {\n valkey_timeout -1s\n}", "not a positive duration"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.want)
		}
	}
}

// TestL1ByteBudget: a million distinct keys through an L1 of 32 MiB leave it within its
// budget (±10%), counted by the weigher and checked against the heap.
func TestL1ByteBudget(t *testing.T) {
	const budget = 32 << 20
	n := 1_000_000
	if raceEnabled {
		n = 200_000 // the race detector makes each insertion ~10× slower; still 6× the budget
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := newStore(storeConfig{name: "budget", maxBytes: budget, maxTTL: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destruct()
	now := time.Now()
	hdr := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=600"}}
	peak := uint64(0)
	for i := range n {
		e := &entry{status: 200, header: hdr, body: make([]byte, 1024), requestTime: now, responseTime: now, tags: []string{"feed:new"}}
		e.derive(0)
		e.ttl = time.Hour
		s.putL1(fmt.Sprintf("GET example.com /stories/%d ?", i), e)
		if i%10_000 == 0 {
			s.l1.CleanUp()
			peak = max(peak, s.l1.WeightedSize())
		}
	}
	s.l1.CleanUp()
	size := s.l1.WeightedSize()
	peak = max(peak, size)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d keys of ~1.2 KiB into %d MiB: weighted size %.1f MiB (peak %.1f MiB), %d entries, heap growth %.1f MiB",
		n, budget>>20, float64(size)/(1<<20), float64(peak)/(1<<20), s.l1.EstimatedSize(), float64(heap)/(1<<20))
	if peak > budget*11/10 || size < budget*9/10 {
		t.Fatalf("weighted size %d (peak %d) outside %d ±10%%", size, peak, budget)
	}
	if heap > budget*11/10 {
		t.Fatalf("heap grew %d bytes for a budget of %d", heap, budget)
	}
}

// BenchmarkServeHit is the hit path alone: lookup, purge check, header copy, body write.
func BenchmarkServeHit(b *testing.B) {
	s, err := newStore(storeConfig{name: "bench", maxBytes: 64 << 20, maxTTL: time.Hour}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destruct()
	k, _ := newKeyer(nil, "", nil)
	h := &Handler{Name: "bench", keyer: k, store: s, MaxTTL: 3600e9, KeepStale: 300e9, logger: zap.NewNop()}
	req := httptest.NewRequest(http.MethodGet, "http://example.com/v1/discover?tab=new", nil)
	now := time.Now()
	e := &entry{status: 200, body: make([]byte, 2048), requestTime: now, responseTime: now, tags: []string{"feed:new"},
		header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"public, max-age=600"}, "Date": {now.UTC().Format(http.TimeFormat)}}}
	e.derive(0)
	h.setTTL(e, now)
	s.putL1(k.key(req), e)
	s.recordPurge([]string{"unrelated"}, now) // hits check purge records
	b.ReportAllocs()
	b.SetBytes(int64(len(e.body)))
	b.RunParallel(func(pb *testing.PB) {
		w := &nullWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			if err := h.ServeHTTP(w, req, nil); err != nil || w.status != 200 {
				b.Fatalf("%v %d", err, w.status)
			}
		}
	})
}

type nullWriter struct {
	h      http.Header
	status int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(s int)           { w.status = s }
