package breaker

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder collects state changes.
type recorder struct {
	mu      sync.Mutex
	changes []string
}

func (r *recorder) onChange(from, to State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, from.String()+">"+to.String())
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

func newBreaker(t *testing.T, s Settings) (*Breaker, *recorder) {
	t.Helper()
	rec := &recorder{}
	b, err := New("test", s, rec.onChange)
	if err != nil {
		t.Fatal(err)
	}
	return b, rec
}

// call makes one call through b that fails or not and lasts latency; it reports whether b
// let it through.
func call(b *Breaker, failed bool, latency time.Duration) bool {
	done, err := b.Allow()
	if err != nil {
		if !errors.Is(err, ErrOpen) {
			panic(err)
		}
		return false
	}
	r := Success
	if failed {
		r = Failure
	}
	done(r, latency)
	return true
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       Settings
		wantErr bool
	}{
		{"consecutive", Settings{ConsecutiveFailures: 3}, false},
		{"ratio", Settings{FailureRatio: 0.5, MinRequests: 4, Window: time.Second}, false},
		{"slow", Settings{SlowCallRatio: 0.5, SlowCallThreshold: time.Second}, false},
		{"all", Settings{ConsecutiveFailures: 3, FailureRatio: 0.5, SlowCallRatio: 1, SlowCallThreshold: time.Second,
			OpenDuration: time.Second, MaxOpenDuration: time.Minute, HalfOpenProbes: 3}, false},
		{"no condition", Settings{}, true},
		{"negative consecutive", Settings{ConsecutiveFailures: -1}, true},
		{"ratio above 1", Settings{FailureRatio: 1.5}, true},
		{"slow ratio without threshold", Settings{SlowCallRatio: 0.5}, true},
		{"negative slow ratio", Settings{SlowCallRatio: -0.1, SlowCallThreshold: time.Second}, true},
		{"max open below open", Settings{ConsecutiveFailures: 1, OpenDuration: time.Minute, MaxOpenDuration: time.Second}, true},
		{"max open below default open", Settings{ConsecutiveFailures: 1, MaxOpenDuration: time.Second}, true},
		{"tiny window", Settings{FailureRatio: 0.5, Window: time.Millisecond}, true},
		{"negative probes", Settings{ConsecutiveFailures: 1, HalfOpenProbes: -1}, true},
		{"negative open", Settings{ConsecutiveFailures: 1, OpenDuration: -time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
			if _, nerr := New("x", tc.s, nil); (nerr != nil) != tc.wantErr {
				t.Errorf("New() = %v, wantErr %v", nerr, tc.wantErr)
			}
		})
	}
}

func TestConsecutiveFailuresTripAndProbesClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, rec := newBreaker(t, Settings{ConsecutiveFailures: 3, OpenDuration: 5 * time.Second, HalfOpenProbes: 2})
		// Two failures, a success, two failures: never three in a row.
		for _, failed := range []bool{true, true, false, true, true} {
			call(b, failed, time.Millisecond)
		}
		if b.State() != Closed {
			t.Fatalf("state %s after interrupted failures, want closed", b.State())
		}
		call(b, true, time.Millisecond)
		if b.State() != Open {
			t.Fatalf("state %s after 3 consecutive failures, want open", b.State())
		}
		if call(b, false, 0) {
			t.Error("open breaker let a call through")
		}
		if got := b.RetryAfter(); got != 5*time.Second {
			t.Errorf("RetryAfter = %s, want 5s", got)
		}
		time.Sleep(4 * time.Second)
		if got := b.RetryAfter(); got != time.Second {
			t.Errorf("RetryAfter after 4s = %s, want 1s", got)
		}
		time.Sleep(time.Second + time.Millisecond)
		if b.State() != HalfOpen {
			t.Fatalf("state %s after the open duration, want half_open", b.State())
		}
		// Exactly two probes pass while they are in flight.
		d1, err1 := b.Allow()
		d2, err2 := b.Allow()
		_, err3 := b.Allow()
		if err1 != nil || err2 != nil || !errors.Is(err3, ErrOpen) {
			t.Fatalf("half-open admits: %v %v %v, want nil nil ErrOpen", err1, err2, err3)
		}
		d1(Success, time.Millisecond)
		if b.State() != HalfOpen {
			t.Fatalf("state %s after one of two probes succeeded, want half_open", b.State())
		}
		d2(Success, time.Millisecond)
		if b.State() != Closed {
			t.Fatalf("state %s after both probes succeeded, want closed", b.State())
		}
		want := []string{"closed>open", "open>half_open", "half_open>closed"}
		if got := rec.get(); !slices.Equal(got, want) {
			t.Errorf("changes %v, want %v", got, want)
		}
	})
}

