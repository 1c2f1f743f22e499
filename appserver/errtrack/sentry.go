package errtrack

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/internal/pii"
)

// forwarder is the Sentry client errors go to, once EnableSentry has made one.
var forwarder atomic.Pointer[sentry.Client]

// EnableSentry forwards every error event (panics, and requests answered 500) from now on
// to the Sentry-compatible service of dsn through the official SDK, scrubbed by s before
// it leaves: message, exception values, tags and breadcrumbs go through the scrubber, the
// user keeps only a scrubbed id, and no HTTP request (headers, cookies, query) is sent.
// transport is the SDK's (nil: its default, asynchronous). It returns the function that
// flushes what is queued, within timeout, for the end of the process.
func EnableSentry(dsn, release string, s *pii.Scrubber, transport sentry.Transport) (flush func(timeout time.Duration) bool, err error) {
	c, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:        dsn,
		Release:    release,
		Transport:  transport,
		BeforeSend: func(e *sentry.Event, _ *sentry.EventHint) *sentry.Event { return scrubEvent(e, s) },
	})
	if err != nil {
		return nil, fmt.Errorf("sentry: %w", err)
	}
	forwarder.Store(c)
	return c.Flush, nil
}

// scrubEvent removes personal data from e.
func scrubEvent(e *sentry.Event, s *pii.Scrubber) *sentry.Event {
	e.Message = s.String(e.Message)
	for i := range e.Exception {
		e.Exception[i].Value = s.String(e.Exception[i].Value)
	}
	for k, v := range e.Tags {
		e.Tags[k] = s.Field(k, v)
	}
	for _, b := range e.Breadcrumbs {
		b.Message = s.String(b.Message)
		b.Data = nil
	}
	e.User = sentry.User{ID: s.Field("user", e.User.ID)}
	e.Request = nil
	e.ServerName = ""
	return e
}

// forward sends an error event of kind (KindPanic, KindInternal) to Sentry, when enabled:
// grouped by fingerprint (when not ""), tagged with the request's route and id, its user the
// request's, with the stack of the calling goroutine.
func forward(kind, message, fingerprint string, info *reqid.Info) {
	c := forwarder.Load()
	if c == nil {
		return
	}
	e := sentry.NewEvent()
	e.Level = sentry.LevelError
	e.Message = message
	e.Tags = map[string]string{"kind": kind}
	if fingerprint != "" {
		e.Fingerprint = []string{fingerprint}
	}
	e.Exception = []sentry.Exception{{Type: kind, Value: message, Stacktrace: sentry.NewStacktrace()}}
	if info != nil {
		e.Tags["route"], e.Tags["request_id"] = info.Route, info.ID
		e.User.ID = info.User
	}
	c.CaptureEvent(e, nil, nil)
}

// forwardInternal sends a request answered 500 with err to Sentry, when enabled.
func forwardInternal(r *http.Request, err error) {
	if forwarder.Load() == nil {
		return
	}
	forward(KindInternal, err.Error(), "", reqid.FromContext(r.Context()))
}
