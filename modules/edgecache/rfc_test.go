package edgecache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testenv/testcaddy"
	_ "github.com/muejam/edge/modules/circuitbreaker"
)

// The integration tests run one in-process Caddy (testcaddy) in front of one origin in this
// process. Each test uses its own paths, so entries never meet; they are not parallel (one
// Caddy).
var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1100}}

// origin is the upstream: handlers by path, and the requests each path received.
type origin struct {
	srv      *httptest.Server
	mu       sync.Mutex
	handlers map[string]func(w http.ResponseWriter, r *http.Request, n int)
	counts   map[string]*atomic.Int64
}

var (
	theOrigin     *origin
	theOriginOnce sync.Once
)

func getOrigin() *origin {
	theOriginOnce.Do(func() {
		o := &origin{handlers: map[string]func(http.ResponseWriter, *http.Request, int){}, counts: map[string]*atomic.Int64{}}
		o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.mu.Lock()
			h, c := o.handlers[r.URL.Path], o.counts[r.URL.Path]
			o.mu.Unlock()
			if h == nil {
				http.NotFound(w, r)
				return
			}
			h(w, r, int(c.Add(1)))
		}))
		theOrigin = o
	})
	return theOrigin
}

// handle sets the handler of path; n counts the requests of path, from 1.
func (o *origin) handle(path string, h func(w http.ResponseWriter, r *http.Request, n int)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handlers[path] = h
	o.counts[path] = new(atomic.Int64)
}

func (o *origin) count(path string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[path].Load()
}

// loadCaddy (re)loads Caddy with edge_cache (extra options inside its block) in front of the
// origin. The store is pooled: reloading the same config keeps L1.
func loadCaddy(t testing.TB, extra string) *origin {
	t.Helper()
	return loadCaddyWith(t, extra, "")
}

// loadCaddyWith is loadCaddy with more directives in the site (ordered by Caddy).
func loadCaddyWith(t testing.TB, extra, directives string) *origin {
	t.Helper()
	o := getOrigin()
	testcaddy.LoadSite(t, fmt.Sprintf(`	edge_cache rfc {
		max_body_size 64KiB
		bypass {
			header X-Read-Your-Writes *
		}
		key {
			ignore_params utm_source
		}
%s
	}
%s
	reverse_proxy %s`, extra, directives, strings.TrimPrefix(o.srv.URL, "http://")))
	return o
}

type response struct {
	status int
	body   string
	header http.Header
}

// do sends method path with header pairs.
func do(t testing.TB, method, path string, headers ...string) response {
	t.Helper()
	resp, body := testenv.Fetch(t, client, method, testcaddy.SiteURL+path, headers...)
	return response{resp.StatusCode, body, resp.Header}
}

func get(t testing.TB, path string, headers ...string) response {
	t.Helper()
	return do(t, http.MethodGet, path, headers...)
}

// expect checks a response's status, body and that its Cache-Status contains every want.
func (r response) expect(t testing.TB, status int, body string, want ...string) {
	t.Helper()
	cs := r.header.Get(HeaderStatus)
	if r.status != status || (body != "" && r.body != body) {
		t.Fatalf("got %d %q (Cache-Status %q), want %d %q", r.status, r.body, cs, status, body)
	}
	for _, w := range want {
		if !strings.Contains(cs, w) {
			t.Fatalf("Cache-Status %q lacks %q (status %d, body %q)", cs, w, r.status, r.body)
		}
	}
}

func expectCount(t testing.TB, o *origin, path string, want int64) {
	t.Helper()
	if got := o.count(path); got != want {
		t.Fatalf("origin saw %d requests of %s, want %d", got, path, want)
	}
}

// numbered answers "<prefix> <n>" with the given extra header pairs.
func numbered(prefix string, headers ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Add(headers[i], headers[i+1])
		}
		fmt.Fprintf(w, "%s %d", prefix, n)
	}
}

