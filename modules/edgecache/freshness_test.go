package edgecache

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// t0 is when the responses of the freshness tests arrive (their Date, unless they say).
var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// storedAt returns the entry of a 200 received at t0 with the header fields kv (name, value
// pairs; Date is t0 unless given), whose request went upstream delay before t0.
func storedAt(delay time.Duration, kv ...string) *entry {
	hdr := http.Header{"Date": {t0.Format(http.TimeFormat)}}
	for i := 0; i < len(kv); i += 2 {
		hdr[http.CanonicalHeaderKey(kv[i])] = []string{kv[i+1]}
	}
	e := &entry{status: http.StatusOK, header: hdr, body: []byte("0123456789"), requestTime: t0.Add(-delay), responseTime: t0}
	e.derive(0)
	return e
}

// incomplete makes e an incomplete entry holding bytes 0-4 of 10 (RFC 9111 §3.3).
func incomplete(e *entry) *entry {
	e.setParts([]part{{start: 0, data: []byte("01234")}}, 10)
	return e
}

func TestDecide(t *testing.T) {
	const s = time.Second
	cc := func(v string) []string { return []string{"Cache-Control", v} }
	fresh := func(age, ttl time.Duration) decision { return decision{act: actFresh, age: age, ttl: ttl} }
	stale := func(age, ttl time.Duration) decision { return decision{act: actStale, age: age, ttl: ttl} }
	swr := func(age, ttl time.Duration) decision { return decision{act: actStaleRevalidate, age: age, ttl: ttl} }
	reval := func(age, ttl time.Duration) decision { return decision{act: actRevalidate, age: age, ttl: ttl} }
	sie := func(age, ttl time.Duration) decision {
		return decision{act: actRevalidate, age: age, ttl: ttl, staleIfError: true}
	}
	requested := func(age, ttl time.Duration) decision {
		return decision{act: actRevalidate, age: age, ttl: ttl, requested: true}
	}
	cases := []struct {
		name   string
		e      *entry // nil: nothing stored
		method string // default GET
		req    []string
		at     time.Duration // now - t0
		want   decision
	}{
		{name: "nothing stored", want: decision{act: actMiss}},
		{name: "nothing stored, only-if-cached", req: cc("only-if-cached"), want: decision{act: actOnlyIfCached}},
		{name: "nothing stored, max-stale", req: cc("max-stale"), want: decision{act: actMiss}},

		{name: "fresh", e: storedAt(0, cc("max-age=60")...), at: 10 * s, want: fresh(10*s, 50*s)},
		{name: "fresh until the last nanosecond", e: storedAt(0, cc("max-age=60")...), at: 60*s - 1, want: fresh(60*s-1, 1)},
		{name: "stale at exactly max-age", e: storedAt(0, cc("max-age=60")...), at: 60 * s, want: reval(60*s, 0)},
		{name: "max-age=0 is stale on arrival", e: storedAt(0, cc("max-age=0")...), want: reval(0, 0)},
		{name: "max-age=0 within max-stale=0", e: storedAt(0, cc("max-age=0")...), req: cc("max-stale=0"), want: stale(0, 0)},
		{name: "Expires ahead", e: storedAt(0, "Expires", t0.Add(60*s).Format(http.TimeFormat)), at: 30 * s, want: fresh(30*s, 30*s)},
		{name: "Expires in the past", e: storedAt(0, "Expires", t0.Add(-s).Format(http.TimeFormat)), want: reval(0, 0)},
		{name: "targeted field beats Cache-Control", e: storedAt(0, "Cache-Control", "no-cache", "CDN-Cache-Control", "max-age=60"),
			at: 10 * s, want: fresh(10*s, 50*s)},

		{name: "s-maxage shorter than max-age", e: storedAt(0, cc("max-age=60, s-maxage=10")...), at: 30 * s, want: reval(30*s, -20*s)},
		{name: "s-maxage longer than max-age", e: storedAt(0, cc("max-age=10, s-maxage=60")...), at: 30 * s, want: fresh(30*s, 30*s)},
		{name: "s-maxage forbids max-stale", e: storedAt(0, cc("s-maxage=10")...), req: cc("max-stale"), at: 30 * s, want: reval(30*s, -20*s)},
		{name: "s-maxage forbids stale-while-revalidate", e: storedAt(0, cc("s-maxage=10, stale-while-revalidate=60")...),
			at: 30 * s, want: reval(30*s, -20*s)},

		{name: "request no-cache on a fresh entry", e: storedAt(0, cc("max-age=60")...), req: cc("no-cache"), at: 10 * s,
			want: requested(10*s, 50*s)},
		{name: "Pragma: no-cache without Cache-Control", e: storedAt(0, cc("max-age=60")...), req: []string{"Pragma", "no-cache"},
			at: 10 * s, want: requested(10*s, 50*s)},
		{name: "Pragma ignored beside Cache-Control", e: storedAt(0, cc("max-age=60")...),
			req: []string{"Pragma", "no-cache", "Cache-Control", "min-fresh=1"}, at: 10 * s, want: fresh(10*s, 50*s)},
		{name: "request no-cache beats max-stale and stale-if-error", e: storedAt(0, cc("max-age=10, stale-if-error=60")...),
			req: cc("max-stale, NO-CACHE"), at: 20 * s, want: requested(20*s, -10*s)},
		{name: "response no-cache is validated while fresh", e: storedAt(0, cc("max-age=60, no-cache")...), at: 10 * s,
			want: reval(10*s, 50*s)},
		{name: "response no-cache naming fields", e: storedAt(0, cc(`max-age=60, no-cache="Set-Cookie"`)...), at: 10 * s,
			want: reval(10*s, 50*s)},
		{name: "response no-cache forbids max-stale", e: storedAt(0, cc("max-age=10, no-cache")...), req: cc("max-stale"),
			at: 20 * s, want: reval(20*s, -10*s)},

		{name: "max-stale without a value", e: storedAt(0, cc("max-age=10")...), req: cc("max-stale"), at: time.Hour,
			want: stale(time.Hour, 10*s-time.Hour)},
		{name: "max-stale=30 at its edge", e: storedAt(0, cc("max-age=10")...), req: cc("max-stale=30"), at: 40 * s,
			want: stale(40*s, -30*s)},
		{name: "max-stale=30 just beyond", e: storedAt(0, cc("max-age=10")...), req: cc("max-stale=30"), at: 40*s + 1,
			want: reval(40*s+1, -30*s-1)},
		{name: "max-stale quoted", e: storedAt(0, cc("max-age=10")...), req: cc(`max-stale="30"`), at: 40 * s, want: stale(40*s, -30*s)},
		{name: "max-stale invalid reads 0", e: storedAt(0, cc("max-age=10")...), req: cc("max-stale=soon"), at: 10 * s,
			want: stale(10*s, 0)},
		{name: "max-stale invalid reads 0, beyond", e: storedAt(0, cc("max-age=10")...), req: cc("max-stale=soon"), at: 11 * s,
			want: reval(11*s, -s)},
		{name: "max-stale empty reads 0", e: storedAt(0, cc("max-age=10")...), req: cc("max-stale="), at: 11 * s, want: reval(11*s, -s)},
		{name: "max-stale does not serve an entry too old for max-age", e: storedAt(0, cc("max-age=60")...),
			req: cc("max-age=5, max-stale"), at: 10 * s, want: reval(10*s, 50*s)},
		{name: "max-stale beats stale-while-revalidate", e: storedAt(0, cc("max-age=10, stale-while-revalidate=30")...),
			req: cc("max-stale"), at: 20 * s, want: stale(20*s, -10*s)},

		{name: "request max-age at its edge", e: storedAt(0, cc("max-age=60")...), req: cc("max-age=10"), at: 10 * s,
			want: fresh(10*s, 50*s)},
		{name: "request max-age just beyond", e: storedAt(0, cc("max-age=60, stale-if-error=60")...), req: cc("max-age=10"),
			at: 10*s + 1, want: reval(10*s+1, 50*s-1)},
		{name: "request max-age=0 takes age 0", e: storedAt(0, cc("max-age=60")...), req: cc("max-age=0"), want: fresh(0, 60*s)},
		{name: "request max-age=0 refuses any age", e: storedAt(0, cc("max-age=60")...), req: cc("max-age=0"), at: 1,
			want: reval(1, 60*s-1)},
		{name: "min-fresh at its edge", e: storedAt(0, cc("max-age=60")...), req: cc("min-fresh=20"), at: 40 * s, want: fresh(40*s, 20*s)},
		{name: "min-fresh just beyond", e: storedAt(0, cc("max-age=60")...), req: cc("min-fresh=20"), at: 40*s + 1,
			want: reval(40*s+1, 20*s-1)},
		{name: "min-fresh is not stale-while-revalidate", e: storedAt(0, cc("max-age=60, stale-while-revalidate=60")...),
			req: cc("min-fresh=30"), at: 40 * s, want: reval(40*s, 20*s)},

		{name: "only-if-cached, fresh", e: storedAt(0, cc("max-age=60")...), req: cc("only-if-cached"), at: 10 * s,
			want: fresh(10*s, 50*s)},
		{name: "only-if-cached, stale", e: storedAt(0, cc("max-age=60")...), req: cc("only-if-cached"), at: 70 * s,
			want: decision{act: actOnlyIfCached, age: 70 * s, ttl: -10 * s}},
		{name: "only-if-cached, stale within max-stale", e: storedAt(0, cc("max-age=60")...), req: cc("only-if-cached, max-stale=30"), at: 70 * s,
			want: decision{act: actStale, age: 70 * s, ttl: -10 * s}},
		{name: "only-if-cached, stale within stale-while-revalidate", e: storedAt(0, cc("max-age=60, stale-while-revalidate=30")...),
			req: cc("only-if-cached"), at: 70 * s, want: decision{act: actStaleRevalidate, age: 70 * s, ttl: -10 * s}},
		{name: "only-if-cached, no-cache entry", e: storedAt(0, cc("max-age=60, no-cache")...), req: cc("only-if-cached"), at: 10 * s,
			want: decision{act: actOnlyIfCached, age: 10 * s, ttl: 50 * s}},

		{name: "stale-while-revalidate at staleness 0", e: storedAt(0, cc("max-age=10, stale-while-revalidate=30")...), at: 10 * s,
			want: swr(10*s, 0)},
		{name: "stale-while-revalidate at its edge", e: storedAt(0, cc("max-age=10, stale-while-revalidate=30")...), at: 40 * s,
			want: swr(40*s, -30*s)},
		{name: "stale-while-revalidate just beyond", e: storedAt(0, cc("max-age=10, stale-while-revalidate=30")...), at: 40*s + 1,
			want: reval(40*s+1, -30*s-1)},
		{name: "stale-while-revalidate=0", e: storedAt(0, cc("max-age=10, stale-while-revalidate=0")...), at: 10 * s,
			want: reval(10*s, 0)},
		{name: "must-revalidate forbids stale", e: storedAt(0, cc("max-age=10, must-revalidate, stale-while-revalidate=30, stale-if-error=30")...),
			req: cc("max-stale, stale-if-error=60"), at: 20 * s, want: reval(20*s, -10*s)},
		{name: "proxy-revalidate forbids stale", e: storedAt(0, cc("max-age=10, proxy-revalidate, stale-while-revalidate=30, stale-if-error=30")...),
			req: cc("max-stale"), at: 20 * s, want: reval(20*s, -10*s)},

		{name: "stale-if-error at its edge", e: storedAt(0, cc("max-age=10, stale-if-error=30")...), at: 40 * s, want: sie(40*s, -30*s)},
		{name: "stale-if-error just beyond", e: storedAt(0, cc("max-age=10, stale-if-error=30")...), at: 40*s + 1,
			want: reval(40*s+1, -30*s-1)},
		{name: "stale-if-error=0 in the response is no window", e: storedAt(0, cc("max-age=10, stale-if-error=0")...), at: 10 * s,
			want: reval(10*s, 0)},
		{name: "request stale-if-error at its edge", e: storedAt(0, cc("max-age=10")...), req: cc("stale-if-error=60"), at: 70 * s,
			want: sie(70*s, -60*s)},
		{name: "request stale-if-error just beyond", e: storedAt(0, cc("max-age=10")...), req: cc("stale-if-error=60"), at: 70*s + 1,
			want: reval(70*s+1, -60*s-1)},
		{name: "request stale-if-error=0 at staleness 0", e: storedAt(0, cc("max-age=10")...), req: cc("stale-if-error=0"), at: 10 * s,
			want: sie(10*s, 0)},
		{name: "stale-if-error beyond stale-while-revalidate", e: storedAt(0, cc("max-age=10, stale-while-revalidate=5, stale-if-error=60")...),
			at: 20 * s, want: sie(20*s, -10*s)},

		{name: "Age counts", e: storedAt(0, "Cache-Control", "max-age=60", "Age", "50"), at: 9 * s, want: fresh(59*s, s)},
		{name: "Age counts to staleness", e: storedAt(0, "Cache-Control", "max-age=60", "Age", "50"), at: 10 * s, want: reval(60*s, 0)},
		{name: "Age plus the response delay", e: storedAt(2*s, "Cache-Control", "max-age=60", "Age", "10"), want: fresh(12*s, 48*s)},
		{name: "apparent age from Date", e: storedAt(0, "Cache-Control", "max-age=60", "Date", t0.Add(-20*s).Format(http.TimeFormat), "Age", "5"),
			want: fresh(20*s, 40*s)},
		{name: "invalid Age is stale", e: storedAt(0, "Cache-Control", "max-age=60", "Age", "1, 2"), want: reval(0, 0)},
		{name: "huge Age is capped", e: storedAt(0, "Cache-Control", "max-age=60", "Age", "99999999999999"),
			want: reval(maxDelta, 60*s-maxDelta)},

		{name: "clock gone back adds no age", e: storedAt(0, cc("max-age=60")...), at: -time.Hour, want: fresh(0, 60*s)},
		{name: "clock gone back keeps Age", e: storedAt(0, "Cache-Control", "max-age=60", "Age", "10"), at: -time.Hour,
			want: fresh(10*s, 50*s)},
		{name: "clock gone back revives nothing", e: storedAt(0, cc("max-age=0")...), at: -time.Hour, want: reval(0, 0)},

		{name: "incomplete, fresh, range held", e: incomplete(storedAt(0, cc("max-age=60")...)), req: []string{"Range", "bytes=1-3"},
			at: 10 * s, want: fresh(10*s, 50*s)},
		{name: "incomplete, fresh, unsatisfiable range", e: incomplete(storedAt(0, cc("max-age=60")...)), req: []string{"Range", "bytes=20-"},
			at: 10 * s, want: fresh(10*s, 50*s)},
		{name: "incomplete, fresh, range not held", e: incomplete(storedAt(0, cc("max-age=60")...)), req: []string{"Range", "bytes=3-7"},
			at: 10 * s, want: decision{act: actMiss}},
		{name: "incomplete, fresh, no range", e: incomplete(storedAt(0, cc("max-age=60")...)), at: 10 * s, want: decision{act: actMiss}},
		{name: "incomplete, fresh, HEAD", e: incomplete(storedAt(0, cc("max-age=60")...)), method: http.MethodHead,
			req: []string{"Range", "bytes=1-3"}, at: 10 * s, want: decision{act: actMiss}},
		{name: "incomplete, stale within max-stale", e: incomplete(storedAt(0, cc("max-age=60")...)),
			req: []string{"Range", "bytes=1-3", "Cache-Control", "max-stale"}, at: 70 * s, want: decision{act: actMiss}},
		{name: "incomplete, stale, only-if-cached", e: incomplete(storedAt(0, cc("max-age=60")...)),
			req: []string{"Range", "bytes=1-3", "Cache-Control", "only-if-cached"}, at: 70 * s, want: decision{act: actOnlyIfCached}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, "http://example.com/", nil)
			for i := 0; i < len(c.req); i += 2 {
				r.Header.Add(c.req[i], c.req[i+1])
			}
			if got := decide(c.e, r, t0.Add(c.at)); got != c.want {
				t.Errorf("decide = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestDecisionStatus(t *testing.T) {
	d := decision{act: actStale, ttl: -1500 * time.Millisecond}
	if got, want := d.hitStatus("max-stale"), cacheID+"; hit; ttl=-1; detail=max-stale"; got != want {
		t.Errorf("hitStatus %q, want %q", got, want)
	}
	d = decision{act: actFresh, ttl: 59999 * time.Millisecond}
	if got, want := d.hitStatus(""), cacheID+"; hit; ttl=59"; got != want {
		t.Errorf("hitStatus %q, want %q", got, want)
	}
	if got := (decision{act: actRevalidate}).fwd(); got != "fwd=stale" {
		t.Errorf("fwd %q", got)
	}
	if got := (decision{act: actRevalidate, requested: true}).fwd(); got != "fwd=request" {
		t.Errorf("fwd %q", got)
	}
}

// FuzzDecide checks decide's invariants on any response and request Cache-Control, Age and
// time: only a fresh entry is served fresh, stale only when nothing forbids it, a request's
// no-cache always revalidates, and what is fresh now was fresh a moment earlier.
func FuzzDecide(f *testing.F) {
	f.Add("max-age=60, stale-while-revalidate=30", "max-stale=10", "", int64(65_000))
	f.Add("s-maxage=5, max-age=60, stale-if-error=60", "min-fresh=2", "3", int64(1_000))
	f.Add(`max-age="10", no-cache="Set-Cookie"`, "max-age=0, only-if-cached", "1, 2", int64(-5_000))
	f.Add("must-revalidate, max-age=1", "max-stale, stale-if-error=99", "99999999999999", int64(3_000))
	f.Fuzz(func(t *testing.T, respCC, reqCC, age string, atMillis int64) {
		kv := []string{"Cache-Control", respCC}
		if age != "" {
			kv = append(kv, "Age", age)
		}
		e := storedAt(0, kv...)
		at := time.Duration(atMillis%(1<<40)) * time.Millisecond
		now := t0.Add(at)
		request := func(cc string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
			if cc != "" {
				r.Header.Set("Cache-Control", cc)
			}
			return r
		}
		d := decide(e, request(reqCC), now)
		if d.age != e.age(now) || d.age < e.initialAge || d.ttl != e.lifetime-d.age {
			t.Fatalf("%+v: age and ttl do not match the entry's %+v", d, e)
		}
		forbidden := e.mustRevalidate || e.noCache
		offline := parseDirectives(request(reqCC).Header).onlyIfCached
		switch d.act {
		case actFresh:
			if d.ttl <= 0 || e.noCache {
				t.Fatalf("%+v served fresh", d)
			}
		case actStale, actStaleRevalidate:
			if d.ttl > 0 || forbidden {
				t.Fatalf("%+v served stale (must-revalidate %v, no-cache %v)", d, e.mustRevalidate, e.noCache)
			}
		case actRevalidate:
			if offline {
				t.Fatalf("%+v for an only-if-cached request", d)
			}
		case actOnlyIfCached:
			if !offline {
				t.Fatalf("%+v for a request without only-if-cached", d)
			}
		default:
			t.Fatalf("%+v for a complete entry", d)
		}
		if (d.staleIfError || d.requested) && d.act != actRevalidate || d.staleIfError && (d.ttl > 0 || forbidden) {
			t.Fatalf("%+v", d)
		}
		nc := decide(e, request("no-cache, "+reqCC), now)
		if offline && nc.act != actOnlyIfCached || !offline && (nc.act != actRevalidate || !nc.requested || nc.staleIfError) {
			t.Fatalf("with no-cache: %+v", nc)
		}
		if at > 0 && d.act == actFresh {
			if earlier := decide(e, request(reqCC), now.Add(-at/2)); earlier.act != actFresh {
				t.Fatalf("fresh at %s but %+v at %s", at, earlier, at/2)
			}
		}
	})
}
