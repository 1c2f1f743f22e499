package edgecache

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// RFC 9213: a targeted field (CDN-Cache-Control, or a configured one) replaces
// Cache-Control and Expires for this cache; an invalid one is ignored; it is passed on.
func TestTargetedCacheControl(t *testing.T) {
	o := loadCaddy(t, "targeted_fields MueJam-Edge-Cache-Control CDN-Cache-Control")

	// max-age in CDN-Cache-Control makes a response Cache-Control forbids storing
	// storable here; both fields reach the client unchanged, on the miss and on hits.
	o.handle("/tcc/max-age", numbered("m", "Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"))
	get(t, "/tcc/max-age").expect(t, 200, "m 1", "fwd=miss", "stored")
	r := get(t, "/tcc/max-age")
	r.expect(t, 200, "m 1", "hit")
	if r.header.Get("CDN-Cache-Control") != "max-age=60" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("hit's fields: CDN-Cache-Control %q, Cache-Control %q", r.header.Get("CDN-Cache-Control"), r.header.Get("Cache-Control"))
	}
	expectCount(t, o, "/tcc/max-age", 1)

	// private, no-store in the targeted field: not stored, whatever Cache-Control says.
	for _, v := range []string{"private", "no-store", "max-age=60, private"} {
		path := "/tcc/not-stored/" + strings.NewReplacer(" ", "", ",", "-", "=", "-").Replace(v)
		o.handle(path, numbered("n", "Cache-Control", "public, max-age=60", "CDN-Cache-Control", v))
		get(t, path).expect(t, 200, "n 1")
		r := get(t, path)
		r.expect(t, 200, "n 2")
		if strings.Contains(r.header.Get(HeaderStatus), "stored") {
			t.Fatalf("%s: stored (Cache-Status %q)", v, r.header.Get(HeaderStatus))
		}
	}

	// no-cache: stored, but validated at the origin before every use.
	o.handle("/tcc/no-cache", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("CDN-Cache-Control", "no-cache, max-age=60")
		w.Header().Set("Etag", `"v"`)
		if r.Header.Get("If-None-Match") == `"v"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "c %d", n)
	})
	get(t, "/tcc/no-cache").expect(t, 200, "c 1", "stored")
	get(t, "/tcc/no-cache").expect(t, 200, "c 1", "fwd=stale", "fwd-status=304")
	expectCount(t, o, "/tcc/no-cache", 2)

	// Its max-age counts against Age: max-age=10 with Age: 20 is stale on arrival, though
	// Cache-Control's max-age=600 would make it fresh.
	o.handle("/tcc/age", numbered("a", "Cache-Control", "max-age=600", "CDN-Cache-Control", "max-age=10", "Age", "20", "Etag", `"a"`))
	get(t, "/tcc/age").expect(t, 200, "a 1", "stored")
	get(t, "/tcc/age").expect(t, 200, "a 2", "fwd=stale")

	// Expires is ignored too: a targeted field without max-age leaves no explicit freshness.
	o.handle("/tcc/expires", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		w.Header().Set("CDN-Cache-Control", "must-revalidate")
		fmt.Fprintf(w, "e %d", n)
	})
	get(t, "/tcc/expires").expect(t, 200, "e 1")
	get(t, "/tcc/expires").expect(t, 200, "e 2")

	// The first configured field present wins; an invalid one is skipped (here the
	// configured field, falling back to CDN-Cache-Control; then both, falling back to
	// Cache-Control).
	o.handle("/tcc/ours", numbered("o", "Cache-Control", "no-store", "MueJam-Edge-Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"))
	get(t, "/tcc/ours").expect(t, 200, "o 1", "stored")
	get(t, "/tcc/ours").expect(t, 200, "o 1", "hit")
	o.handle("/tcc/invalid-ours", numbered("i", "Cache-Control", "no-store", "MueJam-Edge-Cache-Control", "max-age=60, BAD", "CDN-Cache-Control", "max-age=60"))
	get(t, "/tcc/invalid-ours").expect(t, 200, "i 1", "stored")
	get(t, "/tcc/invalid-ours").expect(t, 200, "i 1", "hit")
	o.handle("/tcc/invalid-both", numbered("b", "Cache-Control", "no-store", "MueJam-Edge-Cache-Control", "max-age=60,", "CDN-Cache-Control", `max-age=60, private="x`))
	get(t, "/tcc/invalid-both").expect(t, 200, "b 1")
	get(t, "/tcc/invalid-both").expect(t, 200, "b 2")
	expectCount(t, o, "/tcc/invalid-both", 2)
}

