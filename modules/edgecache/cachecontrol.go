package edgecache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives are the Cache-Control directives the cache acts on, parsed from a request or a
// response (RFC 9111 §5.2). A duration directive that is absent is -1; one whose value is
// not a non-negative integer is 0, the conservative reading (§4.2.1: a response with invalid
// freshness information is stale).
type directives struct {
	noStore, noCache, private, public   bool
	mustRevalidate, proxyRevalidate     bool
	onlyIfCached, maxStaleAny           bool
	maxAge, sMaxAge, minFresh, maxStale time.Duration
	staleWhileRevalidate, staleIfError  time.Duration
	// noCacheFields is set when no-cache names header fields (a response's qualified
	// no-cache): those fields must not be sent without revalidation.
	noCacheFields bool
}

// noDirectives has every directive absent.
var noDirectives = directives{maxAge: -1, sMaxAge: -1, minFresh: -1, maxStale: -1, staleWhileRevalidate: -1, staleIfError: -1}

// parseDirectives parses every Cache-Control field line of h. Unknown directives are
// ignored; a directive given twice keeps its first value.
func parseDirectives(h http.Header) directives {
	d := noDirectives
	for _, line := range h.Values("Cache-Control") {
		for part := range strings.SplitSeq(line, ",") {
			name, value, hasValue := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.Trim(strings.TrimSpace(value), `"`)
			if d.setFlag(name, hasValue && value != "") {
				continue
			}
			if dst := d.duration(name); dst != nil {
				setSeconds(dst, value)
				continue
			}
			switch name {
			case "only-if-cached":
				d.onlyIfCached = true
			case "min-fresh":
				setSeconds(&d.minFresh, value)
			case "max-stale":
				if !hasValue {
					d.maxStaleAny = true
				} else {
					setSeconds(&d.maxStale, value)
				}
			}
		}
	}
	return d
}

// setFlag sets the boolean directive name, which Cache-Control and a targeted field share
// (no-cache naming header fields when fields), and reports whether name is one.
func (d *directives) setFlag(name string, fields bool) bool {
	switch name {
	case "no-store":
		d.noStore = true
	case "no-cache":
		if fields {
			d.noCacheFields = true
		} else {
			d.noCache = true
		}
	case "private":
		d.private = true
	case "public":
		d.public = true
	case "must-revalidate":
		d.mustRevalidate = true
	case "proxy-revalidate":
		d.proxyRevalidate = true
	default:
		return false
	}
	return true
}

// duration returns where the response duration directive name goes (shared by
// Cache-Control and a targeted field), or nil.
func (d *directives) duration(name string) *time.Duration {
	switch name {
	case "max-age":
		return &d.maxAge
	case "s-maxage":
		return &d.sMaxAge
	case "stale-while-revalidate":
		return &d.staleWhileRevalidate
	case "stale-if-error":
		return &d.staleIfError
	}
	return nil
}

// maxDelta is the largest delta-seconds value kept (RFC 9111 §1.2.2: 2^31 seconds).
const maxDelta = (1 << 31) * time.Second

// setSeconds stores delta-seconds s in *dst unless *dst is already set (the first occurrence
// wins); a value that is not a non-negative integer stores 0.
func setSeconds(dst *time.Duration, s string) {
	if *dst >= 0 {
		return
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		*dst = 0
		return
	}
	if n > uint64(maxDelta/time.Second) {
		*dst = maxDelta
		return
	}
	*dst = time.Duration(n) * time.Second
}

// requestNoCache reports whether a request asks for validation at the origin: no-cache, or
// (without Cache-Control) the HTTP/1.0 Pragma: no-cache (RFC 9111 §5.4).
func requestNoCache(h http.Header, d directives) bool {
	if d.noCache {
		return true
	}
	if len(h.Values("Cache-Control")) > 0 {
		return false
	}
	for _, p := range h.Values("Pragma") {
		if strings.Contains(strings.ToLower(p), "no-cache") {
			return true
		}
	}
	return false
}
