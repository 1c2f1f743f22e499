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
}

// derive computes the freshness fields from the stored header and times. heuristic is the
// fraction of (Date - Last-Modified) taken as lifetime when the response has no explicit
// freshness (0: none).
func (e *entry) derive(heuristic float64) {
	d := parseDirectives(e.header)
	date := parseHTTPDate(e.header.Get("Date"), e.responseTime)

	// §4.2.3 age calculation, done once: current age = initialAge + resident time.
	apparent := max(0, e.responseTime.Sub(date))
	ageValue := time.Duration(0)
	if a, err := strconv.ParseUint(strings.TrimSpace(e.header.Get("Age")), 10, 32); err == nil {
		ageValue = time.Duration(a) * time.Second
	}
	e.initialAge = max(apparent, ageValue+max(0, e.responseTime.Sub(e.requestTime)))

	// §4.2.1 freshness lifetime: s-maxage, then max-age, then Expires - Date, then heuristics.
	switch {
	case d.sMaxAge >= 0:
		e.lifetime = d.sMaxAge
	case d.maxAge >= 0:
		e.lifetime = d.maxAge
	case e.header.Get("Expires") != "":
		exp := parseHTTPDate(e.header.Get("Expires"), time.Time{})
		e.lifetime = max(0, exp.Sub(date)) // an invalid Expires is in the past
	default:
		e.lifetime = 0
		if lm := parseHTTPDate(e.header.Get("Last-Modified"), time.Time{}); heuristic > 0 && !lm.IsZero() && heuristicallyCacheable(e.status) {
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

// age returns the entry's current age at now (RFC 9111 §4.2.3).
func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.responseTime))
}

// retention is how long after now the entry can still be of use: while fresh, then while it
// may be served stale or revalidated, capped by maxTTL. Entries with validators are kept for
// their stale windows plus revalidateFor, so that a stale entry can be revalidated with a 304.
func (e *entry) retention(now time.Time, revalidateFor, maxTTL time.Duration) time.Duration {
	extra := max(e.swr, e.sie)
	if e.etag != "" || e.lastMod != "" {
		extra = max(extra, revalidateFor)
	}
	return min(maxTTL, e.lifetime+extra-e.age(now))
}

// heuristicallyCacheable are the status codes RFC 9110 §15.1 lists as cacheable by default.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// parseHTTPDate parses an HTTP-date, returning def when s is empty or invalid.
func parseHTTPDate(s string, def time.Time) time.Time {
	if s == "" {
		return def
	}
	t, err := http.ParseTime(s)
	if err != nil {
		return def
	}
	return t
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
func unmarshalEntry(b []byte, heuristic float64) (*entry, error) {
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
	e.derive(heuristic)
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
