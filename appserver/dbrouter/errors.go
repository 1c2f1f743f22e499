package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrPrimaryUnavailable is matched (errors.Is) by every error of a write that could not
// reach a primary. The HTTP layer (api.Fail) answers it with 503 and Retry-After.
var ErrPrimaryUnavailable = errors.New("dbrouter: primary unavailable")

// PrimaryUnavailableError is the error of a write that found no reachable primary, or lost
// the connection to it. Nothing was committed unless the connection broke during COMMIT.
type PrimaryUnavailableError struct {
	// RetryAfter is when a retry may succeed: one check interval, at least a second.
	RetryAfter time.Duration
	// Err is the connection error, if there was one.
	Err error
}

func (e *PrimaryUnavailableError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: %v", ErrPrimaryUnavailable, e.Err)
	}
	return ErrPrimaryUnavailable.Error()
}

// Is makes errors.Is(err, ErrPrimaryUnavailable) true.
func (e *PrimaryUnavailableError) Is(target error) bool { return target == ErrPrimaryUnavailable }

// Unwrap returns the connection error.
func (e *PrimaryUnavailableError) Unwrap() error { return e.Err }

// isConnError reports whether err means the connection or the server failed (so a read may
// be retried elsewhere and the node is suspect), rather than the statement.
func isConnError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// 08: connection exception; 57P01-03: admin shutdown, crash shutdown, cannot connect now.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "conn closed")
}

// isAuthFailure reports whether the server refused the password (28P01).
func isAuthFailure(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "28P01"
}

// isRetryableTx reports a serialization failure (40001) or a deadlock (40P01).
func isRetryableTx(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isReadOnly reports a write refused by a node in recovery (25006): the primary changed.
func isReadOnly(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "25006"
}