func TestFailureRatioNeedsMinRequestsAndForgetsOldCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(t, Settings{FailureRatio: 0.5, MinRequests: 6, Window: 10 * time.Second})
		// 3 failures of 3 calls: ratio 1, but under min requests.
		for range 3 {
			call(b, true, 0)
		}
		if b.State() != Closed {
			t.Fatal("tripped under min requests")
		}
		// The window rolls past those failures.
		time.Sleep(11 * time.Second)
		for range 4 {
			call(b, false, 0)
		}
		call(b, true, 0)
		call(b, true, 0) // 2 of 6: 33%
		if b.State() != Closed {
			t.Fatalf("tripped at 2/6 failures with old failures expired; snapshot %+v", b.Snapshot())
		}
		call(b, true, 0) // 3 of 7
		if b.State() != Closed {
			t.Fatal("tripped at 3/7")
		}
		call(b, true, 0) // 4 of 8: 50%
		if b.State() != Open {
			t.Fatalf("state %s at 4/8 failures, want open", b.State())
		}
	})
}

func TestSlowCallRatioTrips(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(t, Settings{SlowCallRatio: 0.5, SlowCallThreshold: 100 * time.Millisecond, MinRequests: 4})
		call(b, false, 10*time.Millisecond)
		call(b, false, 10*time.Millisecond)
		call(b, false, 100*time.Millisecond) // slow: at the threshold
		if b.State() != Closed {
			t.Fatal("tripped under min requests")
		}
		call(b, false, 200*time.Millisecond) // 2 slow of 4
		if b.State() != Open {
			t.Fatalf("state %s at 2/4 slow calls, want open", b.State())
		}
	})
}

func TestExecuteMeasuresLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(t, Settings{SlowCallRatio: 0.5, SlowCallThreshold: time.Second, MinRequests: 1})
		if err := b.Execute(func() error { time.Sleep(500 * time.Millisecond); return nil }); err != nil {
			t.Fatal(err)
		}
		if b.State() != Closed {
			t.Fatal("a fast call tripped")
		}
		boom := errors.New("boom")
		if err := b.Execute(func() error { time.Sleep(2 * time.Second); return boom }); !errors.Is(err, boom) {
			t.Fatalf("Execute returned %v, want the call's error", err)
		}
		if b.State() != Open {
			t.Fatalf("state %s after 1 slow call of 2 at ratio 0.5, want open", b.State())
		}
		ran := false
		if err := b.Execute(func() error { ran = true; return nil }); !errors.Is(err, ErrOpen) || ran {
			t.Errorf("open breaker: Execute = %v, ran = %v", err, ran)
		}
	})
}

func TestOpenDurationGrowsOnRepeatedTripsAndIsCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenDuration: time.Second, MaxOpenDuration: 3 * time.Second})
		call(b, true, 0)
		for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
			if got := b.RetryAfter(); got != want {
				t.Fatalf("trip %d: open for %s, want %s", i+1, got, want)
			}
			time.Sleep(want - time.Millisecond)
			if call(b, false, 0) {
				t.Fatalf("trip %d: call let through before the open period ended", i+1)
			}
			time.Sleep(2 * time.Millisecond)
			if !call(b, true, 0) { // the probe fails: open again, longer
				t.Fatalf("trip %d: probe refused after the open period", i+1)
			}
		}
		// A successful probe closes it and the next trip is short again.
		time.Sleep(3*time.Second + time.Millisecond)
		call(b, false, 0)
		if b.State() != Closed {
			t.Fatalf("state %s after a good probe", b.State())
		}
		call(b, true, 0)
		if got := b.RetryAfter(); got != time.Second {
			t.Errorf("after closing, open for %s, want 1s", got)
		}
	})
}

func TestHalfOpenProbeFailureReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, rec := newBreaker(t, Settings{ConsecutiveFailures: 2, OpenDuration: time.Second, HalfOpenProbes: 3})
		call(b, true, 0)
		call(b, true, 0)
		time.Sleep(time.Second + time.Millisecond)
		call(b, false, 0)
		call(b, true, 0)
		if b.State() != Open {
			t.Fatalf("state %s after a failed probe, want open", b.State())
		}
		want := []string{"closed>open", "open>half_open", "half_open>open"}
		if got := rec.get(); !slices.Equal(got, want) {
			t.Errorf("changes %v, want %v", got, want)
		}
	})
}

func TestOperatorOverrides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, rec := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenDuration: time.Second})
		b.ForceOpen()
		if call(b, false, 0) || b.State() != Open || !b.Snapshot().Forced {
			t.Fatal("forced open breaker let a call through")
		}
		time.Sleep(time.Hour)
		if call(b, false, 0) {
			t.Fatal("forced open ended by itself")
		}
		b.Close()
		if !call(b, false, 0) || b.State() != Closed {
			t.Fatal("closed breaker refused a call")
		}
		call(b, true, 0)
		if b.State() != Open {
			t.Fatal("did not trip after Close")
		}
		b.Reset()
		if s := b.Snapshot(); s.State != "closed" || s.Trips != 0 || s.Calls != 0 {
			t.Errorf("after Reset: %+v", s)
		}
		want := []string{"closed>open", "open>closed", "closed>open", "open>closed"}
		if got := rec.get(); !slices.Equal(got, want) {
			t.Errorf("changes %v, want %v", got, want)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	b, _ := newBreaker(t, Settings{ConsecutiveFailures: 5, FailureRatio: 0.9, SlowCallRatio: 0.9,
		SlowCallThreshold: time.Second, OpenDuration: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				call(b, (i+g)%3 == 0, 0)
				_ = b.Snapshot()
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			b.ForceOpen()
			b.Close()
		}
	})
	wg.Wait()
}

func BenchmarkAllowOpen(b *testing.B) {
	br, err := New("bench", Settings{ConsecutiveFailures: 1, OpenDuration: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	call(br, true, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err == nil {
			b.Fatal("open breaker allowed a call")
		}
	}
}

func BenchmarkAllowClosed(b *testing.B) {
	br, err := New("bench", Settings{ConsecutiveFailures: 5, FailureRatio: 0.5}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		done(Success, time.Millisecond)
	}
}

func TestIgnoredCallsFreeProbesWithoutClosing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(t, Settings{ConsecutiveFailures: 1, OpenDuration: time.Second})
		call(b, true, 0)
		time.Sleep(time.Second + time.Millisecond)
		done, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		done(Ignored, time.Millisecond)
		if b.State() != HalfOpen {
			t.Fatalf("state %s after an ignored probe, want half_open", b.State())
		}
		if !call(b, false, 0) || b.State() != Closed {
			t.Fatalf("the probe slot was not freed, or a good probe did not close: %s", b.State())
		}
		// Ignored calls do not count in the window either.
		done, _ = b.Allow()
		done(Ignored, time.Hour)
		if s := b.Snapshot(); s.Calls != 0 {
			t.Errorf("ignored call counted: %+v", s)
		}
	})
}

func TestRecordWithoutAllow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newBreaker(t, Settings{ConsecutiveFailures: 2, OpenDuration: time.Second})
		b.Record(Failure, 0)
		b.Record(Failure, 0)
		if b.State() != Open {
			t.Fatalf("state %s after two recorded failures", b.State())
		}
		b.Record(Success, 0) // dropped: open
		time.Sleep(time.Second + time.Millisecond)
		b.Record(Success, 0)
		if b.State() != Closed {
			t.Fatalf("state %s after a recorded success in half-open", b.State())
		}
	})
}
