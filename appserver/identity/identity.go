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

	"github.com/muejam/edge/appserver/httpjson"
)

// Header is the request header in which the edge forwards the authenticated user id.
const Header = "X-Auth-User"

// MaxUserIDLen bounds the length of a user id; longer values are not trusted.
const MaxUserIDLen = 255

// DefaultTrusted are the networks trusted by default: loopback, where the edge runs in
// development.
var DefaultTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

type userKey struct{}

// WithUser returns a context carrying the user id.
func WithUser(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, userKey{}, id)
}

// User returns the authenticated user id of the request's context, if any.
func User(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(userKey{}).(string)
	return id, ok && id != ""
}

// Middleware puts the X-Auth-User of requests from a trusted network in their context (see
// User). The header is removed from every request, so no handler reads an untrusted value.
func Middleware(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(Header)
			if id != "" {
				r.Header.Del(Header)
				if validID(id) && FromTrusted(r.RemoteAddr, trusted) {
					r = r.WithContext(WithUser(r.Context(), id))
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Require answers 401 to requests without an authenticated user, and passes the others to h.
func Require(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := User(r.Context()); !ok {
			w.Header().Set("Cache-Control", "private, no-store")
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "this route needs a signed-in user", nil)
			return
		}
		h.ServeHTTP(w, r)
	})
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
