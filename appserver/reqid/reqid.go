// Package reqid identifies the requests of the app server: one request id from the edge
// (X-Request-Id, believed only from the edge's networks like X-Auth-User, else generated),
// the client's address as the edge saw it, and, once known, the user and the route pattern.
// Middleware puts an *Info in the request's context; everything that logs, audits or
// answers an error reads it there, so one id ties the edge's access log, the app's log
// lines, audit events, error events, problem bodies and the database's application_name.
package reqid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/identity"
)

// Header is the request and response header of the request id; the edge sets it on every
// request it forwards, and the app server echoes it on every response.
const Header = "X-Request-Id"

// MaxLen bounds the length of a request id taken from the edge; longer ones are replaced.
const MaxLen = 64

// Info describes one request. Middleware fills ID, Client and Start; Observe fills User
// and Route; Status and Bytes follow the response as it is written. It belongs to the
// request's goroutine.
type Info struct {
	ID     string     // the request id
	Client netip.Addr // the client's address: the edge's X-Forwarded-For, or the peer's
	User   string     // the authenticated user, "" when anonymous
	Route  string     // the ServeMux pattern that served the request, "" when none did
	Start  time.Time  // when the request reached the app server
	Status int        // the response's status, 0 until a header is written
	Bytes  int64      // the body bytes written
}

type infoKey struct{}

// FromContext returns the request's Info, nil outside Middleware.
func FromContext(ctx context.Context) *Info {
	info, _ := ctx.Value(infoKey{}).(*Info)
	return info
}

// NewContext returns ctx carrying info, as Middleware gives it to handlers: for work done
// on behalf of a request outside its handler (and tests).
func NewContext(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// ID returns the request id of ctx, "" outside Middleware.
func ID(ctx context.Context) string {
	if info := FromContext(ctx); info != nil {
		return info.ID
	}
	return ""
}

// New returns a fresh request id: a random UUID (version 4), as the edge's
// {http.request.uuid}.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Middleware starts the Info of every request: the X-Request-Id and X-Forwarded-For of a
// request from a trusted network (the edge), else a new id and the peer's address. It sets
// X-Request-Id on the response before the handler runs (httpjson puts it in error bodies),
// and keeps Status and Bytes up to date. done, when not nil, is called with the request and
// its Info after the handler returns, for the access log.
func Middleware(trusted []netip.Prefix, done func(*http.Request, *Info)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info := &Info{Start: time.Now()}
			id, fwd := r.Header.Get(Header), r.Header.Get("X-Forwarded-For")
			if identity.FromTrusted(r.RemoteAddr, trusted) {
				if validID(id) {
					info.ID = id
				}
				info.Client = lastForwarded(fwd)
			}
			if info.ID == "" {
				info.ID = New()
				r.Header.Set(Header, info.ID)
			}
			if !info.Client.IsValid() {
				info.Client = peer(r.RemoteAddr)
			}
			w.Header().Set(Header, info.ID)
			r = r.WithContext(NewContext(r.Context(), info))
			next.ServeHTTP(&writer{ResponseWriter: w, info: info}, r)
			if done != nil {
				done(r, info)
			}
		})
	}
}

// Observe records the request's user and, when the handler returns (or panics), the
// route pattern in its Info. Put it inside identity.Middleware, around the ServeMux: the
// pattern is set on the request the ServeMux receives.
func Observe(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := FromContext(r.Context())
		if info == nil {
			h.ServeHTTP(w, r)
			return
		}
		info.User, _ = identity.User(r.Context())
		defer func() { info.Route = r.Pattern }()
		h.ServeHTTP(w, r)
	})
}

// validID accepts 1 to MaxLen characters of letters, digits and "-_.:" (safe in a log line,
// a header and the database's application_name).
func validID(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:", c) >= 0) {
			return false
		}
	}
	return true
}

// lastForwarded is the last address of an X-Forwarded-For value: the client as the edge
// saw it (the edge appends the peer it received the request from).
func lastForwarded(v string) netip.Addr {
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	a, err := netip.ParseAddr(strings.TrimSpace(v))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// peer is the address of a host:port RemoteAddr.
func peer(remoteAddr string) netip.Addr {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// writer keeps the Info's Status and Bytes.
type writer struct {
	http.ResponseWriter
	info *Info
}

func (w *writer) WriteHeader(code int) {
	if w.info.Status == 0 {
		w.info.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) Write(b []byte) (int, error) {
	if w.info.Status == 0 {
		w.info.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.info.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// AccessLog returns the done function of Middleware that writes the app's access log to
// log: one line a request ("request") with method, route pattern ("unmatched" when none),
// status, duration, body bytes, user and request id; never the path or query, which can
// hold personal data (the log's scrubber covers the rest).
func AccessLog(log *zap.Logger) func(*http.Request, *Info) {
	return func(r *http.Request, info *Info) {
		route, status := info.Route, info.Status
		if route == "" {
			route = "unmatched"
		}
		if status == 0 {
			status = http.StatusOK
		}
		log.Info("request", zap.String("method", r.Method), zap.String("route", route), zap.Int("status", status),
			zap.Duration("duration", time.Since(info.Start)), zap.Int64("bytes", info.Bytes),
			zap.String("user", info.User), zap.String("request_id", info.ID))
	}
}
