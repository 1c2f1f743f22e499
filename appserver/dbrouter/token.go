package dbrouter

import (
	"context"
	"net/http"
	"time"

	"github.com/muejam/edge/internal/rywtoken"
)

// HTTP names of the read-your-writes token.
const (
	// TokenHeader carries the token in responses to writes and in requests.
	TokenHeader = rywtoken.Header
	// TokenCookie is the name of the cookie that carries the token for browsers.
	TokenCookie = rywtoken.Cookie
)

// Token is a read-your-writes token: the WAL position of a commit and when it was made. A
// read whose context carries a Token (WithToken) only uses nodes that have replayed that
// position, else the primary. The zero Token pins nothing. On the wire it is signed with the
// router's TokenKeys (internal/rywtoken), so a client cannot make one up.
type Token struct {
	lsn    uint64
	issued time.Time
}

// IsZero reports whether t pins nothing.
func (t Token) IsZero() bool { return t.lsn == 0 }

// EncodeToken signs t with the router's current key: the opaque, URL- and cookie-safe
// string clients carry (api.SetToken sends it); "" for the zero Token.
func (r *Router) EncodeToken(t Token) string {
	if t.IsZero() {
		return ""
	}
	return r.cfg.TokenKeys.Sign(rywtoken.Claims{LSN: t.lsn, Issued: t.issued})
}

// validToken returns t if it is still honoured: not older than TokenTTL, not from the future
// (rywtoken.MaxSkew of clock skew allowed).
func (r *Router) validToken(t Token) Token {
	if t.IsZero() {
		return t
	}
	if age := time.Since(t.issued); age > r.cfg.TokenTTL || age < -rywtoken.MaxSkew {
		return Token{}
	}
	return t
}

type tokenKey struct{}

// WithToken returns a context whose reads honour t.
func WithToken(ctx context.Context, t Token) context.Context {
	if t.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, tokenKey{}, t)
}

// TokenFrom returns the Token carried by ctx.
func TokenFrom(ctx context.Context) (Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(Token)
	return t, ok
}

// Pins reports whether ctx carries a token the router still honours: the request comes
// from a client that has just written, and its reads must see that write, so answers
// computed for everyone and kept in a cache are no answer for it.
func (r *Router) Pins(ctx context.Context) bool {
	t, _ := TokenFrom(ctx)
	return !r.validToken(t).IsZero()
}

// TokenTTL is how long the router honours a token it hands out: the lifetime of the cookie
// that carries it (api.SetToken).
func (r *Router) TokenTTL() time.Duration { return r.cfg.TokenTTL }

// TokenFromRequest reads the token of a request: the X-Read-Your-Writes header, else the
// cookie named ryw, verified with TokenKeys. A missing token gives the zero Token, and so does
// one that is forged, malformed, expired or from the future: that one is also counted in
// muejam_db_read_your_writes_tokens_total by outcome.
func (r *Router) TokenFromRequest(req *http.Request) Token {
	c, out := r.cfg.TokenKeys.FromRequest(req, r.cfg.TokenTTL, time.Now())
	if out == rywtoken.Absent {
		return Token{}
	}
	r.metrics.tokens.WithLabelValues(out.String()).Inc()
	if out != rywtoken.Valid {
		return Token{}
	}
	return Token{lsn: c.LSN, issued: c.Issued}
}

// Middleware puts the request's valid token (TokenFromRequest) in its context, so that
// Reader(r.Context()) and Pins honour it.
func (r *Router) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if t := r.TokenFromRequest(req); !t.IsZero() {
			req = req.WithContext(WithToken(req.Context(), t))
		}
		next.ServeHTTP(w, req)
	})
}
