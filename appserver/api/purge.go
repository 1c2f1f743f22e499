package api

import (
	"context"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// InvalidateOnPurge returns middleware that passes the tags of a response's Cache-Purge to
// invalidate before the response's status line is written, so that the app's own cache
// (on every instance) has dropped what the change made stale before the client, or the
// edge acting on the same header, can ask again. A failed invalidation is logged; the
// change it follows has committed and is answered as such.
func InvalidateOnPurge(invalidate func(ctx context.Context, tags ...string) error, log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pw := &purgeWriter{ResponseWriter: w, r: r, invalidate: invalidate, log: log}
			next.ServeHTTP(pw, r)
			pw.purge() // a handler that wrote nothing
		})
	}
}

// purgeWriter runs the invalidation of a response's Cache-Purge once, before its header.
type purgeWriter struct {
	http.ResponseWriter
	r          *http.Request
	invalidate func(ctx context.Context, tags ...string) error
	log        *zap.Logger
	done       bool
}

func (pw *purgeWriter) purge() {
	if pw.done {
		return
	}
	pw.done = true
	tags := strings.Fields(pw.Header().Get(HeaderCachePurge))
	if len(tags) == 0 {
		return
	}
	// The change has committed: a client that hangs up does not cancel its invalidation.
	if err := pw.invalidate(context.WithoutCancel(pw.r.Context()), tags...); err != nil {
		pw.log.Warn("app cache invalidation failed", zap.Strings("tags", tags), zap.Error(err))
	}
}

func (pw *purgeWriter) WriteHeader(code int) {
	pw.purge()
	pw.ResponseWriter.WriteHeader(code)
}

func (pw *purgeWriter) Write(b []byte) (int, error) {
	pw.purge()
	return pw.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the writer underneath.
func (pw *purgeWriter) Unwrap() http.ResponseWriter { return pw.ResponseWriter }