func TestFreshnessAndAge(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/fresh", numbered("fresh", "Cache-Control", "max-age=60"))
	get(t, "/fresh").expect(t, 200, "fresh 1", "fwd=miss", "fwd-status=200", "stored")
	r := get(t, "/fresh")
	r.expect(t, 200, "fresh 1", "hit", "ttl=")
	if r.header.Get("Age") == "" {
		t.Fatal("a hit has no Age")
	}
	expectCount(t, o, "/fresh", 1)

	// s-maxage wins over max-age for a shared cache; an upstream Age counts (§4.2.3):
	// s-maxage=10 with Age: 10 is stale on arrival.
	o.handle("/smaxage", numbered("s", "Cache-Control", "max-age=600, s-maxage=10", "Age", "10", "Etag", `"x"`))
	get(t, "/smaxage").expect(t, 200, "s 1", "stored")
	get(t, "/smaxage").expect(t, 200, "s 2", "fwd=stale")
	// The Age the origin sent is carried on hits; Expires - Date gives freshness.
	o.handle("/expires", func(w http.ResponseWriter, r *http.Request, n int) {
		now := time.Now()
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", now.Add(time.Hour).UTC().Format(http.TimeFormat))
		w.Header().Set("Age", "100")
		fmt.Fprintf(w, "e %d", n)
	})
	get(t, "/expires").expect(t, 200, "e 1", "stored")
	r = get(t, "/expires")
	r.expect(t, 200, "e 1", "hit")
	if age, _ := strconv.Atoi(r.header.Get("Age")); age < 100 {
		t.Fatalf("Age %q, want at least the upstream's 100", r.header.Get("Age"))
	}
	expectCount(t, o, "/expires", 1)
}

func TestNotStored(t *testing.T) {
	o := loadCaddy(t, "")
	cases := []struct {
		path    string
		headers []string // response header pairs
		req     []string // request header pairs
	}{
		{"/ns/no-store", []string{"Cache-Control", "max-age=60, no-store"}, nil},
		{"/ns/private", []string{"Cache-Control", "private, max-age=60"}, nil},
		{"/ns/vary-star", []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil},
		{"/ns/set-cookie", []string{"Cache-Control", "max-age=60", "Set-Cookie", "session=1"}, nil},
		{"/ns/authorization", []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Bearer x"}},
		{"/ns/request-no-store", []string{"Cache-Control", "max-age=60"}, []string{"Cache-Control", "no-store"}},
		{"/ns/no-freshness", nil, nil},
		{"/ns/error", []string{"Cache-Control", "max-age=60"}, nil}, // a 206 below
	}
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/ns/"), func(t *testing.T) {
			h := numbered("x", c.headers...)
			if c.path == "/ns/error" {
				h = func(w http.ResponseWriter, r *http.Request, n int) {
					w.Header().Set("Cache-Control", "max-age=60")
					w.Header().Set("Content-Range", "bytes 0-0/10")
					w.WriteHeader(http.StatusPartialContent)
					fmt.Fprint(w, "x")
				}
			}
			o.handle(c.path, h)
			for range 2 {
				r := get(t, c.path, c.req...)
				if strings.Contains(r.header.Get(HeaderStatus), "stored") {
					t.Fatalf("stored: Cache-Status %q", r.header.Get(HeaderStatus))
				}
			}
			expectCount(t, o, c.path, 2)
		})
	}
	// §3.5: with Authorization, public, s-maxage or must-revalidate make it storable.
	o.handle("/ns/authorization-public", numbered("p", "Cache-Control", "public, max-age=60"))
	get(t, "/ns/authorization-public", "Authorization", "Bearer x").expect(t, 200, "p 1", "stored")
	get(t, "/ns/authorization-public").expect(t, 200, "p 1", "hit")
}

