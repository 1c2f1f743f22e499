package edgecache

import (
	"net/http"
	"strconv"
	"strings"
)

// rangeOutcome is what a request's Range asks of a stored representation.
type rangeOutcome int

const (
	rangeIgnored rangeOutcome = iota // send the whole representation
	rangeOne                         // one satisfiable range: a 206
	rangeNone                        // no satisfiable range: a 416
)

// requestedRange evaluates r's Range against the representation e holds (RFC 9110 §14),
// of e.fullLength() bytes: one satisfiable byte range (rangeOne, with its first and last
// byte), a range set none of whose ranges is satisfiable (rangeNone), or rangeIgnored when
// the Range is to be ignored and the whole representation sent: no Range or more than one
// field line, a unit other than bytes, an invalid range set, more than one range (a server
// may ignore Range; one multipart/byteranges body is not worth its cost here), an If-Range
// that does not match e, or an empty representation.
func requestedRange(r *http.Request, e *entry) (start, end int64, o rangeOutcome) {
	vs := r.Header["Range"]
	size := e.fullLength()
	if len(vs) != 1 || size == 0 || !ifRangeMatches(r, e) {
		return 0, 0, rangeIgnored
	}
	unit, set, ok := strings.Cut(vs[0], "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return 0, 0, rangeIgnored
	}
	n, satisfiable := 0, 0
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue // empty list elements are allowed (RFC 9110 §5.6.1)
		}
		n++
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return 0, 0, rangeIgnored
		}
		switch {
		case first == "": // suffix-range: the last `last` bytes
			l, err := parseDigits(last)
			if err != nil {
				return 0, 0, rangeIgnored
			}
			if l > 0 {
				satisfiable++
				start, end = max(0, size-l), size-1
			}
		default:
			f, err := parseDigits(first)
			if err != nil {
				return 0, 0, rangeIgnored
			}
			l := size - 1
			if last != "" {
				if l, err = parseDigits(last); err != nil || l < f {
					return 0, 0, rangeIgnored
				}
			}
			if f < size {
				satisfiable++
				start, end = f, min(l, size-1)
			}
		}
	}
	switch {
	case n == 0 || n > 1 && satisfiable > 0:
		return 0, 0, rangeIgnored
	case satisfiable == 0:
		return 0, 0, rangeNone
	}
	return start, end, rangeOne
}

// serveRange answers a GET with Range from e (see requestedRange): one satisfiable byte
// range gets a 206 with Content-Range and that part of the body; a range set none of whose
// ranges is satisfiable gets a 416 with "Content-Range: bytes */length". It returns false,
// having written nothing, when the whole representation is to be sent instead, or when e is
// incomplete and does not hold the range (entry.answers says beforehand).
func serveRange(w http.ResponseWriter, r *http.Request, e *entry, hdr http.Header) (bool, error) {
	start, end, o := requestedRange(r, e)
	switch o {
	case rangeIgnored:
		return false, nil
	case rangeNone:
		hdr["Content-Range"] = []string{"bytes */" + strconv.FormatInt(e.fullLength(), 10)}
		hdr["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true, nil
	}
	body, ok := e.slice(start, end)
	if !ok {
		return false, nil
	}
	hdr["Content-Range"] = []string{"bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10) + "/" + strconv.FormatInt(e.fullLength(), 10)}
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusPartialContent)
	_, err := w.Write(body)
	return true, err
}

// ifRangeMatches evaluates r's If-Range against e (RFC 9110 §13.1.5): absent, or a strong
// entity tag equal to e's strong ETag, or an HTTP-date equal to e's Last-Modified.
func ifRangeMatches(r *http.Request, e *entry) bool {
	ir := r.Header.Get("If-Range")
	switch {
	case ir == "":
		return true
	case strings.HasPrefix(ir, `"`):
		return strongETag(e.etag) && ir == e.etag
	case strings.HasPrefix(ir, "W/"):
		return false
	}
	t, ok := parseHTTPDateStrict(ir)
	lm, ok2 := parseHTTPDateStrict(e.lastMod)
	return ok && ok2 && t.Equal(lm)
}

// strongETag reports whether v is a strong entity-tag: a quoted opaque-tag without the W/
// of a weak one (RFC 9110 §8.8.3).
func strongETag(v string) bool {
	return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && !strings.Contains(v[1:len(v)-1], `"`)
}

// parseDigits parses 1*DIGIT.
func parseDigits(s string) (int64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}
