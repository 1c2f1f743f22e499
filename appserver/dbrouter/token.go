package dbrouter

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"time"
)

// HTTP names of the read-your-writes token.
const (
	// TokenHeader carries the token in responses to writes and in requests.
	TokenHeader = "X-Read-Your-Writes"
	// TokenCookie carries the token for browsers.
	TokenCookie = "ryw"
)

// Token is a read-your-writes token: the WAL position of a commit and when it was made. A
// read whose context carries a Token (WithToken) only uses nodes that have replayed that
// position, else the primary. The zero Token pins nothing.
type Token struct {
	lsn    uint64
	issued time.Time
}

const tokenVersion = 1

// IsZero reports whether t pins nothing.
func (t Token) IsZero() bool { return t.lsn == 0 }

// String encodes t as an opaque, URL- and cookie-safe string; "" for the zero Token.
func (t Token) String() string {
	if t.IsZero() {
		return ""
	}
	var b [17]byte
	b[0] = tokenVersion
	binary.BigEndian.PutUint64(b[1:], t.lsn)
	binary.BigEndian.PutUint64(b[9:], uint64(t.issued.UnixMilli()))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseToken decodes a token made by String. Anything else gives the zero Token and false:
// a bad token is ignored, never an error.
func ParseToken(s string) (Token, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 17 || b[0] != tokenVersion {
		return Token{}, false
	}
	t := Token{lsn: binary.BigEndian.Uint64(b[1:]), issued: time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:])))}
	if t.IsZero() {
		return Token{}, false
	}
	return t, true
}

// validToken returns t if it is still honoured: not older than TokenTTL, not from the future
// (a minute of clock skew allowed).
func (r *Router) validToken(t Token) Token {
	if t.IsZero() {
		return t
	}
	if age := time.Since(t.issued); age > r.cfg.TokenTTL || age < -time.Minute {
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

// SetToken hands t to the client after a write: the X-Read-Your-Writes header and the ryw
// cookie, which lives as long as the router honours the token (TokenTTL).
func (r *Router) SetToken(w http.ResponseWriter, t Token) {
	if t.IsZero() {
		return
	}
	v := t.String()
	w.Header().Set(TokenHeader, v)
	http.SetCookie(w, &http.Cookie{
		Name:     TokenCookie,
		Value:    v,
		Path:     "/",
		MaxAge:   int(r.cfg.TokenTTL.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// TokenFromRequest reads the token of a request: the X-Read-Your-Writes header, else the
// ryw cookie. A missing or bad token gives the zero Token.
func TokenFromRequest(req *http.Request) Token {
	if t, ok := ParseToken(req.Header.Get(TokenHeader)); ok {
		return t
	}
	if c, err := req.Cookie(TokenCookie); err == nil {
		if t, ok := ParseToken(c.Value); ok {
			return t
		}
	}
	return Token{}
}

// Middleware puts the request's token (TokenFromRequest) in its context, so that
// Router.Reader(r.Context()) honours it.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if t := TokenFromRequest(req); !t.IsZero() {
			req = req.WithContext(WithToken(req.Context(), t))
		}
		next.ServeHTTP(w, req)
	})
}
