package ratelimit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
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

// benchHandler measures ServeHTTP of a handler with user zones over 1000 users, next being
// a no-op.
func benchHandler(b *testing.B, h *Handler) { benchUsers(b, h, 1000, 1) }

// benchUsers measures ServeHTTP of a handler with user zones over the given number of users
// from parallelism × GOMAXPROCS goroutines, next being a no-op.
func benchUsers(b *testing.B, h *Handler, nusers, parallelism int) {
	users := make([]*http.Request, nusers)
	for i := range users {
		repl := caddy.NewReplacer()
		repl.Set("http.auth.user.id", "user-"+strconv.Itoa(i))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		users[i] = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	}
	var n atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
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
	h := provision(b, &Handler{Valkey: standalone(testenv.ValkeyAddr), ValkeyTimeout: caddy.Duration(time.Second), MaxKeys: 2001,
		Zones: []*Zone{userZone(uniqueZone("bench"), 1<<30, time.Second)}})
	testenv.Eventually(b, 5*time.Second, "a connection to valkey", func() bool { return h.remote.Client() != nil })
	benchHandler(b, h)
	b.StopTimer()
	if f := testutil.ToFloat64(fallbacks.WithLabelValues(h.Zones[0].Name)); f > 0 {
		b.Fatalf("%v fallbacks during the benchmark", f)
	}
}

// benchZones measures ServeHTTP of a handler whose zones are those of a signed-in request in
// production: per user, a write limit of the same user, and one over all of a client's
// traffic (a constant key here): three keys in two slots; with one zone, per user only. The
// requests come from 32 goroutines (an edge node's concurrent requests), spread over 1000
// users or all from one (a hot key: a flooding client, the bench's scenario 6b).
func benchZones(b *testing.B, vk *valkeyconn.Config, zones, users int, serverAddr string) {
	zs := []*Zone{userZone(uniqueZone("bench-user"), 1<<30, time.Second)}
	if zones > 1 {
		zs = append(zs, userZone(uniqueZone("bench-writes"), 1<<30, time.Second),
			&Zone{Name: uniqueZone("bench-global"), Key: "all", Events: 1 << 30, Window: caddy.Duration(time.Second)})
	}
	// A generous timeout: on a loaded machine a call past 25 ms would fall back.
	h := provision(b, &Handler{Valkey: vk, ValkeyTimeout: caddy.Duration(time.Second), MaxKeys: 2002 + zones, Zones: zs})
	testenv.Eventually(b, 5*time.Second, "a connection to valkey", func() bool { return h.remote.Client() != nil })
	calls := h.remote.calls.Load()
	cpu0, server0 := cpuTime(), serverCPU(serverAddr)
	benchUsers(b, h, users, 32/runtime.GOMAXPROCS(0))
	b.StopTimer()
	reportCPU(b, cpu0, server0, serverAddr)
	b.ReportMetric(float64(h.remote.calls.Load()-calls)/float64(b.N), "calls/op")
	for _, z := range zs {
		if f := testutil.ToFloat64(fallbacks.WithLabelValues(z.Name)); f > 0 {
			b.Fatalf("%v fallbacks during the benchmark", f)
		}
	}
}

// BenchmarkHandlerValkeyZones is one request through one zone and through three zones (two
// slots), on the standalone server and on the cluster, for spread and hot keys: one round
// trip for all the zones (on the cluster, one pipelined round trip to the nodes of the two
// slots), concurrent decisions of one key sharing a script call. calls/op is the script
// calls of single-slot requests per request.
func BenchmarkHandlerValkeyZones(b *testing.B) {
	v := testenv.StartValkey(b) // private: its CPU is the limiter's alone
	for _, zones := range []int{1, 3} {
		for _, users := range []int{1000, 1} {
			b.Run(fmt.Sprintf("standalone-zones=%d-users=%d", zones, users), func(b *testing.B) {
				benchZones(b, standalone(v.Addr), zones, users, v.Addr)
			})
			b.Run(fmt.Sprintf("cluster-zones=%d-users=%d", zones, users), func(b *testing.B) {
				benchZones(b, devCluster(b), zones, users, "")
			})
		}
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time a Valkey server has used (INFO cpu), 0 if unknown.
func serverCPU(addr string) time.Duration {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("INFO cpu\r\n")); err != nil {
		return 0
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // $<len>
		return 0
	}
	var total float64
	for {
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) == "" && total > 0 {
			break
		}
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
		if strings.HasPrefix(line, "used_cpu_user_children") {
			break
		}
	}
	return time.Duration(total * float64(time.Second))
}

// reportCPU adds this process's CPU (and the Valkey server's on addr, when given) per
// operation since the given readings to the benchmark's results.
func reportCPU(b *testing.B, cpu0, server0 time.Duration, addr string) {
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1000, "cpu-µs/op")
	if addr != "" {
		b.ReportMetric(float64((serverCPU(addr)-server0).Nanoseconds())/float64(b.N)/1000, "valkey-cpu-µs/op")
	}
}
