package edgecache

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const alphabet = "abcdefghijklmnopqrstuvwxyz"

// rangeOrigin answers with http.ServeContent (a 206 for one range, multipart/byteranges for
// several, If-Range honoured) the representation rep gives for the n-th request, with
// max-age=60, X-Version: n and the extra header pairs.
func rangeOrigin(rep func(n int) (body, etag string), headers ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		body, etag := rep(n)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		if etag != "" {
			w.Header().Set("Etag", etag)
		}
		w.Header().Set("X-Version", strconv.Itoa(n))
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(body))
	}
}

// same is a representation that never changes.
func same(body, etag string) func(int) (string, string) {
	return func(int) (string, string) { return body, etag }
}

// RFC 9111 §3.3–3.4: 206s with one byte range of a known length and a strong ETag are
// stored, combined and reused; the others are not. Every step checks status, body,
// Content-Range, Content-Length, Cache-Status and the origin's request count.
func TestPartialContent(t *testing.T) {
	o := loadCaddy(t, "")
	type step struct {
		rng      string   // Range; "" for none
		req      []string // more request header pairs
		status   int
		body     string
		cr       string   // the Content-Range wanted ("" for none)
		cs       []string // what Cache-Status must contain
		unstored bool     // Cache-Status must not say stored
		count    int64    // origin requests after the step
		hdr      []string // response header pairs wanted
	}
	upper := strings.ToUpper(alphabet)
	cases := []struct {
		name   string
		origin func(http.ResponseWriter, *http.Request, int)
		steps  []step
	}{
		{"sub-range reused", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"fwd=miss", "fwd-status=206", "stored"}, count: 1},
			{rng: "bytes=2-5", status: 206, body: "cdef", cr: "bytes 2-5/26", cs: []string{"hit"}, count: 1, hdr: []string{"Etag", `"a"`}},
			{rng: "bytes=0-0", status: 206, body: "a", cr: "bytes 0-0/26", cs: []string{"hit"}, count: 1},
			{rng: "bytes=-3", status: 206, body: "xyz", cr: "bytes 23-25/26", cs: []string{"fwd=miss", "stored"}, count: 2},
			{rng: "bytes=24-", status: 206, body: "yz", cr: "bytes 24-25/26", cs: []string{"hit"}, count: 2},
			{rng: "bytes=9-23", status: 206, body: "jklmnopqrstuvwx", cr: "bytes 9-23/26", cs: []string{"fwd=miss"}, count: 3},
			{rng: "bytes=100-200", status: 416, cr: "bytes */26", cs: []string{"hit"}, count: 3},
		}},
		{"two 206s combined", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{rng: "bytes=10-19", status: 206, body: "klmnopqrst", cr: "bytes 10-19/26", cs: []string{"fwd=miss", "stored"}, count: 2},
			{rng: "bytes=5-14", status: 206, body: "fghijklmno", cr: "bytes 5-14/26", cs: []string{"hit"}, count: 2},
			{rng: "bytes=0-19", status: 206, body: alphabet[:20], cr: "bytes 0-19/26", cs: []string{"hit"}, count: 2},
			{rng: "bytes=15-22", status: 206, body: "pqrstuvw", cr: "bytes 15-22/26", cs: []string{"fwd=miss", "stored"}, count: 3},
			{rng: "bytes=1-22", status: 206, body: alphabet[1:23], cr: "bytes 1-22/26", cs: []string{"hit"}, count: 3},
		}},
		{"combined to complete", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-12", status: 206, body: alphabet[:13], cr: "bytes 0-12/26", cs: []string{"stored"}, count: 1},
			{rng: "bytes=13-25", status: 206, body: alphabet[13:], cr: "bytes 13-25/26", cs: []string{"stored"}, count: 2},
			{status: 200, body: alphabet, cs: []string{"hit"}, count: 2, hdr: []string{"Etag", `"a"`}},
			{rng: "bytes=3-20", status: 206, body: alphabet[3:21], cr: "bytes 3-20/26", cs: []string{"hit"}, count: 2},
			{rng: "bytes=0-1,5-6", status: 200, body: alphabet, cs: []string{"hit"}, count: 2}, // several ranges: the whole 200
		}},
		{"whole range in one 206", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-", status: 206, body: alphabet, cr: "bytes 0-25/26", cs: []string{"stored"}, count: 1},
			{status: 200, body: alphabet, cs: []string{"hit"}, count: 1},
		}},
		{"different ETag replaces", rangeOrigin(func(n int) (string, string) {
			if n == 1 {
				return alphabet, `"v1"`
			}
			return upper, `"v2"`
		}), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{rng: "bytes=10-19", status: 206, body: "KLMNOPQRST", cr: "bytes 10-19/26", cs: []string{"stored"}, count: 2},
			{rng: "bytes=12-15", status: 206, body: "MNOP", cr: "bytes 12-15/26", cs: []string{"hit"}, count: 2, hdr: []string{"Etag", `"v2"`}},
			{rng: "bytes=0-4", status: 206, body: "ABCDE", cr: "bytes 0-4/26", cs: []string{"fwd=miss", "stored"}, count: 3},
			{rng: "bytes=2-3", status: 206, body: "CD", cr: "bytes 2-3/26", cs: []string{"hit"}, count: 3},
			{rng: "bytes=4-10", status: 206, body: "EFGHIJK", cr: "bytes 4-10/26", cs: []string{"fwd=miss"}, count: 4},
		}},
		// §3.4: the newer response's fields replace the stored ones of the same name; the
		// stored fields it does not carry stay.
		{"newer headers win", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.Header().Set("X-First", "kept")
			}
			rangeOrigin(same(alphabet, `"a"`))(w, r, n)
		}, []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1, hdr: []string{"X-Version", "1"}},
			{rng: "bytes=10-19", status: 206, body: "klmnopqrst", cr: "bytes 10-19/26", cs: []string{"stored"}, count: 2, hdr: []string{"X-Version", "2"}},
			{rng: "bytes=2-4", status: 206, body: "cde", cr: "bytes 2-4/26", cs: []string{"hit"}, count: 2, hdr: []string{"X-Version", "2", "X-First", "kept"}},
			{rng: "bytes=12-14", status: 206, body: "mno", cr: "bytes 12-14/26", cs: []string{"hit"}, count: 2, hdr: []string{"X-Version", "2", "X-First", "kept"}},
		}},
		{"full GET not answered by a partial entry", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{status: 200, body: alphabet, cs: []string{"fwd=miss", "fwd-status=200", "stored"}, count: 2},
			{status: 200, body: alphabet, cs: []string{"hit"}, count: 2},
			{rng: "bytes=20-", status: 206, body: "uvwxyz", cr: "bytes 20-25/26", cs: []string{"hit"}, count: 2},
		}},
		{"HEAD not answered by a partial entry", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{req: []string{"X-Method", http.MethodHead}, status: 200, cs: []string{"fwd=miss"}, unstored: true, count: 2},
		}},
		{"If-Range", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{rng: "bytes=2-4", req: []string{"If-Range", `"a"`}, status: 206, body: "cde", cr: "bytes 2-4/26", cs: []string{"hit"}, count: 1},
			{rng: "bytes=2-4", req: []string{"If-Range", `"old"`}, status: 200, body: alphabet, cs: []string{"fwd=miss", "stored"}, count: 2},
			{rng: "bytes=2-4", status: 206, body: "cde", cr: "bytes 2-4/26", cs: []string{"hit"}, count: 2},
		}},
		{"stale partial not served", rangeOrigin(same(alphabet, `"a"`), "Cache-Control", "max-age=0"), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{rng: "bytes=2-4", status: 206, body: "cde", cr: "bytes 2-4/26", cs: []string{"fwd=miss", "stored"}, count: 2},
		}},
		{"only-if-cached", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"stored"}, count: 1},
			{rng: "bytes=20-25", req: []string{"Cache-Control", "only-if-cached"}, status: 504, cs: []string{"only-if-cached"}, count: 1},
			{rng: "bytes=1-2", req: []string{"Cache-Control", "only-if-cached"}, status: 206, body: "bc", cr: "bytes 1-2/26", cs: []string{"hit"}, count: 1},
		}},
		{"unknown length not stored", func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Etag", `"a"`)
			w.Header().Set("Content-Range", "bytes 0-9/*")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprint(w, alphabet[:10])
		}, []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/*", unstored: true, count: 1},
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/*", cs: []string{"fwd=miss"}, unstored: true, count: 2},
		}},
		{"weak ETag not stored", rangeOrigin(same(alphabet, `W/"a"`)), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", unstored: true, count: 1},
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"fwd=miss"}, unstored: true, count: 2},
		}},
		{"no ETag not stored", rangeOrigin(same(alphabet, "")), []step{
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", unstored: true, count: 1},
			{rng: "bytes=0-9", status: 206, body: "abcdefghij", cr: "bytes 0-9/26", cs: []string{"fwd=miss"}, unstored: true, count: 2},
		}},
		{"multipart not stored", rangeOrigin(same(alphabet, `"a"`)), []step{
			{rng: "bytes=0-1,5-6", status: 206, unstored: true, count: 1},
			{rng: "bytes=0-1", status: 206, body: "ab", cr: "bytes 0-1/26", cs: []string{"fwd=miss", "stored"}, count: 2},
			{rng: "bytes=0-1,5-6", status: 206, cs: []string{"fwd=miss"}, unstored: true, count: 3},
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := fmt.Sprintf("/partial/%d", i)
			o.handle(path, c.origin)
			for j, s := range c.steps {
				method, req := http.MethodGet, s.req
				if len(req) == 2 && req[0] == "X-Method" {
					method, req = req[1], nil
				}
				if s.rng != "" {
					req = append([]string{"Range", s.rng}, req...)
				}
				r := do(t, method, path, req...)
				cs := r.header.Get(HeaderStatus)
				wrong := r.status != s.status || r.header.Get("Content-Range") != s.cr || o.count(path) != s.count ||
					(s.status != 206 || s.cr != "") && (r.body != s.body || method == http.MethodGet && r.header.Get("Content-Length") != strconv.Itoa(len(s.body))) ||
					s.unstored && strings.Contains(cs, "stored")
				for _, w := range s.cs {
					wrong = wrong || !strings.Contains(cs, w)
				}
				for k := 0; k+1 < len(s.hdr); k += 2 {
					wrong = wrong || r.header.Get(s.hdr[k]) != s.hdr[k+1]
				}
				if wrong {
					t.Fatalf("step %d (%s %q %q): %d %q Content-Range %q Content-Length %q Cache-Status %q after %d origin requests;\nwant %+v",
						j, method, s.rng, s.req, r.status, r.body, r.header.Get("Content-Range"), r.header.Get("Content-Length"), cs, o.count(path), s)
				}
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	for s, want := range map[string]*contentRange{
		"bytes 0-9/26":                   {0, 9, 26},
		" bytes 25-25/26\t":              {25, 25, 26},
		"Bytes 0-0/1":                    {0, 0, 1},
		"bytes 0-9/*":                    nil, // unknown length
		"bytes */26":                     nil, // unsatisfied-range
		"bytes 9-0/26":                   nil,
		"bytes 0-26/26":                  nil,
		"bytes 0-9/0":                    nil,
		"bytes  0-9/26":                  nil,
		"bytes=0-9/26":                   nil,
		"items 0-9/26":                   nil,
		"bytes -1-9/26":                  nil,
		"bytes +0-9/26":                  nil,
		"bytes 0-9/26, 10-1/2":           nil,
		"bytes 0-9":                      nil,
		"bytes 0/26":                     nil,
		"":                               nil,
		"bytes 0-9/99999999999999999999": nil,
	} {
		got, ok := parseContentRange(s)
		if ok != (want != nil) || ok && got != *want {
			t.Errorf("%q: %+v %v, want %+v", s, got, ok, want)
		}
	}
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/26", "bytes 0-9/*", "bytes */26", "Bytes 1-1/2", "bytes 00-01/0002", " bytes 3-4/5 ", "bytes 9223372036854775806-9223372036854775806/9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, ok := parseContentRange(s)
		if !ok {
			return
		}
		if cr.first < 0 || cr.first > cr.last || cr.last >= cr.length {
			t.Fatalf("%q: accepted %+v", s, cr)
		}
		if again, ok := parseContentRange(fmt.Sprintf("bytes %d-%d/%d", cr.first, cr.last, cr.length)); !ok || again != cr {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", s, cr, again, ok)
		}
	})
}