func TestVary(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/vary", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language, Accept-Encoding")
		fmt.Fprintf(w, "%s %d", r.Header.Get("Accept-Language"), n)
	})
	get(t, "/vary", "Accept-Language", "en").expect(t, 200, "en 1", "fwd=miss", "stored")
	get(t, "/vary", "Accept-Language", "fr").expect(t, 200, "fr 2", "fwd=miss", "stored")
	get(t, "/vary", "Accept-Language", "en").expect(t, 200, "en 1", "hit")
	get(t, "/vary", "Accept-Language", "fr").expect(t, 200, "fr 2", "hit")
	expectCount(t, o, "/vary", 2)
	// Accept-Encoding is normalized: order, q-values of codings the edge ignores and
	// spacing do not make new variants.
	get(t, "/vary", "Accept-Language", "en", "Accept-Encoding", "gzip, deflate, br").expect(t, 200, "en 3", "stored")
	get(t, "/vary", "Accept-Language", "en", "Accept-Encoding", "br,gzip").expect(t, 200, "en 3", "hit")
	get(t, "/vary", "Accept-Language", "en", "Accept-Encoding", "deflate;q=0.5, br;q=1, gzip").expect(t, 200, "en 3", "hit")
	// Go's client sent "gzip" on the first requests: a br refused with q=0 is that variant.
	get(t, "/vary", "Accept-Language", "en", "Accept-Encoding", "br;q=0, gzip").expect(t, 200, "en 1", "hit")
	expectCount(t, o, "/vary", 3)
}

func TestQueryNormalization(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/q", numbered("q", "Cache-Control", "max-age=60"))
	get(t, "/q?b=2&a=1").expect(t, 200, "q 1", "stored")
	get(t, "/q?a=1&b=2").expect(t, 200, "q 1", "hit")
	get(t, "/q?a=1&utm_source=mail&b=2").expect(t, 200, "q 1", "hit")
	get(t, "/q?a=2&b=2").expect(t, 200, "q 2", "stored")
	expectCount(t, o, "/q", 2)
}

func TestRevalidation(t *testing.T) {
	o := loadCaddy(t, "")
	// max-age=0 with a validator: stored, revalidated on every use; the origin answers 304
	// the second time, with a new Cache-Control that makes the entry fresh (§4.3.4 merge).
	o.handle("/etag", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Etag", `"v1"`)
		if n == 1 {
			w.Header().Set("Cache-Control", "max-age=0")
			w.Header().Set("X-Version", "first")
			fmt.Fprint(w, "body v1")
			return
		}
		if r.Header.Get("If-None-Match") != `"v1"` {
			t.Errorf("revalidation sent If-None-Match %q", r.Header.Get("If-None-Match"))
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("X-Version", "merged")
		w.WriteHeader(http.StatusNotModified)
	})
	get(t, "/etag").expect(t, 200, "body v1", "stored")
	r := get(t, "/etag")
	r.expect(t, 200, "body v1", "fwd=stale", "fwd-status=304")
	if r.header.Get("X-Version") != "merged" {
		t.Fatalf("304's fields not merged: X-Version %q", r.header.Get("X-Version"))
	}
	get(t, "/etag").expect(t, 200, "body v1", "hit")
	expectCount(t, o, "/etag", 2)

	// Last-Modified: If-Modified-Since; a 200 to the revalidation replaces the entry.
	lm := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o.handle("/lm", func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 && r.Header.Get("If-Modified-Since") != lm {
			t.Errorf("revalidation sent If-Modified-Since %q", r.Header.Get("If-Modified-Since"))
		}
		w.Header().Set("Last-Modified", lm)
		w.Header().Set("Cache-Control", []string{"no-cache", "max-age=60"}[min(n-1, 1)])
		fmt.Fprintf(w, "lm %d", n)
	})
	get(t, "/lm").expect(t, 200, "lm 1", "stored")
	get(t, "/lm").expect(t, 200, "lm 2", "fwd=stale", "fwd-status=200", "stored")
	get(t, "/lm").expect(t, 200, "lm 2", "hit")

	// The client's own conditionals are answered from the entry.
	r = get(t, "/etag", "If-None-Match", `"v0", W/"v1"`)
	if r.status != http.StatusNotModified || r.body != "" {
		t.Fatalf("If-None-Match on a hit: %d %q", r.status, r.body)
	}
	r = get(t, "/lm", "If-Modified-Since", time.Now().UTC().Format(http.TimeFormat))
	if r.status != http.StatusNotModified {
		t.Fatalf("If-Modified-Since on a hit: %d", r.status)
	}
	expectCount(t, o, "/etag", 2)
	expectCount(t, o, "/lm", 2)
}

