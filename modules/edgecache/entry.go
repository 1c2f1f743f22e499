package edgecache

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// entry is a stored response and what the cache derived from it when it was stored.
type entry struct {
	status int
	header http.Header // as sent to clients, minus hop-by-hop fields, Age, Cache-Status and the tag fields
	body   []byte
	tags   []string // purge tags: the response's Cache-Tags plus the key's own tag

	// vary are the canonical names of the Vary'd request fields and secondary the request's
	// normalized values of them: the entry is stored under primary key + secondary.
	vary      []string
	secondary string
	ttl       time.Duration // how long L1 and L2 keep it, set when it is stored

	// requestTime and responseTime are when the request that fetched the response was
	// sent upstream and when its answer arrived (RFC 9111 §4.2.3).
	requestTime, responseTime time.Time

	// Derived by derive from the fields above.
	initialAge     time.Duration // corrected_initial_age
	lifetime       time.Duration // freshness lifetime; 0 when stale on arrival
	swr, sie       time.Duration // stale-while-revalidate and stale-if-error windows, 0 when absent
	mustRevalidate bool          // must-revalidate, proxy-revalidate or s-maxage: never served stale
	noCache        bool          // validated at the origin before every use
	etag, lastMod  string
	size           int // approximate bytes it occupies in memory

	// parts, set only on an incomplete entry (status 206, RFC 9111 §3.3; see partial.go),
	// are the stored byte ranges of a representation of length bytes, sorted, disjoint and
	// not adjacent; body is then nil.
	parts  []part
	length int64
}

// derive computes the freshness fields from the stored header and times. heuristic is the
// fraction of (Date - Last-Modified) taken as lifetime when the response has no explicit
// freshness (0: none). targeted are the targeted cache-control fields obeyed (RFC 9213;
// none given: defaultTargeted): the first valid one replaces Cache-Control and Expires.
func (e *entry) derive(heuristic float64, targeted ...string) {
	d, usedTargeted := responseDirectives(e.header, targeted)
	date := e.responseTime
	if t, ok := singleHTTPDate(e.header, "Date"); ok {
		date = t
	}

	// §4.2.3 age calculation, done once: current age = initialAge + resident time. An Age
	// that is not one non-negative integer on one field line makes the response stale
	// (below): it cannot be trusted to be as young as it claims.
	apparent := max(0, e.responseTime.Sub(date))
	ageValue, ageOK := parseAge(e.header)
	e.initialAge = max(apparent, ageValue+max(0, e.responseTime.Sub(e.requestTime)))

	// §4.2.1 freshness lifetime: s-maxage, then max-age, then Expires - Date, then heuristics.
	_, hasExpires := e.header["Expires"]
	switch {
	case !ageOK:
		e.lifetime = 0
	case d.sMaxAge >= 0:
		e.lifetime = d.sMaxAge
	case d.maxAge >= 0:
		e.lifetime = d.maxAge
	case hasExpires && !usedTargeted:
		// An Expires that is not exactly one valid HTTP-date is in the past (§5.3).
		if exp, ok := singleHTTPDate(e.header, "Expires"); ok {
			e.lifetime = max(0, exp.Sub(date))
		} else {
			e.lifetime = 0
		}
	default:
		e.lifetime = 0
		if lm, ok := singleHTTPDate(e.header, "Last-Modified"); ok && heuristic > 0 && heuristicallyCacheable(e.status) {
			e.lifetime = time.Duration(float64(max(0, date.Sub(lm))) * heuristic)
		}
	}
	e.swr = max(0, d.staleWhileRevalidate)
	e.sie = max(0, d.staleIfError)
	e.mustRevalidate = d.mustRevalidate || d.proxyRevalidate || d.sMaxAge >= 0
	e.noCache = d.noCache || d.noCacheFields
	e.etag = e.header.Get("Etag")
	e.lastMod = e.header.Get("Last-Modified")
	e.size = entryOverhead + len(e.body)
	for _, p := range e.parts {
		e.size += partOverhead + len(p.data)
	}
	for k, vs := range e.header {
		e.size += len(k)
		for _, v := range vs {
			e.size += len(v) + 16
		}
	}
	for _, t := range e.tags {
		e.size += len(t) + 16
	}
}

// entryOverhead approximates the memory an entry takes beyond its header and body bytes:
// the struct, the map, the cache's node and the key.
const entryOverhead = 512