func TestInsertPart(t *testing.T) {
	p := func(start int64, data string) part { return part{start, []byte(data)} }
	cases := []struct {
		name  string
		parts []part
		add   part
		want  []part
	}{
		{"into nothing", nil, p(5, "fg"), []part{p(5, "fg")}},
		{"before, apart", []part{p(5, "fg")}, p(0, "ab"), []part{p(0, "ab"), p(5, "fg")}},
		{"after, apart", []part{p(0, "ab")}, p(5, "fg"), []part{p(0, "ab"), p(5, "fg")}},
		{"touching both", []part{p(0, "ab"), p(5, "fg")}, p(2, "cde"), []part{p(0, "abcdefg")}},
		{"overlapping, new bytes win", []part{p(0, "abcd")}, p(2, "CDEF"), []part{p(0, "abCDEF")}},
		{"inside", []part{p(0, "abcdefg")}, p(2, "CD"), []part{p(0, "abCDefg")}},
		{"covering several", []part{p(1, "b"), p(3, "d"), p(9, "j")}, p(0, "abcdef"), []part{p(0, "abcdef"), p(9, "j")}},
		{"between", []part{p(0, "a"), p(9, "j")}, p(4, "e"), []part{p(0, "a"), p(4, "e"), p(9, "j")}},
	}
	for _, c := range cases {
		before := slices.Clone(c.parts)
		got := insertPart(c.parts, c.add)
		if !slices.EqualFunc(got, c.want, func(a, b part) bool { return a.start == b.start && string(a.data) == string(b.data) }) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if !slices.EqualFunc(before, c.parts, func(a, b part) bool { return a.start == b.start && string(a.data) == string(b.data) }) {
			t.Errorf("%s: modified the stored parts", c.name)
		}
	}
}

