package edgecache

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// revalidateShared answers a request with Cache-Control: no-cache (or Pragma: no-cache)
// from a client without an identity for which entry e is stored: RFC 9111 §5.2.1.4 asks for
// validation with the origin, not a full fetch, so the request revalidates e (a conditional
// request with its validators, see revalidate) and concurrent no-cache requests for the same
// variant wait for that one revalidation (up to CoalesceTimeout) and are answered with its
// result. Any client could otherwise multiply origin load by sending no-cache.
func (h *Handler) revalidateShared(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, primary string, e *entry, staleIfError bool, fwd string) error {
	fkey := "revalidate\n" + l1Key(primary, e.secondary)
	f, leader := h.store.join(fkey)
	if leader {
		start := time.Now()
		var shared *entry
		defer func() { h.store.land(f, shared) }()
		err := h.revalidate(w, r, next, primary, e, staleIfError, fwd)
		// The entry the revalidation stored (merged with a 304, or a new 200) is what the
		// waiting requests get; nothing when it stored nothing.
		if ne, _ := h.store.lookupL1(primary, r.Header); ne != nil && ne != e && !ne.requestTime.Before(start) {
			shared = ne
		}
		return err
	}
	t := time.NewTimer(time.Duration(h.CoalesceTimeout))
	defer t.Stop()
	select {
	case <-f.done:
		if f.e != nil && (len(f.e.vary) == 0 || f.e.secondary == secondaryKey(f.e.vary, r.Header)) {
			lookups.WithLabelValues(h.Name, outcomeCoalesced).Inc()
			return serveEntry(w, r, f.e, f.e.age(time.Now()), cacheID+"; "+fwd+"; collapsed")
		}
	case <-t.C:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	return h.revalidate(w, r, next, primary, e, staleIfError, fwd)
}
