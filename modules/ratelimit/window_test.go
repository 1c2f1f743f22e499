package ratelimit

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// TestWindowsExact: the (N+1)-th event in a window is refused, and admitted again exactly
// when the oldest event leaves the window.
func TestWindowsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 5
		w := NewWindows(time.Minute, 100)
		start := time.Now()
		for i := range n {
			d := w.Allow("alice", n, time.Now())
			if !d.Allowed || d.Remaining != n-1-i {
				t.Fatalf("event %d: %+v, want allowed with %d remaining", i+1, d, n-1-i)
			}
			time.Sleep(time.Second)
		}
		d := w.Allow("alice", n, time.Now())
		if d.Allowed {
			t.Fatal("event 6 in the window was admitted")
		}
		if want := time.Minute - n*time.Second; d.Reset != want {
			t.Errorf("reset = %v, want %v", d.Reset, want)
		}
		if other := w.Allow("bob", n, time.Now()); !other.Allowed {
			t.Error("another key was refused")
		}
		time.Sleep(start.Add(time.Minute).Sub(time.Now()) - time.Nanosecond)
		if w.Allow("alice", n, time.Now()).Allowed {
			t.Fatal("admitted 1ns before the oldest event left the window")
		}
		time.Sleep(time.Nanosecond)
		if !w.Allow("alice", n, time.Now()).Allowed {
			t.Fatal("refused once the oldest event left the window")
		}
		if w.Allow("alice", n, time.Now()).Allowed {
			t.Fatal("admitted two events for one that left")
		}
	})
}

// TestWindowsBurstAcrossBoundary: bursts on both sides of any boundary, and a steady stream
// from many clients of one key, never get more than N through in any span of one window.
func TestWindowsBurstAcrossBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10
		win := time.Second
		w := NewWindows(win, 100)
		var admitted []time.Time
		// 1 ms steps for 5 windows, 3 attempts per step: bursts at every edge.
		for range 5000 {
			for range 3 {
				if w.Allow("k", n, time.Now()).Allowed {
					admitted = append(admitted, time.Now())
				}
			}
			time.Sleep(time.Millisecond)
		}
		if len(admitted) < 4*n {
			t.Fatalf("only %d admitted over 5 windows", len(admitted))
		}
		for i := range admitted {
			j := i
			for j < len(admitted) && admitted[j].Sub(admitted[i]) < win {
				j++
			}
			if j-i > n {
				t.Fatalf("%d admitted in the span of one window from %v", j-i, admitted[i])
			}
		}
	})
}

func TestWindowsRecordKeepsLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindows(time.Minute, 100)
		for range 10 {
			w.Record("k", 3, time.Now())
		}
		if d := w.Allow("k", 3, time.Now()); d.Allowed {
			t.Fatalf("after 10 recorded events of a limit of 3: %+v", d)
		}
		time.Sleep(time.Minute)
		if !w.Allow("k", 3, time.Now()).Allowed {
			t.Fatal("refused after the window")
		}
	})
}

// TestWindowsIdleKeysExpire: Sweep drops keys whose events all left the window.
func TestWindowsIdleKeysExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindows(time.Second, 1000)
		for i := range 100 {
			w.Allow(strconv.Itoa(i), 1, time.Now())
		}
		time.Sleep(500 * time.Millisecond)
		w.Allow("late", 1, time.Now())
		time.Sleep(600 * time.Millisecond)
		w.Sweep(time.Now())
		if got := w.Len(); got != 1 {
			t.Fatalf("%d keys after the sweep, want 1 (the late one)", got)
		}
	})
}

// TestWindowsCapEvictsLeastRecent: at max_keys a new key evicts an old one; keys never
// exceed the cap and the newest key is admitted.
func TestWindowsCapEvictsLeastRecent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindows(time.Hour, numShards*4)
		for i := range numShards * 40 {
			if got := w.Len(); got > numShards*4+numShards {
				t.Fatalf("%d keys held, cap is %d (+1 per empty shard)", got, numShards*4)
			}
			if !w.Allow(strconv.Itoa(i), 1, time.Now()).Allowed {
				t.Fatalf("new key %d refused", i)
			}
			time.Sleep(time.Millisecond)
		}
		if w.Allow(strconv.Itoa(numShards*40-1), 1, time.Now()).Allowed {
			t.Error("the most recent key was evicted")
		}
	})
}

// TestWindowsMillionKeys: a million distinct keys (one event each) stay within the cap's
// memory; the test reports the bytes of state per key (besides the key's own text).
func TestWindowsMillionKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a million keys")
	}
	keys := make([]string, 1_000_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("203.0.%d.%d", i>>8, i&0xff)
	}
	measure := func(maxKeys int) (held int, perKey float64) {
		var before, after runtime.MemStats
		debug.FreeOSMemory() // a full collection, twice over
		runtime.GC()
		runtime.ReadMemStats(&before)
		w := NewWindows(time.Minute, maxKeys)
		now := time.Now()
		for i, k := range keys {
			w.Allow(k, 100, now.Add(time.Duration(i)))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = w.Len()
		runtime.KeepAlive(w)
		runtime.KeepAlive(keys) // the key text is shared with the map: count only the state
		return held, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(held)
	}
	held, perKey := measure(defaultMaxKeys)
	t.Logf("1,000,000 keys at the default cap: %d held, %.0f bytes/key (%.0f MiB)", held, perKey, perKey*float64(held)/(1<<20))
	if held != len(keys) || perKey > 200 || perKey <= 0 {
		t.Errorf("%d keys held at %.0f bytes/key; want all at most 200 bytes/key", held, perKey)
	}
	held, perKey = measure(100_000)
	t.Logf("1,000,000 keys with max_keys 100000: %d held, %.0f bytes/key", held, perKey)
	if held > 100_000+numShards || perKey <= 0 || perKey > 250 {
		t.Errorf("%d keys held at %.0f bytes/key; want at most the cap of 100000", held, perKey)
	}
}