func TestRequestDirectives(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/req", numbered("r", "Cache-Control", "max-age=60", "Age", "30"))
	get(t, "/req").expect(t, 200, "r 1", "stored")
	get(t, "/req", "Cache-Control", "no-cache").expect(t, 200, "r 2", "fwd=request")
	get(t, "/req", "Pragma", "no-cache").expect(t, 200, "r 3", "fwd=request")
	get(t, "/req", "Cache-Control", "max-age=10").expect(t, 200, "r 4", "fwd=stale") // Age 30 > 10
	get(t, "/req", "Cache-Control", "max-age=100").expect(t, 200, "r 4", "hit")
	get(t, "/req", "Cache-Control", "min-fresh=45").expect(t, 200, "r 5", "fwd=stale") // 30 s left < 45
	get(t, "/req", "Cache-Control", "min-fresh=10").expect(t, 200, "r 5", "hit")
	expectCount(t, o, "/req", 5)

	// only-if-cached: 504 without an entry, the entry with one.
	o.handle("/oic", numbered("o", "Cache-Control", "max-age=60"))
	if r := get(t, "/oic", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("only-if-cached, nothing stored: %d", r.status)
	}
	expectCount(t, o, "/oic", 0)
	get(t, "/oic").expect(t, 200, "o 1", "stored")
	get(t, "/oic", "Cache-Control", "only-if-cached").expect(t, 200, "o 1", "hit")
	// An entry only the origin could make usable again: 504, and the origin is not asked.
	o.handle("/oicstale", numbered("s", "Cache-Control", "max-age=10", "Age", "20", "Etag", `"s"`))
	get(t, "/oicstale").expect(t, 200, "s 1", "stored")
	if r := get(t, "/oicstale", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("only-if-cached, a stale entry: %d %q", r.status, r.body)
	}
	expectCount(t, o, "/oicstale", 1)

	// max-stale accepts a stale entry; must-revalidate forbids it.
	o.handle("/maxstale", numbered("m", "Cache-Control", "max-age=10", "Age", "20", "Etag", `"m"`))
	get(t, "/maxstale").expect(t, 200, "m 1", "stored")
	get(t, "/maxstale", "Cache-Control", "max-stale=60").expect(t, 200, "m 1", "hit", "detail=max-stale")
	get(t, "/maxstale", "Cache-Control", "max-stale=5").expect(t, 200, "m 2")
	o.handle("/mustreval", numbered("mr", "Cache-Control", "max-age=10, must-revalidate", "Age", "20", "Etag", `"m"`))
	get(t, "/mustreval").expect(t, 200, "mr 1", "stored")
	get(t, "/mustreval", "Cache-Control", "max-stale").expect(t, 200, "mr 2", "fwd=stale")
}

func TestStaleWhileRevalidate(t *testing.T) {
	o := loadCaddy(t, "")
	release := make(chan struct{})
	o.handle("/swr", func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			<-release // the background revalidation is slow: clients must not wait for it
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "swr %d", n)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		w.Header().Set("Age", "1") // stale on arrival
		fmt.Fprintf(w, "swr %d", n)
	})
	get(t, "/swr").expect(t, 200, "swr 1", "stored")
	for range 3 {
		get(t, "/swr").expect(t, 200, "swr 1", "hit", "detail=stale-while-revalidate")
	}
	close(release)
	testenv.Eventually(t, 5*time.Second, "background revalidation", func() bool {
		return get(t, "/swr").body == "swr 2"
	})
	expectCount(t, o, "/swr", 2) // one background revalidation for the three stale hits
}

