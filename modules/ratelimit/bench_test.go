package ratelimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/internal/testenv"
)

// BenchmarkWindowsAllow is the local algorithm alone: one admitted event over 10,000 keys
// (a 10 ms window keeps each key's log short, as real traffic spread over a minute would).
func BenchmarkWindowsAllow(b *testing.B) {
	w := NewWindows(10*time.Millisecond, defaultMaxKeys)
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	var n atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			w.Allow(keys[i%uint64(len(keys))], 1<<30, time.Now())
		}
	})
}

// benchHandler measures ServeHTTP of a handler with one user zone, next being a no-op.
func benchHandler(b *testing.B, h *Handler) {
	users := make([]*http.Request, 1000)
	for i := range users {
		repl := caddy.NewReplacer()
		repl.Set("http.auth.user.id", "user-"+strconv.Itoa(i))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		users[i] = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	}
	var n atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := httptest.NewRecorder()
		for pb.Next() {
			i := n.Add(1)
			clear(w.Header())
			if err := h.ServeHTTP(w, users[i%uint64(len(users))], okHandler); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHandlerLocal is one request through a local-mode zone, headers included.
func BenchmarkHandlerLocal(b *testing.B) {
	h := provision(b, &Handler{MaxKeys: 2000, Zones: []*Zone{userZone("bench-local", 1<<30, 10*time.Millisecond)}})
	benchHandler(b, h)
}

// BenchmarkHandlerValkey is one request through a Valkey-mode zone: one EVALSHA.
func BenchmarkHandlerValkey(b *testing.B) {
	h := provision(b, &Handler{Valkey: testenv.ValkeyAddr, MaxKeys: 2001,
		Zones: []*Zone{userZone(uniqueZone("bench"), 1<<30, time.Second)}})
	deadline := time.Now().Add(5 * time.Second)
	for h.remote.Client() == nil {
		if time.Now().After(deadline) {
			b.Fatal("no connection to valkey")
		}
		time.Sleep(10 * time.Millisecond) // waiting for the connection, not an assertion
	}
	benchHandler(b, h)
	b.StopTimer()
	if f := testutil.ToFloat64(fallbacks.WithLabelValues(h.Zones[0].Name)); f > 0 {
		b.Fatalf("%v fallbacks during the benchmark", f)
	}
}