func TestParseTargeted(t *testing.T) {
	cases := []struct {
		in    string
		ok    bool
		check func(directives) bool
	}{
		{"max-age=60", true, func(d directives) bool { return d.maxAge == time.Minute }},
		{"max-age=60;x=1, private", true, func(d directives) bool { return d.maxAge == time.Minute && d.private }},
		{"no-store=?0, max-age=5", true, func(d directives) bool { return !d.noStore && d.maxAge == 5*time.Second }},
		{`no-cache="set-cookie"`, true, func(d directives) bool { return d.noCacheFields && !d.noCache }},
		{`max-age="60"`, true, func(d directives) bool { return d.maxAge == 0 }},
		{"max-age=1.5", true, func(d directives) bool { return d.maxAge == 0 }},
		{"max-age=-1", true, func(d directives) bool { return d.maxAge == 0 }},
		{"max-age=10, max-age=20", true, func(d directives) bool { return d.maxAge == 20*time.Second }},
		{"x=(a b), y=:aGk=:, z=tok/1, w=?1", true, nil},
		{"", false, nil},
		{"Max-Age=60", false, nil},
		{"max-age=60,", false, nil},
		{"max-age=60 private", false, nil},
		{"max-age=1234567890123456", false, nil},
		{`private="x`, false, nil},
		{"max-age=60;", false, nil},
	}
	for _, c := range cases {
		d, ok := parseTargeted(c.in)
		if ok != c.ok || (ok && c.check != nil && !c.check(d)) {
			t.Errorf("%q: ok %v, %+v", c.in, ok, d)
		}
	}
}

// An Expires that is not exactly one valid HTTP-date, and an Age that is not exactly one
// non-negative integer, make a response stale: here, with no validator, not stored.
func TestStrictDatesAndAge(t *testing.T) {
	o := loadCaddy(t, "")
	future := time.Now().Add(24 * time.Hour).UTC()
	imf := future.Format(http.TimeFormat)
	stale := map[string][]string{
		"expires-one-digit-hour": {"Expires", future.Format("Mon, 02 Jan 2006 ") + strconv.Itoa(future.Hour()%10) + future.Format(":04:05 GMT")},
		"expires-extra-spaces":   {"Expires", strings.Replace(imf, " ", "  ", 1)},
		"expires-two-lines":      {"Expires", imf, "Expires", imf},
		"expires-lowercase-gmt":  {"Expires", strings.Replace(imf, "GMT", "gmt", 1)},
		"age-list":               {"Cache-Control", "max-age=60", "Age", "old, 0"},
		"age-two":                {"Cache-Control", "max-age=60", "Age", "1, 2"},
		"age-negative":           {"Cache-Control", "max-age=60", "Age", "-1"},
		"age-two-lines":          {"Cache-Control", "max-age=60", "Age", "0", "Age", "0"},
		"age-decimal":            {"Cache-Control", "max-age=60", "Age", "1.5"},
	}
	for name, hdr := range stale {
		t.Run(name, func(t *testing.T) {
			path := "/strict/" + name
			o.handle(path, numbered("s", hdr...))
			get(t, path).expect(t, 200, "s 1")
			get(t, path).expect(t, 200, "s 2", "fwd=miss")
			expectCount(t, o, path, 2)
		})
	}
	// The three valid forms stay fresh.
	for name, v := range map[string]string{
		"imf":     imf,
		"rfc850":  time.Date(2049, 3, 9, 8, 49, 37, 0, time.UTC).Format(rfc850Layout),
		"asctime": time.Date(2049, 3, 9, 8, 49, 37, 0, time.UTC).Format(asctimeLayout),
	} {
		t.Run(name, func(t *testing.T) {
			path := "/strict/valid-" + name
			o.handle(path, numbered("v", "Expires", v))
			get(t, path).expect(t, 200, "v 1", "stored")
			get(t, path).expect(t, 200, "v 1", "hit")
			expectCount(t, o, path, 1)
		})
	}
}

