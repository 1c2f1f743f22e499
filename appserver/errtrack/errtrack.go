// Package errtrack tracks the app server's errors: panics recovered in every handler
// (Recover) and goroutine (Go), and failures answered 500 (Internal). Each is logged once
// with the request id, route and user of its request (package reqid), panics with their
// stack and a stable fingerprint that groups the same bug, and counted in
// muejam_app_errors_total{kind}, kind being panic or internal; with EnableSentry each is
// also forwarded, scrubbed, to a Sentry-compatible service.
package errtrack

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/httpjson"
	"github.com/muejam/edge/appserver/reqid"
)

// Kinds of errors, the values of the kind label.
const (
	KindPanic    = "panic"
	KindInternal = "internal"
)

// errorsTotal is muejam_app_errors_total; register it with Collector.
var errorsTotal = func() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "muejam_app_errors_total",
		Help: "Errors of the app server: panics recovered (kind=panic) and requests answered 500 (kind=internal).",
	}, []string{"kind"})
	c.WithLabelValues(KindPanic)
	c.WithLabelValues(KindInternal)
	return c
}()

// Collector is muejam_app_errors_total, for the app server's registry.
func Collector() prometheus.Collector { return errorsTotal }

// Internal counts a request answered 500 for a failure of the server's own, err, which the
// caller logs, and forwards it to Sentry when enabled.
func Internal(r *http.Request, err error) {
	errorsTotal.WithLabelValues(KindInternal).Inc()
	forwardInternal(r, err)
}

// Recover answers a panic in next with 500 and the API's error body (carrying the request
// id) when nothing was written yet, logs it to log ("panic recovered": value, stack,
// fingerprint, route, request id, user) and counts it. http.ErrAbortHandler, the way to
// abort a response on purpose, passes through.
func Recover(log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel value itself
					panic(v)
				}
				fields := []zap.Field{zap.String("method", r.Method)}
				info := reqid.FromContext(r.Context())
				if info != nil {
					fields = append(fields, zap.String("route", info.Route), zap.String("request_id", info.ID),
						zap.String("user", info.User))
				}
				logPanic(log, v, info, fields)
				if info == nil || info.Status == 0 {
					httpjson.InternalError(w)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// Fault is a handler that panics, for the end-to-end tests of error tracking
// (APP_FAULT_INJECTION).
func Fault() http.Handler {
	return http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("fault injection") })
}

// Go runs fn in a goroutine that recovers, logs and counts its panic, named name in the
// log line; the goroutine then ends.
func Go(log *zap.Logger, name string, fn func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				logPanic(log, v, nil, []zap.Field{zap.String("goroutine", name)})
			}
		}()
		fn()
	}()
}

// logPanic logs, counts and forwards the panic v of the request of info (nil for a
// goroutine), called from the deferred function that recovered it.
func logPanic(log *zap.Logger, v any, info *reqid.Info, fields []zap.Field) {
	errorsTotal.WithLabelValues(KindPanic).Inc()
	msg, fp := fmt.Sprint(v), Fingerprint(v)
	log.Error("panic recovered", append(fields,
		zap.String("panic", msg),
		zap.String("fingerprint", fp),
		zap.ByteString("stack", debug.Stack()))...)
	forward(KindPanic, msg, fp, info)
}

// Fingerprint groups panics of the same bug: a hash of the value's type and the functions
// of the stack where it was raised (not their lines, which move with unrelated edits, nor
// the runtime's and this package's), called while the panic unwinds. 16 hex digits.
func Fingerprint(v any) string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	h := sha256.New()
	fmt.Fprintf(h, "%T", v)
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") && !strings.Contains(f.Function, "errtrack.") {
			h.Write([]byte(f.Function))
			h.Write([]byte{'\n'})
		}
		if !more {
			break
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