// heuristicallyCacheable are the status codes RFC 9110 §15.1 lists as cacheable by default.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// parseAge returns the Age field's value. ok is false when the field is present but is not
// exactly one field line holding one non-negative integer (RFC 9111 §5.1: "old, 0", "1, 2",
// "-1", "1.5", or two field lines); the caller then treats the response as stale. Values
// beyond 2^31 seconds are capped there (§1.2.2).
func parseAge(h http.Header) (age time.Duration, ok bool) {
	vs, present := h["Age"]
	if !present {
		return 0, true
	}
	if len(vs) != 1 {
		return 0, false
	}
	v := strings.Trim(vs[0], " \t")
	if v == "" {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > uint64(maxDelta/time.Second) {
		return maxDelta, true
	}
	return time.Duration(n) * time.Second, true
}

// singleHTTPDate returns field name of h as an HTTP-date, when it has exactly one field
// line holding a valid one.
func singleHTTPDate(h http.Header, name string) (time.Time, bool) {
	vs := h[name]
	if len(vs) != 1 {
		return time.Time{}, false
	}
	return parseHTTPDateStrict(vs[0])
}

// Layouts of the three HTTP-date forms (RFC 9110 §5.6.7): IMF-fixdate, the obsolete RFC
// 850 and asctime forms.
const (
	rfc850Layout  = "Monday, 02-Jan-06 15:04:05 GMT"
	asctimeLayout = "Mon Jan _2 15:04:05 2006"
)

// parseHTTPDateStrict parses s as an HTTP-date, exactly: time.Parse (and http.ParseTime)
// accept one-digit hours, runs of spaces and a day name that does not match the date, which
// RFC 9110 §5.6.7's grammar does not. A valid date formats back to itself in its layout.
// Whitespace around the field value is not part of it (RFC 9110 §5.5).
func parseHTTPDateStrict(s string) (time.Time, bool) {
	s = strings.Trim(s, " \t")
	for _, layout := range []string{http.TimeFormat, rfc850Layout, asctimeLayout} {
		t, err := time.Parse(layout, s)
		if err == nil && t.Format(layout) == s {
			return t, true
		}
	}
	return time.Time{}, false
}

// The binary form of an entry in Valkey (L2), all integers as varints:
//
//	version | status | requestTime unix ns | responseTime unix ns
//	| #tags | (len tag)* | #fields | (len name #values (len value)*)* | len body | body
const entryVersion = 1

var errBadEntry = errors.New("edge_cache: malformed stored entry")

// marshal appends the binary form of e to dst.
func (e *entry) marshal(dst []byte) []byte {
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, uint64(e.status))
	dst = binary.AppendVarint(dst, e.requestTime.UnixNano())
	dst = binary.AppendVarint(dst, e.responseTime.UnixNano())
	dst = binary.AppendUvarint(dst, uint64(len(e.tags)))
	for _, t := range e.tags {
		dst = appendString(dst, t)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.header)))
	for k, vs := range e.header {
		dst = appendString(dst, k)
		dst = binary.AppendUvarint(dst, uint64(len(vs)))
		for _, v := range vs {
			dst = appendString(dst, v)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.body)))
	return append(dst, e.body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// unmarshalEntry decodes the binary form of an entry and derives its fields. The body
// aliases b.
func unmarshalEntry(b []byte, heuristic float64, targeted ...string) (*entry, error) {
	r := reader{b: b}
	if r.byte() != entryVersion {
		return nil, errBadEntry
	}
	e := &entry{status: int(r.uvarint())}
	e.requestTime = time.Unix(0, r.varint())
	e.responseTime = time.Unix(0, r.varint())
	if n := r.count(); n > 0 {
		e.tags = make([]string, n)
		for i := range e.tags {
			e.tags[i] = r.string()
		}
	}
	n := r.count()
	e.header = make(http.Header, n)
	for range n {
		k := r.string()
		vs := make([]string, r.count())
		for i := range vs {
			vs[i] = r.string()
		}
		e.header[k] = vs
	}
	e.body = r.bytes(r.count())
	if r.err || len(r.b) != 0 || e.status < 100 || e.status > 999 {
		return nil, errBadEntry
	}
	e.derive(heuristic, targeted...)
	return e, nil
}

// reader decodes the binary form; any error sticks and makes every later read empty.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length that must fit in what is left.
func (r *reader) count() int {
	v := r.uvarint()
	if v > uint64(len(r.b)) {
		r.err, r.b = true, nil
		return 0
	}
	return int(v)
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.err, r.b = true, nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes(r.count())) }
