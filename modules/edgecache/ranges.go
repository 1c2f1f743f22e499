package edgecache

import (
	"net/http"
	"strconv"
	"strings"
)

// serveRange answers a GET with Range from stored 200 e (RFC 9110 §14): one satisfiable
// byte range gets a 206 with Content-Range and that part of the body; a range set none of
// whose ranges is satisfiable gets a 416 with "Content-Range: bytes */length". It returns
// false, having written nothing, when the Range is to be ignored and the whole 200 sent: a
// unit other than bytes, an invalid range set, more than one range (a server may ignore
// Range; one multipart/byteranges body is not worth its cost here), an If-Range that does
// not match e, or an empty body.
func serveRange(w http.ResponseWriter, r *http.Request, e *entry, hdr http.Header) (bool, error) {
	vs := r.Header["Range"]
	if len(vs) != 1 || len(e.body) == 0 || !ifRangeMatches(r, e) {
		return false, nil
	}
	unit, set, ok := strings.Cut(vs[0], "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return false, nil
	}
	size := int64(len(e.body))
	var start, end int64 // of the one range, inclusive
	n, satisfiable := 0, 0
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue // empty list elements are allowed (RFC 9110 §5.6.1)
		}
		n++
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return false, nil
		}
		switch {
		case first == "": // suffix-range: the last `last` bytes
			l, err := parseDigits(last)
			if err != nil {
				return false, nil
			}
			if l > 0 {
				satisfiable++
				start, end = max(0, size-l), size-1
			}
		default:
			f, err := parseDigits(first)
			if err != nil {
				return false, nil
			}
			l := size - 1
			if last != "" {
				if l, err = parseDigits(last); err != nil || l < f {
					return false, nil
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
		return false, nil
	case satisfiable == 0:
		hdr["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
		hdr["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true, nil
	}
	hdr["Content-Range"] = []string{"bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10) + "/" + strconv.FormatInt(size, 10)}
	hdr["Content-Length"] = []string{strconv.FormatInt(end-start+1, 10)}
	w.WriteHeader(http.StatusPartialContent)
	_, err := w.Write(e.body[start : end+1])
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
		return e.etag != "" && !strings.HasPrefix(e.etag, "W/") && ir == e.etag
	case strings.HasPrefix(ir, "W/"):
		return false
	}
	t, ok := parseHTTPDateStrict(ir)
	lm, ok2 := parseHTTPDateStrict(e.lastMod)
	return ok && ok2 && t.Equal(lm)
}

// parseDigits parses 1*DIGIT.
func parseDigits(s string) (int64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}
