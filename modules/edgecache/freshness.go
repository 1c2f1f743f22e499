package edgecache

import (
	"net/http"
	"strconv"
	"time"
)

// action is what the handler does with the entry a lookup found (RFC 9111 §4).
type action uint8

const (
	// actMiss: nothing usable is stored; the request goes upstream.
	actMiss action = iota
	// actOnlyIfCached: nothing stored can answer without the origin and the request says
	// only-if-cached; it is answered 504 (§5.2.1.7).
	actOnlyIfCached
	// actFresh: the entry is fresh enough for the request; it is served.
	actFresh
	// actStale: the entry is stale but within the request's max-stale; it is served.
	actStale
	// actStaleRevalidate: the entry is stale within its stale-while-revalidate window (RFC
	// 5861 §3); it is served and revalidated in the background.
	actStaleRevalidate
	// actRevalidate: the entry must be validated with the origin before it is used.
	actRevalidate
)

// decision is what decide makes of a stored entry for a request.
type decision struct {
	act action
	// age is the entry's current age (§4.2.3) and ttl its freshness lifetime left, zero or
	// negative once it is stale; both are 0 when nothing usable is stored.
	age, ttl time.Duration
	// staleIfError (actRevalidate only) lets the entry answer instead of a failed upstream:
	// the response's or the request's stale-if-error window (RFC 5861 §4) covers it.
	staleIfError bool
	// requested (actRevalidate only) is set when the request asked for validation
	// (no-cache, or Pragma: no-cache), whatever the entry's freshness.
	requested bool
}

// decide decides, from e's freshness (nil: nothing stored), the request's Cache-Control
// (or Pragma) and Range, and the time now, how r is answered (RFC 9111 §4.2, §5.2.1; RFC
// 5861):
//
//   - fresh: the entry is fresh, neither it nor the request has no-cache, its age is within
//     the request's max-age and its freshness left within min-fresh;
//   - an incomplete entry (§3.3) answers only a fresh lookup of a range it holds; otherwise
//     it counts as nothing stored;
//   - a stale entry (not merely too old for the request's max-age or min-fresh) without
//     must-revalidate, proxy-revalidate, s-maxage or no-cache (§4.2.4) is served within
//     the request's max-stale, else within its stale-while-revalidate window;
//   - anything else is revalidated, with stale-if-error when a window allows it, unless the
//     request says only-if-cached: then it is answered 504.
//
// A clock that went back before the response arrived adds no resident time to its age.
func decide(e *entry, r *http.Request, now time.Time) decision {
	req := parseDirectives(r.Header)
	if e == nil {
		return nothingStored(req)
	}
	noCache := requestNoCache(r.Header, req)
	d := decision{age: e.age(now)}
	d.ttl = e.lifetime - d.age
	validate := e.noCache || noCache
	fresh := d.ttl > 0 && !validate &&
		(req.maxAge < 0 || d.age <= req.maxAge) && (req.minFresh < 0 || d.ttl >= req.minFresh)
	switch {
	case e.parts != nil && (!fresh || !e.answers(r)):
		return nothingStored(req)
	case fresh:
		d.act = actFresh
		return d
	}
	staleness := -d.ttl
	mayServeStale := !e.mustRevalidate && !validate && d.ttl <= 0
	switch {
	case mayServeStale && (req.maxStaleAny || (req.maxStale >= 0 && staleness <= req.maxStale)):
		d.act = actStale
	case mayServeStale && e.swr > 0 && staleness <= e.swr:
		d.act = actStaleRevalidate
	case req.onlyIfCached:
		// Only a request to the origin could make the entry usable, and the client wants
		// none: 504 (§5.2.1.7).
		return decision{act: actOnlyIfCached, age: d.age, ttl: d.ttl}
	default:
		d.act = actRevalidate
		d.staleIfError = mayServeStale &&
			((e.sie > 0 && staleness <= e.sie) || (req.staleIfError >= 0 && staleness <= req.staleIfError))
		d.requested = noCache
	}
	return d
}

// nothingStored is the decision when no stored entry can be used for a request with
// directives req.
func nothingStored(req directives) decision {
	if req.onlyIfCached {
		return decision{act: actOnlyIfCached}
	}
	return decision{act: actMiss}
}

// fwd is the Cache-Status forward reason of a revalidation (RFC 9211 §2.2).
func (d decision) fwd() string {
	if d.requested {
		return "fwd=request"
	}
	return "fwd=stale"
}

// hitStatus is the Cache-Status of a response served from the entry, with a detail when
// detail is not empty.
func (d decision) hitStatus(detail string) string {
	ttl := strconv.Itoa(int(d.ttl / time.Second))
	if detail == "" {
		return cacheID + "; hit; ttl=" + ttl
	}
	return cacheID + "; hit; ttl=" + ttl + "; detail=" + detail
}

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
