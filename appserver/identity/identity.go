// Package identity tells handlers who made a request. The edge authenticates the client and
// forwards the user id in the X-Auth-User header, overwriting any value the client sent; the
// app server believes that header only when the connection comes from one of the edge's
// networks (TRUSTED_EDGE_CIDRS). From anywhere else the header is ignored, so the request is
// anonymous.
package identity

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"unicode"
)

// Header is the request header in which the edge forwards the authenticated user id.
const Header = "X-Auth-User"

// FilterHeader is the request header in which the edge says whose blocks filter the answers
// shared by everyone (feeds, search, whispers): empty for an anonymous request and for a
// user the edge knows to block nobody (modules/viewerfilter), the user id otherwise. Those
// answers Vary on it, so that the edge keeps one copy for everyone it is empty for.
const FilterHeader = "X-Viewer-Filter"

// MaxUserIDLen bounds the length of a user id; longer values are not trusted.
const MaxUserIDLen = 255

// DefaultTrusted are the networks trusted by default: loopback, where the edge runs in
// development.
var DefaultTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

type (
	userKey   struct{}
	sharesKey struct{}
)

// WithUser returns a context carrying the user id.
func WithUser(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, userKey{}, id)
}

// User returns the authenticated user id of the request's context, if any.
func User(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(userKey{}).(string)
	return id, ok && id != ""
}

// Shares reports whether the edge said that the request's user blocks nobody (FilterHeader
// present and empty on a request from a trusted network), so that the answers shared by
// everyone are, for them, the anonymous ones, and may be marked so.
func Shares(ctx context.Context) bool {
	s, _ := ctx.Value(sharesKey{}).(bool)
	return s
}

// Middleware puts the X-Auth-User of requests from a trusted network in their context (see
// User), and whether the edge said the user blocks nobody (FilterHeader, see Shares). Both
// headers are removed from every request, so no handler reads an untrusted value.
func Middleware(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(Header)
			filter, filtered := r.Header[FilterHeader]
			r.Header.Del(Header)
			r.Header.Del(FilterHeader)
			if id != "" && validID(id) && FromTrusted(r.RemoteAddr, trusted) {
				ctx := WithUser(r.Context(), id)
				if filtered && len(filter) == 1 && filter[0] == "" {
					ctx = context.WithValue(ctx, sharesKey{}, true)
				}
				r = r.WithContext(ctx)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// FromTrusted reports whether the peer address (host:port, as in http.Request.RemoteAddr)
// is in one of the trusted networks.
func FromTrusted(remoteAddr string, trusted []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// validID rejects ids that are too long or hold control characters.
func validID(id string) bool {
	if len(id) > MaxUserIDLen {
		return false
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}
