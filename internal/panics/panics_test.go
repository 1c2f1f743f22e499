package panics

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestRecoverTurnsAPanicIntoAnError(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	before := testutil.ToFloat64(Total.WithLabelValues("test.recover"))
	err := func() (err error) {
		defer Recover(zap.New(core), "test.recover", &err)
		var m map[string]int
		m["x"] = 1 // a nil map write panics
		return nil
	}()
	var pe *Error
	if !errors.As(err, &pe) || pe.Where != "test.recover" || len(pe.Stack) == 0 {
		t.Fatalf("error %v, want a recovered panic with a stack", err)
	}
	if got := testutil.ToFloat64(Total.WithLabelValues("test.recover")) - before; got != 1 {
		t.Errorf("counted %v panics, want 1", got)
	}
	if logs.FilterMessage("panic recovered").Len() != 1 {
		t.Errorf("logged %v", logs.All())
	}
	ok := func() (err error) {
		defer Recover(nil, "test.recover", &err)
		return errors.New("plain")
	}()
	if ok == nil || ok.Error() != "plain" {
		t.Errorf("a function without a panic returned %v", ok)
	}
}

func TestGoRestartsALoopThatPanics(t *testing.T) {
	var runs atomic.Int32
	var wg sync.WaitGroup
	Go(&wg, nil, "test.go", func() {
		if runs.Add(1) < 3 {
			panic("boom")
		}
	})
	wg.Wait()
	if runs.Load() != 3 {
		t.Errorf("loop ran %d times, want 3 (two panics, then a normal return)", runs.Load())
	}
}

func TestRecoverLeavesAnAbortedResponseUncounted(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	before := testutil.ToFloat64(Total.WithLabelValues("test.abort"))
	err := func() (err error) {
		defer Recover(zap.New(core), "test.abort", &err)
		panic(http.ErrAbortHandler)
	}()
	if err != http.ErrAbortHandler {
		t.Fatalf("error %v, want http.ErrAbortHandler", err)
	}
	if got := testutil.ToFloat64(Total.WithLabelValues("test.abort")) - before; got != 0 || logs.Len() != 0 {
		t.Errorf("an aborted response was counted (%v) or logged (%v)", got, logs.All())
	}
}

func TestReabortPassesAnAbortOn(t *testing.T) {
	before := testutil.ToFloat64(Total.WithLabelValues("test.abort"))
	var got any
	func() {
		defer func() { got = recover() }()
		func() (err error) {
			defer Reabort(&err)
			defer Recover(nil, "test.abort", &err)
			panic(http.ErrAbortHandler)
		}()
	}()
	if got != http.ErrAbortHandler {
		t.Errorf("recovered %v above the handler, want http.ErrAbortHandler", got)
	}
	if testutil.ToFloat64(Total.WithLabelValues("test.abort")) != before {
		t.Error("an abort was counted as a panic")
	}
	err := func() (err error) {
		defer Reabort(&err)
		defer Recover(nil, "test.abort", &err)
		return errors.New("plain")
	}()
	if err == nil || err.Error() != "plain" {
		t.Errorf("Reabort changed a plain error: %v", err)
	}
}