func TestStaleIfError(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/sie", func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "down")
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60")
		w.Header().Set("Age", "1")
		fmt.Fprint(w, "good")
	})
	get(t, "/sie").expect(t, 200, "good", "stored")
	get(t, "/sie").expect(t, 200, "good", "fwd=stale", "fwd-status=503", "detail=stale-if-error")

	// must-revalidate: the failure is passed on, never the stale entry.
	o.handle("/sie-mr", func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "down")
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60, must-revalidate")
		w.Header().Set("Age", "1")
		fmt.Fprint(w, "good")
	})
	get(t, "/sie-mr").expect(t, 200, "good", "stored")
	get(t, "/sie-mr").expect(t, 503, "down")

	// The request's stale-if-error works too.
	o.handle("/sie-req", func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("Age", "5")
		w.Header().Set("Etag", `"e"`)
		fmt.Fprint(w, "good")
	})
	get(t, "/sie-req").expect(t, 200, "good", "stored")
	get(t, "/sie-req").expect(t, 502, "")
	get(t, "/sie-req", "Cache-Control", "stale-if-error=60").expect(t, 200, "good", "detail=stale-if-error")
}

func TestInvalidationAndPurge(t *testing.T) {
	o := loadCaddy(t, "invalidate_when {http.request.header.X-User}")
	o.handle("/story/1", numbered("story", "Cache-Control", "max-age=600", "Cache-Tags", "story:1 feed:new"))
	o.handle("/story/2", numbered("other", "Cache-Control", "max-age=600", "Cache-Tags", "story:2"))
	o.handle("/story/1/edit", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Purge", "story:1")
		w.WriteHeader(http.StatusNoContent)
	})
	r := get(t, "/story/1")
	r.expect(t, 200, "story 1", "stored")
	if r.header.Get(HeaderTags) != "" {
		t.Fatal("Cache-Tags reached the client")
	}
	get(t, "/story/2").expect(t, 200, "other 1", "stored")
	get(t, "/story/1").expect(t, 200, "story 1", "hit")

	// A mutation's Cache-Purge purges the tag (and is stripped).
	r = do(t, http.MethodPost, "/story/1/edit")
	if r.status != http.StatusNoContent || r.header.Get(HeaderPurge) != "" {
		t.Fatalf("purge response: %d, Cache-Purge %q", r.status, r.header.Get(HeaderPurge))
	}
	get(t, "/story/1").expect(t, 200, "story 2", "fwd=miss")
	get(t, "/story/2").expect(t, 200, "other 1", "hit")

	// §4.4: a successful unsafe request (with an identity, see abuse_test.go) invalidates its
	// URL; a failed one does not.
	o.handle("/doc", func(w http.ResponseWriter, r *http.Request, n int) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Cache-Control", "max-age=600")
			fmt.Fprintf(w, "doc %d", n)
		case http.MethodPut:
			w.WriteHeader(http.StatusConflict)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	get(t, "/doc").expect(t, 200, "doc 1", "stored")
	do(t, http.MethodPut, "/doc", "X-User", "u1")
	get(t, "/doc").expect(t, 200, "doc 1", "hit")
	do(t, http.MethodDelete, "/doc", "X-User", "u1")
	get(t, "/doc").expect(t, 200, "doc 4", "fwd=miss")

	// The admin API purges by tag and by URL.
	purge := func(body string) PurgeResponse {
		t.Helper()
		resp, err := http.Post(testcaddy.AdminURL+"/edge/cache/purge", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pr PurgeResponse
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("purge %s: %d %s", body, resp.StatusCode, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
			t.Fatal(err)
		}
		return pr
	}
	get(t, "/story/2").expect(t, 200, "other 1", "hit")
	purge(`{"tags":["story:2"]}`)
	get(t, "/story/2").expect(t, 200, "other 2", "fwd=miss")
	purge(`{"urls":["` + testcaddy.SiteURL + `/story/2"]}`)
	get(t, "/story/2").expect(t, 200, "other 3", "fwd=miss")
	get(t, "/story/2").expect(t, 200, "other 3", "hit")
	for _, bad := range []string{`{}`, `{"tags":["a b"]}`, `{"urls":["/relative"]}`, `{"cache":"nope","tags":["x"]}`, `{"tagz":["x"]}`} {
		resp, err := http.Post(testcaddy.AdminURL+"/edge/cache/purge", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("purge %s: %d, want an error", bad, resp.StatusCode)
		}
	}
}

func TestHeadAndBypassAndLargeBodies(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/head", numbered("head", "Cache-Control", "max-age=60"))
	get(t, "/head").expect(t, 200, "head 1", "stored")
	r := do(t, http.MethodHead, "/head")
	r.expect(t, 200, "", "hit")
	if r.body != "" || r.header.Get("Content-Length") != "6" {
		t.Fatalf("HEAD from GET: body %q, Content-Length %q", r.body, r.header.Get("Content-Length"))
	}
	expectCount(t, o, "/head", 1)

	// A read-your-writes request skips the lookup (the bypass matcher) but refreshes the entry.
	get(t, "/head", "X-Read-Your-Writes", "token").expect(t, 200, "head 2", "fwd=bypass", "stored")
	get(t, "/head").expect(t, 200, "head 2", "hit")

	// Bodies above max_body_size stream through whole and are not stored.
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	o.handle("/big", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(big)
	})
	for range 2 {
		if r := get(t, "/big"); r.status != 200 || r.body != string(big) {
			t.Fatalf("big body: %d, %d bytes", r.status, len(r.body))
		}
	}
	expectCount(t, o, "/big", 2)
}

