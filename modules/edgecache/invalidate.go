package edgecache

import (
	"context"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/valkey-io/valkey-go"
)

// Invalidation by unsafe methods (RFC 9111 §4.4) is a purge any client could otherwise
// trigger: a POST answered with "Location: /popular" would evict the most popular page, and
// every such request would add a purge record. So it happens only when the request reached
// the app with an identity (InvalidateWhen) or matches InvalidateMatchRaw, only on a 2xx,
// only for URLs of the request's host, and only for URLs that are cached (in L1, in L2, or
// being fetched): an invalidation never adds a record for a URL nothing holds.

const (
	defaultInvalidateWhen = "{http.auth.user.id}"
	invalidateOff         = "off"
)

// mayInvalidate reports whether an unsafe request may invalidate cached URLs: its identity
// placeholder is not empty, or an invalidate matcher set matches it.
func (h *Handler) mayInvalidate(r *http.Request) bool {
	if h.hasIdentity(r) {
		return true
	}
	if len(h.invalidate) > 0 {
		ok, err := h.invalidate.AnyMatchWithError(r)
		return err == nil && ok
	}
	return false
}

// hasIdentity reports whether the request carries an identity: InvalidateWhen is not "off"
// and is not empty once its placeholders are replaced.
func (h *Handler) hasIdentity(r *http.Request) bool {
	if h.InvalidateWhen == "" || h.InvalidateWhen == invalidateOff {
		return false
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	return ok && strings.TrimSpace(repl.ReplaceAll(h.InvalidateWhen, "")) != ""
}

// invalidations returns the key tags a successful unsafe request invalidates: its own URL
// and the Location and Content-Location URLs of its response on the same host, those that
// are cached.
func (h *Handler) invalidations(r *http.Request, hdr http.Header) []string {
	keys := []string{h.keyer.key(r)}
	for _, f := range []string{"Location", "Content-Location"} {
		v := hdr.Get(f)
		if v == "" {
			continue
		}
		u, err := r.URL.Parse(v)
		if err != nil || (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") ||
			(u.Host != "" && !strings.EqualFold(u.Host, r.Host)) {
			continue
		}
		if k, err := h.keyer.keyOfURL(u.String(), r.Host); err == nil {
			keys = append(keys, k)
		}
	}
	var tags []string
	for i, k := range keys {
		if containsBefore(keys, i) || !h.store.holds(r.Context(), k) {
			continue
		}
		tags = append(tags, keyTag(k))
	}
	return tags
}

func containsBefore(keys []string, i int) bool {
	for _, k := range keys[:i] {
		if k == keys[i] {
			return true
		}
	}
	return false
}

// holds reports whether the cache may hold a response of primary: in L1, being fetched,
// or in L2 (when L2 cannot tell in time, it may).
func (s *store) holds(ctx context.Context, primary string) bool {
	if _, ok := s.l1.GetIfPresent(primary); ok {
		return true
	}
	s.flightMu.Lock()
	for k := range s.flights {
		if strings.HasPrefix(k, primary) && len(k) > len(primary) && k[len(primary)] == '\n' {
			s.flightMu.Unlock()
			return true
		}
	}
	s.flightMu.Unlock()
	if s.l2 == nil {
		return false
	}
	held := true
	_ = s.l2.call(ctx, s.l2.timeout, whereGet, func(ctx context.Context, c valkey.Client) error {
		n, err := c.Do(ctx, c.B().Exists().Key(s.l2.varyRecordKey(primary)).Build()).AsInt64()
		if err == nil {
			held = n > 0
		}
		return err
	})
	return held
}