// Incomplete entries weigh their parts in L1's byte bound, hold at most maxParts parts and
// at most MaxBodyBytes of them: a 206 that would go beyond replaces the entry.
func TestPartialBounded(t *testing.T) {
	rep := strings.Repeat("0123456789abcdef", 4<<10) // 64 KiB
	h, next, _ := unitHandler(t, rangeOrigin(same(rep, `"big"`)))
	const budget = 256 << 10
	s, err := newStore(storeConfig{name: "partial-bound", maxBytes: budget, maxTTL: time.Hour}, h.logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Destruct() })
	h.store, h.MaxBodyBytes = s, 32<<10
	get := func(path, rng string) *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "http://example.com"+path, nil)
		r.Header.Set("Range", rng)
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusPartialContent {
			t.Fatalf("%s %s: %d", path, rng, w.Code)
		}
		return w
	}
	stored := func(path string) *entry {
		return s.variant(h.keyer.key(httptest.NewRequest(http.MethodGet, "http://example.com"+path, nil)), &entry{})
	}

	// Disjoint one-byte parts: never more than maxParts; the newest is kept.
	for k := range maxParts + 4 {
		get("/parts", fmt.Sprintf("bytes=%d-%d", 2*k, 2*k))
		e := stored("/parts")
		if e == nil || len(e.parts) > maxParts || !slices.ContainsFunc(e.parts, func(p part) bool { return p.start == int64(2*k) }) {
			t.Fatalf("after part %d: %s", k, describeParts(e))
		}
	}

	// MaxBodyBytes of parts: two 16 KiB parts are combined, a third byte would exceed it.
	get("/bytes", "bytes=0-16383")
	get("/bytes", "bytes=20000-36383")
	if e := stored("/bytes"); e == nil || len(e.parts) != 2 || e.size < 32<<10 {
		t.Fatalf("two parts: %s", describeParts(e))
	}
	get("/bytes", "bytes=40000-40000")
	if e := stored("/bytes"); e == nil || len(e.parts) != 1 || e.parts[0].start != 40000 || string(e.parts[0].data) != rep[40000:40001] {
		t.Fatalf("beyond max_body_size: %s", describeParts(e))
	}

	// Last, as it fills L1 (whose admission policy may then turn new entries away), and on
	// an empty L1, so that every entry counted holds one 16 KiB part: 200 partial entries of
	// 16 KiB through an L1 of 256 KiB.
	s.l1.InvalidateAll()
	for i := range 200 {
		get(fmt.Sprintf("/bound/%d", i), "bytes=0-16383")
	}
	s.l1.CleanUp()
	size, n := s.l1.WeightedSize(), s.l1.EstimatedSize()
	if size > budget*11/10 || n == 0 || uint64(n)*16<<10 > size {
		t.Fatalf("L1 weighs %d bytes for %d entries of 16 KiB parts, budget %d", size, n, budget)
	}
}

