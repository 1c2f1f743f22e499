package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/errtrack"
	"github.com/muejam/edge/appserver/httpjson"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/reqid"
)

// Error is an error a client can act on: a stable code (its HTTP status is the code's in
// statuses), a message and optional details (for validation, a map from field name to
// problem).
type Error struct {
	Code    string
	Message string
	Details any
	// RetryAfter, when positive, is sent as Retry-After in whole seconds (at least one).
	RetryAfter time.Duration
}

// Error returns the code and the message.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errors every package uses.
var (
	ErrNotFound             = &Error{Code: "not_found", Message: "no such resource"}
	ErrUnauthenticated      = &Error{Code: "unauthenticated", Message: "this route needs a signed-in user"}
	ErrVersionConflict      = &Error{Code: "version_conflict", Message: "the resource changed since that version; reload it and try again"}
	ErrPreconditionFailed   = &Error{Code: "precondition_failed", Message: "If-Match does not match the current ETag"}
	ErrPreconditionRequired = &Error{Code: "precondition_required", Message: `send the version you edited, as "version" in the body or an If-Match header`}
	// ErrDatabaseUnavailable answers a write that found no primary (dbrouter.ErrPrimaryUnavailable);
	// Fail adds the router's RetryAfter.
	ErrDatabaseUnavailable = &Error{Code: "database_unavailable", Message: "the database cannot take writes right now; retry later"}
)

// statuses is the one table of error codes and the HTTP status each is answered with. A
// code missing here is a bug: Fail answers it as an internal error.
var statuses = map[string]int{
	// Requests the server cannot read, or has no route for.
	"invalid_json":           http.StatusBadRequest,
	"invalid_request":        http.StatusBadRequest,
	"body_too_large":         http.StatusRequestEntityTooLarge,
	"unsupported_media_type": http.StatusUnsupportedMediaType,
	"method_not_allowed":     http.StatusMethodNotAllowed,

	// Resources and who may change them.
	"unauthenticated": http.StatusUnauthorized,
	"not_found":       http.StatusNotFound,
	"forbidden":       http.StatusForbidden,
	"blocked":         http.StatusForbidden,

	// Optimistic concurrency.
	"version_conflict":      http.StatusConflict,
	"precondition_failed":   http.StatusPreconditionFailed,
	"precondition_required": http.StatusPreconditionRequired,

	// Conflicts with the state of other resources.
	"handle_taken":     http.StatusConflict,
	"shelf_name_taken": http.StatusConflict,
	"user_blocked":     http.StatusConflict,
	"whisper_deleted":  http.StatusConflict,
	"self_follow":      http.StatusUnprocessableEntity,
	"self_block":       http.StatusUnprocessableEntity,
	"no_chapters":      http.StatusUnprocessableEntity,

	// Dependencies that are down for a moment: answered with Retry-After.
	"unavailable":          http.StatusServiceUnavailable,
	"database_unavailable": http.StatusServiceUnavailable,
}

// StatusOf is the HTTP status Fail answers err with: its code's, when err is an *Error
// with a known code (or a write that found no primary: 503), else 500.
func StatusOf(err error) int {
	if ae := asError(err); ae != nil {
		if status, ok := statuses[ae.Code]; ok {
			return status
		}
	}
	return http.StatusInternalServerError
}

// asError returns the *Error a client is told about err: err's own, ErrDatabaseUnavailable
// with the router's RetryAfter for a write that found no primary, nil for anything else.
func asError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var pe *dbrouter.PrimaryUnavailableError
	if errors.As(err, &pe) {
		e := *ErrDatabaseUnavailable
		e.RetryAfter = pe.RetryAfter
		return &e
	}
	return nil
}

// Handler is an HTTP handler that returns its error instead of answering it: Handle turns
// it into an http.Handler that answers the error with Fail. A Handler that has written its
// answer returns nil.
type Handler func(w http.ResponseWriter, r *http.Request) error

// Handle returns h as an http.Handler whose errors Fail answers, logging to log.
func Handle(log *zap.Logger, h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			Fail(w, r, log, err)
		}
	})
}

// RequireUser answers 401 unauthenticated, privately, to requests without a signed-in user
// (identity.User), and passes the others to h.
func RequireUser(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := identity.User(r.Context()); !ok {
			Private(w)
			Reject(w, ErrUnauthenticated)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Fail answers a failed request: an *Error with its code's status (and Retry-After when it
// has one), a write that found no primary with 503 database_unavailable and Retry-After, a
// cancelled request with nothing, anything else with 500 "internal error" after logging it.
// No cache stores the answer: it is no-store, without stale windows, ETag or Cache-Tags,
// whatever the handler set before failing.
func Fail(w http.ResponseWriter, r *http.Request, log *zap.Logger, err error) {
	uncacheable(w)
	ae := asError(err)
	status, known := 0, false
	if ae != nil {
		status, known = statuses[ae.Code]
	}
	switch {
	case known:
		reply(w, status, ae)
	case r.Context().Err() != nil:
		// The client is gone; nobody reads the answer.
	default:
		if ae != nil {
			err = fmt.Errorf("api: error code %q has no status: %w", ae.Code, err)
		}
		log.Error("request failed", zap.String("method", r.Method), zap.String("route", r.Pattern),
			zap.String("request_id", reqid.ID(r.Context())), zap.Error(err))
		errtrack.Internal(r, err)
		httpjson.InternalError(w)
	}
}

// Reject answers e, a request refused before any Handler ran (no route for it, no signed-in
// user), with its code's status and body as Fail does, but leaves the response's other
// headers (Cache-Control, Allow) as the caller set them. A code missing from statuses is
// a bug, answered 500 "internal error".
func Reject(w http.ResponseWriter, e *Error) {
	status, known := statuses[e.Code]
	if !known {
		httpjson.InternalError(w)
		return
	}
	reply(w, status, e)
}

// reply sends e with status, and Retry-After when e has one.
func reply(w http.ResponseWriter, status int, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(e.RetryAfter, time.Second).Seconds()))))
	}
	httpjson.Error(w, status, e.Code, e.Message, e.Details)
}