func TestParseHTTPDateStrict(t *testing.T) {
	for s, ok := range map[string]bool{
		"Sun, 06 Nov 1994 08:49:37 GMT":   true,
		" Sun, 06 Nov 1994 08:49:37 GMT ": true,
		"Sunday, 06-Nov-94 08:49:37 GMT":  true,
		"Sun Nov  6 08:49:37 1994":        true,
		"Sun, 06 Nov 1994 8:49:37 GMT":    false,
		"Sun, 6 Nov 1994 08:49:37 GMT":    false,
		"Sun,  06 Nov 1994 08:49:37 GMT":  false,
		"Mon, 06 Nov 1994 08:49:37 GMT":   false, // wrong day name
		"Sun, 06 Nov 1994 08:49:37 UTC":   false,
		"Sun Nov 6 08:49:37 1994":         false,
		"0":                               false,
		"":                                false,
	} {
		if _, got := parseHTTPDateStrict(s); got != ok {
			t.Errorf("%q: valid %v, want %v", s, got, ok)
		}
	}
}

// unitHandler is an edge_cache handler with its own L1 in front of next (an origin that
// counts its requests), without Caddy: for header fields reverse_proxy would remove first.
func unitHandler(t *testing.T, origin func(w http.ResponseWriter, r *http.Request, n int)) (*Handler, caddyhttp.Handler, *atomic.Int64) {
	t.Helper()
	s, err := newStore(storeConfig{name: "unit", maxBytes: 64 << 20, maxTTL: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Destruct() })
	k, _ := newKeyer(nil, "", nil)
	h := &Handler{Name: "unit", keyer: k, store: s, MaxTTL: 3600e9, KeepStale: 300e9, MaxBodyBytes: 1 << 20,
		CoalesceTimeout: 5e9, TargetedFields: defaultTargeted, logger: zap.NewNop()}
	count := new(atomic.Int64)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		origin(w, r, int(count.Add(1)))
		return nil
	})
	return h, next, count
}

func (h *Handler) unitGet(t *testing.T, next caddyhttp.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://example.com"+path, nil), next); err != nil {
		t.Fatal(err)
	}
	return w
}

// Hop-by-hop fields — those listed, those Connection names and any Proxy-* — are not
// stored: a hit never carries them.
func TestHopByHopNotStored(t *testing.T) {
	h, next, count := unitHandler(t, func(w http.ResponseWriter, r *http.Request, n int) {
		hdr := w.Header()
		hdr.Set("Cache-Control", "max-age=60")
		hdr.Set("Connection", "X-Conn-Private, keep-alive")
		hdr.Add("Connection", "X-Other-Private")
		hdr.Set("X-Conn-Private", "secret")
		hdr.Set("X-Other-Private", "secret")
		hdr.Set("Keep-Alive", "timeout=5")
		hdr.Set("Proxy-Foo", "x")
		hdr.Set("Trailer", "X-T")
		hdr.Set("Te", "trailers")
		hdr.Set("X-Kept", "yes")
		fmt.Fprintf(w, "h %d", n)
	})
	if w := h.unitGet(t, next, "/hop"); !strings.Contains(w.Header().Get(HeaderStatus), "stored") {
		t.Fatalf("not stored: %q", w.Header().Get(HeaderStatus))
	}
	w := h.unitGet(t, next, "/hop")
	if w.Body.String() != "h 1" || count.Load() != 1 {
		t.Fatalf("second request: %q after %d origin requests", w.Body.String(), count.Load())
	}
	for _, f := range []string{"Connection", "X-Conn-Private", "X-Other-Private", "Keep-Alive", "Proxy-Foo", "Trailer", "Te"} {
		if v := w.Header().Values(f); len(v) > 0 {
			t.Errorf("hit carries hop-by-hop %s: %q", f, v)
		}
	}
	if w.Header().Get("X-Kept") != "yes" {
		t.Errorf("hit lost X-Kept: %v", w.Header())
	}
}