func TestCoalescing(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/cold", func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "cold %d", n)
	})
	const clients = 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{} // status, body and Cache-Status of every answer, counted
	start := make(chan struct{})
	for range clients {
		wg.Go(func() {
			<-start
			var answer string
			resp, err := client.Get(testcaddy.SiteURL + "/cold")
			if err != nil {
				answer = err.Error()
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answer = fmt.Sprintf("%d %q (Cache-Status %q)", resp.StatusCode, body, resp.Header.Get(HeaderStatus))
			}
			mu.Lock()
			answers[answer]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	var good, collapsed int
	for answer, n := range answers {
		if strings.HasPrefix(answer, `200 "cold 1" `) {
			good += n
			if strings.Contains(answer, "collapsed") {
				collapsed += n
			}
		}
	}
	if good != clients {
		t.Fatalf("%d of %d requests failed or got another body; the origin was asked %d times; the answers: %v", clients-good, clients, o.count("/cold"), answers)
	}
	expectCount(t, o, "/cold", 1)
	t.Logf("%d requests, 1 upstream request, %d collapsed into it", clients, collapsed)
}

// TestStaleWhenBreakerOpen: edge_cache in front of circuit_breaker. While the upstream
// fails (502), stale-if-error entries are served; once the breaker opens, the short-circuit 503
// is an upstream failure too: clients get the stale entry and the upstream sees nothing.
func TestStaleWhenBreakerOpen(t *testing.T) {
	o := loadCaddyWith(t, "", `	circuit_breaker stale-test {
		consecutive_failures 2
		open_duration 1m
	}`)
	o.handle("/cb", func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			w.WriteHeader(http.StatusBadGateway) // an upstream failure (a 500 is not one to a breaker)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		w.Header().Set("Age", "1")
		fmt.Fprint(w, "story page")
	})
	o.handle("/cb-uncached", func(w http.ResponseWriter, r *http.Request, n int) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	get(t, "/cb").expect(t, 200, "story page", "stored")
	// Two failures reach the upstream and open the breaker; the client gets stale each time.
	for range 2 {
		get(t, "/cb").expect(t, 200, "story page", "fwd=stale", "fwd-status=502", "detail=stale-if-error")
	}
	expectCount(t, o, "/cb", 3)
	for range 5 {
		get(t, "/cb").expect(t, 200, "story page", "fwd=stale", "fwd-status=503", "detail=stale-if-error")
	}
	expectCount(t, o, "/cb", 3) // short-circuited: the upstream saw none of them
	// Without a stale entry the breaker's own 503 goes to the client, with Retry-After.
	r := get(t, "/cb-uncached")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("uncached path with the breaker open: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	expectCount(t, o, "/cb-uncached", 0)
}

// TestL1SurvivesReload: a reload that keeps the cache's settings keeps its entries.
func TestL1SurvivesReload(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/reload", numbered("r", "Cache-Control", "max-age=600"))
	get(t, "/reload").expect(t, 200, "r 1", "stored")
	loadCaddyWith(t, "", "\theader X-Reloaded yes")
	r := get(t, "/reload")
	r.expect(t, 200, "r 1", "hit")
	if r.header.Get("X-Reloaded") != "yes" {
		t.Fatal("the new config is not the one answering")
	}
	expectCount(t, o, "/reload", 1)
}

// TestMetrics: lookups by outcome, purges by source and L1's size reach Caddy's /metrics.
func TestMetrics(t *testing.T) {
	o := loadCaddy(t, "")
	o.handle("/metrics-test", numbered("m", "Cache-Control", "max-age=600", "Cache-Tags", "metrics-test"))
	get(t, "/metrics-test")
	get(t, "/metrics-test")
	o.handle("/metrics-purge", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set(HeaderPurge, "metrics-test")
	})
	do(t, http.MethodPost, "/metrics-purge")
	resp, err := http.Get(testcaddy.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`muejam_edge_cache_lookups_total{cache="rfc",outcome="hit"}`,
		`muejam_edge_cache_lookups_total{cache="rfc",outcome="miss"}`,
		`muejam_edge_cache_purges_total{cache="rfc",source="response"}`,
		`muejam_edge_cache_l1_bytes{cache="rfc"}`,
		`muejam_edge_cache_l1_entries{cache="rfc"}`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestPurgeSettle: for purge_settle after a purge, responses carrying the purged tag are
// served but not stored (an origin reading from a lagging replica could answer with the
// content the purge removed); after it, they are stored again.
func TestPurgeSettle(t *testing.T) {
	o := loadCaddy(t, "purge_settle 1s")
	o.handle("/settle", numbered("s", "Cache-Control", "max-age=600", "Cache-Tags", "settle"))
	o.handle("/settle/edit", func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set(HeaderPurge, "settle")
	})
	get(t, "/settle").expect(t, 200, "s 1", "stored")
	purged := time.Now()
	do(t, http.MethodPost, "/settle/edit")
	for i := 2; time.Since(purged) < 800*time.Millisecond; i++ {
		r := get(t, "/settle")
		r.expect(t, 200, fmt.Sprintf("s %d", i), "fwd=miss")
		if strings.Contains(r.header.Get(HeaderStatus), "stored") {
			t.Fatalf("stored %s after the purge: %q", time.Since(purged), r.header.Get(HeaderStatus))
		}
	}
	time.Sleep(time.Until(purged.Add(1100 * time.Millisecond)))
	n := o.count("/settle")
	get(t, "/settle").expect(t, 200, fmt.Sprintf("s %d", n+1), "stored")
	get(t, "/settle").expect(t, 200, fmt.Sprintf("s %d", n+1), "hit")
}
