package circuitbreaker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
)

// openEntry returns a pooled-breaker entry (not in the pool) whose breaker is open, with an
// open duration of a minute.
func openEntry(t *testing.T, name string) *entry {
	t.Helper()
	b, err := breaker.New(name, breaker.Settings{ConsecutiveFailures: 1, OpenDuration: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	done(breaker.Failure, 0)
	if b.State() != breaker.Open {
		t.Fatalf("breaker %s, want open", b.State())
	}
	e := &entry{name: name}
	e.b.Store(b)
	return e
}

// fakeUpstream is a health endpoint a test turns up and down; check counts the probes.
type fakeUpstream struct {
	up     atomic.Bool
	probes atomic.Int64
}

func (u *fakeUpstream) check(ctx context.Context, _ string) error {
	u.probes.Add(1)
	if !u.up.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func startTestProber(entries []*entry, check func(context.Context, string) error) *prober {
	targets := func(*entry) []string { return []string{"http://upstream/v1/health"} }
	return startProber(context.Background(), 250*time.Millisecond, time.Second, zap.NewNop(),
		func() map[string][]*entry { return dueEntries(entries, targets) }, check)
}

// TestProberClosesWithinOneInterval: an open breaker stays open while its upstream is down
// and closes within one probe interval of its return, long before its open duration ends;
// nothing is probed while it is closed.
func TestProberClosesWithinOneInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := openEntry(t, "unit-probe")
		up := &fakeUpstream{}
		p := startTestProber([]*entry{e}, up.check)
		defer p.stop()

		time.Sleep(2 * time.Second)
		synctest.Wait()
		if s := e.b.Load().State(); s != breaker.Open {
			t.Fatalf("upstream down: breaker %s, want open", s)
		}
		if n := up.probes.Load(); n != 8 {
			t.Errorf("%d probes in 2s, want 8 (every 250ms)", n)
		}
		up.up.Store(true)
		back := time.Now()
		for e.b.Load().State() != breaker.Closed {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
		}
		if took := time.Since(back); took > 250*time.Millisecond {
			t.Errorf("closed %v after the upstream's return, want within one interval (250ms)", took)
		}
		before := up.probes.Load()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := up.probes.Load() - before; n != 0 {
			t.Errorf("%d probes while the breaker was closed, want 0", n)
		}
	})
}

// TestProberLeavesForcedOpen: an operator's force-open is not undone by a healthy probe,
// and such a breaker is not probed at all.
func TestProberLeavesForcedOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := openEntry(t, "unit-forced")
		e.b.Load().ForceOpen()
		up := &fakeUpstream{}
		up.up.Store(true)
		p := startTestProber([]*entry{e}, up.check)
		time.Sleep(time.Second)
		synctest.Wait()
		p.stop()
		if s := e.b.Load().Snapshot(); s.State != "open" || !s.Forced {
			t.Errorf("forced breaker after healthy probes: %+v, want forced open", s)
		}
		if n := up.probes.Load(); n != 0 {
			t.Errorf("%d probes of a forced breaker, want 0", n)
		}
	})
}

// TestProberOneProbeInFlight: a probe that hangs until its timeout holds back the next
// probes of its target; the timeout ends it.
func TestProberOneProbeInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := openEntry(t, "unit-slow")
		var started atomic.Int64
		p := startTestProber([]*entry{e}, func(ctx context.Context, _ string) error {
			started.Add(1)
			<-ctx.Done() // hangs until the probe timeout (1s)
			return ctx.Err()
		})
		time.Sleep(2100 * time.Millisecond)
		synctest.Wait()
		p.stop()
		// Ticks at 250ms, 500ms, ...: the first probe runs to 1.25s, the next starts at 1.5s.
		if n := started.Load(); n != 2 {
			t.Errorf("%d probes started in 2.1s with a 1s timeout, want 2", n)
		}
	})
}

// TestProberRecoversPanics: a panicking probe is recovered, counted, and probing goes on.
func TestProberRecoversPanics(t *testing.T) {
	before := testutil.ToFloat64(panics.Total.WithLabelValues("circuit_breaker.probe"))
	synctest.Test(t, func(t *testing.T) {
		e := openEntry(t, "unit-panic")
		var n atomic.Int64
		p := startTestProber([]*entry{e}, func(context.Context, string) error {
			if n.Add(1) <= 2 {
				panic("probe bug")
			}
			return nil
		})
		defer p.stop()
		time.Sleep(time.Second)
		synctest.Wait()
		if s := e.b.Load().State(); s != breaker.Closed {
			t.Errorf("breaker %s after two panicking probes and a healthy one, want closed", s)
		}
	})
	if got := testutil.ToFloat64(panics.Total.WithLabelValues("circuit_breaker.probe")) - before; got != 2 {
		t.Errorf("panics counted: %v, want 2", got)
	}
}

// TestProberStopsOnContextEnd: the prober ends with its context (a config unload) and stop
// then returns at once; synctest.Test fails if any goroutine of it is left.
func TestProberStopsOnContextEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		e := openEntry(t, "unit-stop")
		p := startProber(ctx, 250*time.Millisecond, time.Minute, zap.NewNop(),
			func() map[string][]*entry {
				return dueEntries([]*entry{e}, func(*entry) []string { return []string{"t"} })
			},
			func(ctx context.Context, _ string) error {
				<-ctx.Done() // in flight when the config goes
				return ctx.Err()
			})
		time.Sleep(time.Second)
		cancel()
		p.stop()
		p.stop() // twice is fine
		var nilProber *prober
		nilProber.stop()
	})
}

// TestProbeOnce: a probe is healthy on a status of the probe's list only, and reads and
// closes the body.
func TestProbeOnce(t *testing.T) {
	var status atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(`{"status":"whatever"}`))
	}))
	defer srv.Close()
	pr := &Probe{Path: "/v1/health", Upstreams: []string{srv.URL}}
	pr.provision()
	u := newURLProbes(pr)
	defer u.close()
	for _, tc := range []struct {
		status  int
		healthy bool
	}{{200, true}, {204, true}, {500, false}, {503, false}, {302, false}} {
		status.Store(int64(tc.status))
		err := u.check(context.Background(), u.targets(nil)[0])
		if (err == nil) != tc.healthy {
			t.Errorf("status %d: check error %v, want healthy %v", tc.status, err, tc.healthy)
		}
	}
	srv.Close()
	if err := u.check(context.Background(), u.targets(nil)[0]); err == nil {
		t.Error("a closed upstream probed healthy")
	}
}