// A 304 that sets a cookie does not put it in the stored entry: the client that
// revalidated gets it, the next clients do not.
func TestSetCookieNotMergedFrom304(t *testing.T) {
	h, next, count := unitHandler(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Etag", `"v"`)
		if n == 1 {
			w.Header().Set("Cache-Control", "max-age=0")
			fmt.Fprint(w, "body")
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Set-Cookie", "session=for-one-client")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.WriteHeader(http.StatusNotModified)
	})
	h.unitGet(t, next, "/sc")
	if w := h.unitGet(t, next, "/sc"); w.Body.String() != "body" || !strings.Contains(w.Header().Get(HeaderStatus), "fwd-status=304") ||
		w.Header().Get("Set-Cookie") != "session=for-one-client" {
		t.Fatalf("revalidation: %q %q, Set-Cookie %q", w.Body.String(), w.Header().Get(HeaderStatus), w.Header().Get("Set-Cookie"))
	}
	w := h.unitGet(t, next, "/sc")
	if w.Body.String() != "body" || count.Load() != 2 || !strings.Contains(w.Header().Get(HeaderStatus), "hit") {
		t.Fatalf("third request: %q %q after %d origin requests", w.Body.String(), w.Header().Get(HeaderStatus), count.Load())
	}
	if v := w.Header().Values("Set-Cookie"); len(v) > 0 {
		t.Fatalf("a hit replays the 304's Set-Cookie %q", v)
	}
	if v := w.Header().Values("X-Hop"); len(v) > 0 {
		t.Fatalf("a hit carries the 304's hop-by-hop X-Hop %q", v)
	}
}

// A stored 200 answers a single byte range with 206 and Content-Range, an unsatisfiable
// range set with 416, and ignores (sends the whole 200 for) several ranges, other units and
// an If-Range that does not match.
func TestRangeFromStored(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/range", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `"r"`)
		fmt.Fprint(w, "0123456789")
	})
	get(t, "/range").expect(t, 200, "0123456789", "stored")
	for _, c := range []struct {
		req    []string
		status int
		body   string
		cr     string // Content-Range
	}{
		{[]string{"Range", "bytes=2-4"}, 206, "234", "bytes 2-4/10"},
		{[]string{"Range", "bytes=-3"}, 206, "789", "bytes 7-9/10"},
		{[]string{"Range", "bytes=7-"}, 206, "789", "bytes 7-9/10"},
		{[]string{"Range", "bytes=8-100"}, 206, "89", "bytes 8-9/10"},
		{[]string{"Range", "bytes=-100"}, 206, "0123456789", "bytes 0-9/10"},
		{[]string{"Range", "bytes=0-0"}, 206, "0", "bytes 0-0/10"},
		{[]string{"Range", "bytes=2-4", "If-Range", `"r"`}, 206, "234", "bytes 2-4/10"},
		{[]string{"Range", "bytes=20-30"}, 416, "", "bytes */10"},
		{[]string{"Range", "bytes=20-, 30-40"}, 416, "", "bytes */10"},
		{[]string{"Range", "bytes=-0"}, 416, "", "bytes */10"},
		{[]string{"Range", "bytes=0-1,5-6"}, 200, "0123456789", ""},
		{[]string{"Range", "bytes=4-2"}, 200, "0123456789", ""},
		{[]string{"Range", "items=0-1"}, 200, "0123456789", ""},
		{[]string{"Range", "bytes=2-4", "If-Range", `"other"`}, 200, "0123456789", ""},
		{[]string{"Range", "bytes=2-4", "If-Range", `W/"r"`}, 200, "0123456789", ""},
	} {
		r := get(t, "/range", c.req...)
		if r.status != c.status || r.body != c.body || r.header.Get("Content-Range") != c.cr ||
			r.header.Get("Content-Length") != strconv.Itoa(len(c.body)) || !strings.Contains(r.header.Get(HeaderStatus), "hit") {
			t.Errorf("%q: %d %q Content-Range %q Content-Length %q Cache-Status %q, want %d %q %q", c.req, r.status, r.body,
				r.header.Get("Content-Range"), r.header.Get("Content-Length"), r.header.Get(HeaderStatus), c.status, c.body, c.cr)
		}
	}
	// HEAD ignores Range.
	do(t, http.MethodHead, "/range", "Range", "bytes=2-4").expect(t, 200, "", "hit")
	expectCount(t, o, "/range", 1)
}