// An incomplete entry asked for what it does not hold (the lookup never does: it checks
// entry.answers) refuses rather than send a 206 without its bytes.
func TestServeIncompleteRefuses(t *testing.T) {
	e := &entry{header: http.Header{"Etag": {`"a"`}}}
	e.setParts([]part{{start: 2, data: []byte("cd")}}, 26)
	e.derive(0)
	for rng, answers := range map[string]bool{"bytes=2-3": true, "bytes=3-3": true, "bytes=30-": true, "bytes=1-3": false, "": false, "bytes=2-2,3-3": false} {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
		if rng != "" {
			r.Header.Set("Range", rng)
		}
		w := httptest.NewRecorder()
		err := serveEntry(w, r, e, 0, cacheID+"; hit")
		if e.answers(r) != answers || answers != (err == nil) || !answers && w.Code != http.StatusOK {
			t.Errorf("%q: answers %v, serveEntry %d %v", rng, e.answers(r), w.Code, err)
		}
	}
}

// describeParts says what an incomplete entry holds, without its bytes.
func describeParts(e *entry) string {
	if e == nil {
		return "no entry"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "status %d, size %d, %d parts:", e.status, e.size, len(e.parts))
	for _, p := range e.parts {
		fmt.Fprintf(&b, " %d-%d", p.start, p.start+int64(len(p.data))-1)
	}
	return b.String()
}
