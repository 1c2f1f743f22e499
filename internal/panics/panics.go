// Package panics recovers the panics of the edge modules' request paths and background
// goroutines: each is logged with its stack, counted in muejam_edge_panics_total{where} and
// turned into an error (a request's 500) instead of ending the process or resetting the
// client's connection.
package panics

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/promreg"
)

// Total counts the recovered panics by where they happened (a fixed set of names given by
// the code: "edge_cache.serve", "edge_cache.l2_writer", ...).
var Total = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "muejam_edge_panics_total",
	Help: "Panics recovered on a request path or in a background goroutine of the edge modules, by where.",
}, []string{"where"})

// Register registers the counter on a Caddy config's metrics registry, with a series at zero
// for each of where, so that it is exported (and alerts on it evaluate) before any panic.
func Register(reg prometheus.Registerer, where ...string) error {
	for _, w := range where {
		Total.WithLabelValues(w)
	}
	return promreg.Register(reg, Total)
}

// Error is a recovered panic.
type Error struct {
	Where string
	Value any
	Stack []byte
}

func (e *Error) Error() string { return fmt.Sprintf("panic in %s: %v", e.Where, e.Value) }

// recovered logs and counts v, recovered in where, and returns it as an error.
func recovered(logger *zap.Logger, where string, v any) *Error {
	e := &Error{Where: where, Value: v, Stack: debug.Stack()}
	Total.WithLabelValues(where).Inc()
	if logger != nil {
		logger.Error("panic recovered", zap.String("where", where), zap.Any("panic", v),
			zap.ByteString("stack", e.Stack))
	}
	return e
}

// Recover, deferred with a pointer to the function's named error result, turns a panic of
// that function into an error (logged and counted); it does nothing when there is none:
//
//	func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
//		defer panics.Recover(h.logger, "edge_cache.serve", &err)
//
// A panic with http.ErrAbortHandler is no bug: it is how a handler further down the route
// (reverse_proxy, when the upstream fails in the middle of a body) aborts a response that
// is already on its way. Recover neither logs nor counts it and sets the error to
// http.ErrAbortHandler; a handler whose recovery covers the next handler must then panic
// with it again, so that net/http aborts the response instead of ending it as if complete.
func Recover(logger *zap.Logger, where string, err *error) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			if err != nil {
				*err = http.ErrAbortHandler
			}
			return
		}
		e := recovered(logger, where, v)
		if err != nil {
			*err = e
		}
	}
}

// Reabort, deferred before Recover by a handler whose recovery covers the next handler,
// panics again with http.ErrAbortHandler when Recover caught it, so that net/http aborts the
// response:
//
//	defer panics.Reabort(&err)
//	defer panics.Recover(h.logger, "circuit_breaker.serve", &err)
func Reabort(err *error) {
	if *err == http.ErrAbortHandler {
		panic(http.ErrAbortHandler)
	}
}

// Go runs loop in a new goroutine and runs it again, after a pause, each time it panics;
// the goroutine ends when loop returns normally. The pause doubles from 100ms up to 5s, so a
// loop that panics at once every time costs little. wg, if not nil, counts the goroutine
// (Add before it starts, Done when it ends), so loop itself must not.
func Go(wg *sync.WaitGroup, logger *zap.Logger, where string, loop func()) {
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg != nil {
			defer wg.Done()
		}
		pause := 100 * time.Millisecond
		for {
			var err error
			func() {
				defer Recover(logger, where, &err)
				loop()
			}()
			if err == nil {
				return
			}
			time.Sleep(pause)
			pause = min(2*pause, 5*time.Second)
		}
	}()
}