func TestCaddyfileTargetedFields(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("edge_cache {\n targeted_fields MueJam-Edge-Cache-Control CDN-Cache-Control\n}")); err != nil ||
		!reflect.DeepEqual(h.TargetedFields, []string{"MueJam-Edge-Cache-Control", "CDN-Cache-Control"}) {
		t.Fatalf("%v %q", err, h.TargetedFields)
	}
	if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("edge_cache {\n targeted_fields\n}")); err == nil {
		t.Fatal("targeted_fields without a field name is accepted")
	}
}

func FuzzTargetedAndRange(f *testing.F) {
	for _, s := range []string{"max-age=60, private", `no-cache="a";x=?1`, "x=(1 2.5 :YQ==:)", "bytes=2-4", "bytes=-3", "bytes=1-,5-6", "bytes=9999999999999999999-"} {
		f.Add(s)
	}
	e := &entry{status: 200, body: []byte("0123456789"), header: http.Header{}}
	f.Fuzz(func(t *testing.T, s string) {
		parseTargeted(s)
		r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
		r.Header.Set("Range", s)
		w := httptest.NewRecorder()
		done, _ := serveRange(w, r, e, w.Header())
		if !done {
			return
		}
		if cl, _ := strconv.Atoi(w.Header().Get("Content-Length")); w.Code != 206 && w.Code != 416 || cl != w.Body.Len() {
			t.Fatalf("%q: %d, Content-Length %d, body %q", s, w.Code, cl, w.Body.String())
		}
	})
}

// A request whose lookup missed just before a flight of its variant landed, and which then
// finds no flight to join, is answered from what the flight stored instead of asking the
// origin again (TestCoalescing's 1,000 clients once saw a second origin request so).
func TestMissAfterFlightLanded(t *testing.T) {
	h, next, count := unitHandler(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "version %d", n)
	})
	if w := h.unitGet(t, next, "/landed"); w.Body.String() != "version 1" {
		t.Fatalf("first request: %q", w.Body)
	}
	// What a request that looked up before the store does next: miss, with no flight.
	r := httptest.NewRequest(http.MethodGet, "http://example.com/landed", nil)
	w := httptest.NewRecorder()
	if err := h.miss(w, r, next, h.keyer.key(r), nil); err != nil {
		t.Fatal(err)
	}
	if w.Body.String() != "version 1" || count.Load() != 1 || !strings.Contains(w.Header().Get(HeaderStatus), "; hit") {
		t.Errorf("the late miss: %q (Cache-Status %q), origin asked %d times; want the stored version 1 and 1 request",
			w.Body, w.Header().Get(HeaderStatus), count.Load())
	}
	// A request that wants no stored answer still goes to the origin.
	r = httptest.NewRequest(http.MethodGet, "http://example.com/landed", nil)
	r.Header.Set("Cache-Control", "no-cache")
	w = httptest.NewRecorder()
	if err := h.miss(w, r, next, h.keyer.key(r), nil); err != nil {
		t.Fatal(err)
	}
	if w.Body.String() != "version 2" || count.Load() != 2 {
		t.Errorf("no-cache miss: %q, origin asked %d times; want version 2 from the origin", w.Body, count.Load())
	}
}
