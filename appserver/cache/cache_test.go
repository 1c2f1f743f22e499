package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/internal/valkeytags"
)

// feed is a value as the app caches them.
type feed struct {
	Title string   `json:"title"`
	IDs   []string `json:"ids"`
}

// newConn connects to vc for the test, with the default dial timeout (1s); its breaker
// opens for 200ms at first.
func newConn(t testing.TB, vc valkeyconn.Config) *valkeyconn.Conn {
	t.Helper()
	conn, err := valkeyconn.New(vc, valkeyconn.Options{Name: "app cache test", OpenFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// testConfig has a key prefix and purge channel of its own, so that runs and tests sharing
// the dev Valkey never see each other's keys or purges.
func testConfig() Config {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	name := hex.EncodeToString(id)
	return Config{Prefix: "muejam:apptest:" + name + ":", PurgeChannel: "muejam:apptest:{" + name + "}:purge"}
}

// newManager makes a Manager on conn (nil: L1 only) with its own registry, closed when the
// test ends.
func newManager(t testing.TB, conn *valkeyconn.Conn, cfg Config) *Manager {
	t.Helper()
	m, err := New(conn, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if conn != nil {
		testenv.Eventually(t, 10*time.Second, "the purge subscription", func() bool { return m.l2.emptied.Load() > 0 })
	}
	return m
}

// purgeOnlyInValkey records a purge of tag in Valkey without telling any instance.
func purgeOnlyInValkey(ctx context.Context, c valkey.Client, m *Manager, tag string) error {
	return valkeytags.PurgeTag.Run(ctx, c, valkey.LuaExec{Keys: valkeytags.Keys(m.cfg.Prefix, tag), Args: []string{"60000"}})[0].Error()
}

// subscribers is how many instances are subscribed to m's purge channel.
func subscribers(t testing.TB, m *Manager) int64 {
	var n int64
	_, err := m.conn.Call(context.Background(), time.Second, "test", func(ctx context.Context, c valkey.Client) error {
		res, err := c.Do(ctx, c.B().PubsubShardnumsub().Channel(m.cfg.PurgeChannel).Build()).ToArray()
		if err != nil || len(res) != 2 {
			return fmt.Errorf("PUBSUB SHARDNUMSUB: %v %v", res, err)
		}
		n, err = res[1].AsInt64()
		return err
	})
	if err != nil {
		t.Logf("counting subscribers: %v", err)
	}
	return n
}

func lookups(m *Manager, layer, outcome string) float64 {
	return testutil.ToFloat64(m.m.lookups.WithLabelValues(layer, outcome))
}

func inL1(m *Manager, key string) bool {
	_, ok := m.l1.GetIfPresent(key)
	return ok
}

func TestGetSetAndExpiry(t *testing.T) {
	m := newManager(t, nil, Config{})
	ctx := context.Background()
	if _, ok := Get[feed](ctx, m, "f"); ok {
		t.Fatal("hit in an empty cache")
	}
	want := feed{Title: "discover", IDs: []string{"a", "b"}}
	Set(ctx, m, "f", want, 150*time.Millisecond, "discover")
	got, ok := Get[feed](ctx, m, "f")
	if !ok || got.Title != want.Title || len(got.IDs) != 2 {
		t.Fatalf("Get = %+v, %t", got, ok)
	}
	if _, ok := Get[string](ctx, m, "f"); ok {
		t.Error("a value of another type is a hit")
	}
	if lookups(m, layerL1, outcomeHit) != 1 || lookups(m, layerL1, outcomeMiss) != 2 {
		t.Errorf("l1 hits %v misses %v, want 1 and 2", lookups(m, layerL1, outcomeHit), lookups(m, layerL1, outcomeMiss))
	}
	testenv.Eventually(t, 2*time.Second, "expiry after the TTL", func() bool { _, ok := Get[feed](ctx, m, "f"); return !ok })
	Set(ctx, m, "zero", 1, 0)
	if _, ok := Get[int](ctx, m, "zero"); ok {
		t.Error("a value with no TTL was stored")
	}
	Set(ctx, m, "bad", func() {}, time.Minute)
	if _, ok := Get[func()](ctx, m, "bad"); ok {
		t.Error("a value that does not encode was stored")
	}
}

func TestConfigNeedsHashTaggedChannel(t *testing.T) {
	if _, err := New(nil, Config{PurgeChannel: "no-tag:purge"}, nil, nil); err == nil {
		t.Error("a purge channel without a hash tag was accepted")
	}
	if _, err := New(nil, Config{Prefix: "app:{x}:"}, nil, nil); err == nil {
		t.Error("a key prefix with a hash tag was accepted")
	}
	m, err := New(nil, Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m.cfg.L1Bytes != 64<<20 || m.cfg.L2Timeout != 50*time.Millisecond || m.cfg.Prefix != "muejam:app:" || m.cfg.AckWait != 250*time.Millisecond {
		t.Errorf("defaults %+v", m.cfg)
	}
}

func TestSingleFlight(t *testing.T) {
	t.Run("l1 only", func(t *testing.T) { testSingleFlight(t, newManager(t, nil, Config{})) })
	t.Run("valkey", func(t *testing.T) {
		testSingleFlight(t, newManager(t, newConn(t, valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}}), testConfig()))
	})
}

func testSingleFlight(t *testing.T, m *Manager) {
	var loads atomic.Int32
	release := make(chan struct{})
	load := func(ctx context.Context) (feed, error) {
		loads.Add(1)
		<-release
		return feed{Title: "t"}, nil
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			v, err := GetOrLoad(context.Background(), m, "sf", time.Minute, []string{"sf"}, load)
			if err == nil && v.Title != "t" {
				err = fmt.Errorf("got %+v", v)
			}
			errs <- err
		})
	}
	time.Sleep(100 * time.Millisecond) // let them all miss
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if loads.Load() != 1 {
		t.Fatalf("%d loads for %d concurrent misses, want 1", loads.Load(), n)
	}
	if _, err := GetOrLoad(context.Background(), m, "sf", time.Minute, nil, load); err != nil || loads.Load() != 1 {
		t.Fatalf("a later call loaded again (%d) or failed: %v", loads.Load(), err)
	}
}

func TestWaiterLoadsWhenTheLeaderGivesUp(t *testing.T) {
	m := newManager(t, nil, Config{})
	leaderCtx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var leaderErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, leaderErr = GetOrLoad(leaderCtx, m, "k", time.Minute, nil, func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			return 0, ctx.Err()
		})
	}()
	<-started
	res := make(chan error, 1)
	go func() {
		v, err := GetOrLoad(context.Background(), m, "k", time.Minute, nil, func(ctx context.Context) (int, error) { return 7, nil })
		if err == nil && v != 7 {
			err = fmt.Errorf("got %d", v)
		}
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	if !errors.Is(leaderErr, context.Canceled) {
		t.Errorf("leader: %v", leaderErr)
	}
	if err := <-res; err != nil {
		t.Errorf("waiter: %v", err)
	}
}

// A panic in load is recovered and returned, as a *panics.Error, to every caller that
// waited on that load; nothing is cached and the next call loads again.
func TestLoadPanicIsAnError(t *testing.T) {
	m := newManager(t, nil, Config{})
	before := testutil.ToFloat64(panics.Total.WithLabelValues(whereLoad))
	release := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := GetOrLoad(context.Background(), m, "p", time.Minute, nil, func(ctx context.Context) (feed, error) {
				<-release
				var f *feed
				return feed{Title: f.Title}, nil // nil dereference
			})
			errs <- err
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		var pe *panics.Error
		if !errors.As(err, &pe) || pe.Where != whereLoad {
			t.Fatalf("error %v, want a *panics.Error in %s", err, whereLoad)
		}
	}
	if got := testutil.ToFloat64(panics.Total.WithLabelValues(whereLoad)) - before; got != 1 {
		t.Errorf("counted %v panics, want 1 (one load)", got)
	}
	if testutil.ToFloat64(m.m.loads.WithLabelValues("panic")) != 1 {
		t.Error("loads{outcome=panic} not counted")
	}
	v, err := GetOrLoad(context.Background(), m, "p", time.Minute, nil, func(ctx context.Context) (feed, error) { return feed{Title: "ok"}, nil })
	if err != nil || v.Title != "ok" {
		t.Fatalf("after a panic: %+v, %v", v, err)
	}
	loadErr := errors.New("db down")
	if _, err := GetOrLoad(context.Background(), m, "e", time.Minute, nil, func(ctx context.Context) (int, error) { return 0, loadErr }); !errors.Is(err, loadErr) {
		t.Fatalf("load error %v", err)
	}
	if _, ok := Get[int](context.Background(), m, "e"); ok {
		t.Error("a failed load was cached")
	}
}

func TestByteBoundAndEvictions(t *testing.T) {
	const budget = 256 << 10
	m := newManager(t, nil, Config{L1Bytes: budget})
	value := strings.Repeat("x", 1000)
	for i := range 2000 { // about 2 MB into 256 KiB
		Set(context.Background(), m, fmt.Sprintf("k%d", i), value, time.Minute, "all")
	}
	m.l1.CleanUp()
	if got := m.l1.WeightedSize(); got > budget {
		t.Errorf("L1 holds %d bytes, budget %d", got, budget)
	}
	if got := testutil.ToFloat64(m.m.l1Bytes); got <= 0 || got > budget {
		t.Errorf("muejam_app_cache_l1_bytes = %v", got)
	}
	testenv.Eventually(t, 5*time.Second, "evictions counted", func() bool { return testutil.ToFloat64(m.m.evictions) >= 1500 })
	// The tag index forgets evicted entries.
	testenv.Eventually(t, 5*time.Second, "the tag index to shrink with L1", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.index["all"]) <= m.l1.EstimatedSize()+10
	})
}

func TestInvalidateLocal(t *testing.T) {
	m := newManager(t, nil, Config{})
	ctx := context.Background()
	Set(ctx, m, "a", 1, time.Minute, "story:1", "feed")
	Set(ctx, m, "b", 2, time.Minute, "story:2", "feed")
	Set(ctx, m, "c", 3, time.Minute)
	if err := m.Invalidate(ctx, "story:1"); err != nil {
		t.Fatal(err)
	}
	if inL1(m, "a") || !inL1(m, "b") || !inL1(m, "c") {
		t.Fatalf("after invalidating story:1: a %t b %t c %t", inL1(m, "a"), inL1(m, "b"), inL1(m, "c"))
	}
	if err := m.Invalidate(ctx, "feed", "nothing"); err != nil || inL1(m, "b") || !inL1(m, "c") {
		t.Fatalf("after invalidating feed (%v): b %t c %t", err, inL1(m, "b"), inL1(m, "c"))
	}
	if err := m.Invalidate(ctx, "has space"); err == nil {
		t.Error("a tag with white space was accepted")
	}
	// A load that started before an invalidation of its tag is returned but not stored.
	started, invalidated := make(chan struct{}), make(chan struct{})
	go func() {
		<-started
		_ = m.Invalidate(ctx, "feed")
		close(invalidated)
	}()
	v, err := GetOrLoad(ctx, m, "d", time.Minute, []string{"feed"}, func(ctx context.Context) (int, error) {
		close(started)
		<-invalidated
		return 4, nil
	})
	if err != nil || v != 4 {
		t.Fatalf("GetOrLoad = %d, %v", v, err)
	}
	if inL1(m, "d") {
		t.Error("a value loaded before an invalidation of its tag was stored")
	}

	// A caller that misses after an invalidation does not wait for a load that started
	// before it (a write's author reads what it wrote), and its value is stored.
	started, release := make(chan struct{}), make(chan struct{})
	old := make(chan int)
	go func() {
		v, _ := GetOrLoad(ctx, m, "e", time.Minute, []string{"feed"}, func(ctx context.Context) (int, error) {
			close(started)
			<-release
			return 1, nil
		})
		old <- v
	}()
	<-started
	if err := m.Invalidate(ctx, "feed"); err != nil {
		t.Fatal(err)
	}
	v, err = GetOrLoad(ctx, m, "e", time.Minute, []string{"feed"}, func(ctx context.Context) (int, error) { return 2, nil })
	if err != nil || v != 2 {
		t.Fatalf("GetOrLoad after an invalidation = %d, %v, want 2 (a load of its own)", v, err)
	}
	close(release)
	if v := <-old; v != 1 {
		t.Fatalf("the earlier load returned %d", v)
	}
	if got, ok := Get[int](ctx, m, "e"); !ok || got != 2 {
		t.Fatalf("after both loads, L1 holds %d (%t), want 2", got, ok)
	}
}

// TestTwoInstances runs two managers ("app instances") on one Valkey: values are shared
// through L2, and an Invalidate through either has purged the other's L1 and L2 when it
// returns, for entries and tags spread over many slots on the cluster.
func TestTwoInstances(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		testTwoInstances(t, valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}})
	})
	t.Run("cluster", func(t *testing.T) {
		testTwoInstances(t, valkeyconn.Config{Addresses: testenv.RequireValkeyCluster(t), Cluster: true})
	})
}

func testTwoInstances(t *testing.T, vc valkeyconn.Config) {
	cfg := testConfig()
	cfg.L2Timeout = time.Second // a shared machine: these tests are about correctness
	a := newManager(t, newConn(t, vc), cfg)
	b := newManager(t, newConn(t, vc), cfg)
	if a.conn.IsCluster() != vc.Cluster {
		t.Fatalf("cluster client %t, want %t", a.conn.IsCluster(), vc.Cluster)
	}
	ctx := context.Background()
	const n = 64
	key := func(i int) string { return fmt.Sprintf("feed:%d", i) }
	tags := func(i int) []string { return []string{"all", fmt.Sprintf("group:%d", i%8), fmt.Sprintf("story:%d", i)} }
	var loads atomic.Int32
	for i := range n {
		v, err := GetOrLoad(ctx, a, key(i), time.Minute, tags(i), func(ctx context.Context) (feed, error) {
			loads.Add(1)
			return feed{Title: key(i), IDs: tags(i)}, nil
		})
		if err != nil || v.Title != key(i) {
			t.Fatalf("GetOrLoad %d: %+v, %v", i, v, err)
		}
	}
	// b finds them in L2 (written in the background) without loading.
	testenv.Eventually(t, 10*time.Second, "every value in L2", func() bool {
		for i := range n {
			if _, ok := a.l2.get(ctx, key(i)); !ok {
				return false
			}
		}
		return true
	})
	for i := range n {
		v, err := GetOrLoad(ctx, b, key(i), time.Minute, tags(i), func(ctx context.Context) (feed, error) {
			loads.Add(1)
			return feed{}, nil
		})
		if err != nil || v.Title != key(i) || len(v.IDs) != 3 {
			t.Fatalf("b's GetOrLoad %d: %+v, %v", i, v, err)
		}
		if !inL1(b, key(i)) {
			t.Fatalf("b did not keep %s in L1", key(i))
		}
	}
	if loads.Load() != n {
		t.Fatalf("%d loads, want %d (b should read L2)", loads.Load(), n)
	}
	if lookups(b, layerL2, outcomeHit) != n {
		t.Errorf("b's l2 hits %v, want %d", lookups(b, layerL2, outcomeHit), n)
	}
	// The L1 TTL of a value read from L2 is what was left of it, not a new one.
	if e, ok := b.l1.GetEntry(key(0)); !ok || e.ExpiresAfter() > time.Minute {
		t.Errorf("b's entry expires after %v", e.ExpiresAfter())
	}

	// An Invalidate through a: when it returns, b's L1 and L2 no longer hold group:3.
	if err := a.Invalidate(ctx, "group:3"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	for i := range n {
		purged := i%8 == 3
		if inL1(b, key(i)) == purged || inL1(a, key(i)) == purged {
			t.Fatalf("after invalidating group:3, %s in b's L1 %t, a's %t", key(i), inL1(b, key(i)), inL1(a, key(i)))
		}
		if _, ok := b.l2.get(ctx, key(i)); ok == purged {
			t.Fatalf("after invalidating group:3, %s in L2 %t", key(i), ok)
		}
	}
	if testutil.ToFloat64(b.m.invalidations.WithLabelValues("remote")) != 1 || testutil.ToFloat64(a.m.invalidations.WithLabelValues("local")) != 1 {
		t.Error("invalidations not counted")
	}
	// Through b, of a tag everything carries, with tags nothing carries.
	if err := b.Invalidate(ctx, "all", "nothing", "odd:{x}"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	for i := range n {
		if inL1(a, key(i)) || inL1(b, key(i)) {
			t.Fatalf("%s still in an L1 after invalidating all", key(i))
		}
		if _, ok := a.l2.get(ctx, key(i)); ok {
			t.Fatalf("%s still in L2 after invalidating all", key(i))
		}
	}

	// A write of a value loaded before a purge this instance never heard of (recorded in
	// Valkey only, as by an instance whose message was lost): the writer deletes it again.
	late := "late"
	w := l2Write{key: "late-key", value: []byte(`{"title":"old"}`), tags: []string{late}, ttl: time.Minute, loaded: time.Now()}
	time.Sleep(5 * time.Millisecond)
	if _, err := a.conn.Call(ctx, time.Second, "test", func(ctx context.Context, c valkey.Client) error {
		return purgeOnlyInValkey(ctx, c, a, late)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.conn.Call(ctx, time.Second, "test", func(ctx context.Context, c valkey.Client) error { return a.l2.write(ctx, c, w) }); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.l2.get(ctx, "late-key"); ok {
		t.Error("a value loaded before a purge stayed in L2")
	}
	if _, ok := a.purgedAt(late); !ok {
		t.Error("the writer did not record the purge it found")
	}
}

// TestValkeyDown kills a private Valkey under two managers: no call fails or waits much
// longer than L2Timeout, lookups count L2 as unavailable, Invalidate still purges the local
// L1; when Valkey comes back, L2 serves again, the subscriptions are back (L1 emptied, since
// purges may have been missed) and the purge made meanwhile is retried.
func TestValkeyDown(t *testing.T) {
	v := testenv.StartValkey(t)
	vc := valkeyconn.Config{Addresses: []string{v.Addr}}
	cfg := testConfig()
	cfg.L2Timeout = 50 * time.Millisecond
	a := newManager(t, newConn(t, vc), cfg)
	b := newManager(t, newConn(t, vc), cfg)
	ctx := context.Background()
	Set(ctx, a, "warm", 1, time.Minute, "t")
	testenv.Eventually(t, 5*time.Second, "the value in L2", func() bool { _, ok := Get[int](ctx, b, "warm"); return ok })

	v.Stop(t)
	const slack = 60 * time.Millisecond // a shared, loaded machine under -race
	limit := cfg.L2Timeout + slack
	var worst time.Duration
	timed := func(call func()) {
		start := time.Now()
		call()
		worst = max(worst, time.Since(start))
	}
	for i := range 200 {
		key := fmt.Sprintf("down:%d", i%20)
		var got int
		timed(func() {
			var err error
			got, err = GetOrLoad(ctx, b, key, time.Minute, []string{"t"}, func(ctx context.Context) (int, error) { return i, nil })
			if err != nil {
				t.Fatalf("GetOrLoad with Valkey down: %v", err)
			}
		})
		if i < 20 && got != i {
			t.Fatalf("GetOrLoad %s = %d, want %d", key, got, i)
		}
		timed(func() {
			if _, ok := Get[int](ctx, b, "never-set"); ok {
				t.Fatal("hit for a key never set")
			}
		})
		timed(func() { Set(ctx, b, key, got, time.Minute, "t") })
	}
	if worst > limit {
		t.Errorf("a call took %v with Valkey down, limit %v", worst, limit)
	}
	if lookups(b, layerL2, outcomeUnavailable) < 100 {
		t.Errorf("l2 lookups unavailable %v: the breaker did not open", lookups(b, layerL2, outcomeUnavailable))
	}
	if hits := lookups(b, layerL1, outcomeHit); hits < 150 {
		t.Errorf("l1 hits %v: L1 did not serve on its own", hits)
	}
	start := time.Now()
	if err := b.Invalidate(ctx, "t"); err == nil {
		t.Error("Invalidate with Valkey down reported no error")
	}
	if took := time.Since(start); took > cfg.AckWait+slack {
		t.Errorf("Invalidate took %v with Valkey down", took)
	}
	if inL1(b, "down:1") {
		t.Error("Invalidate with Valkey down left the local L1")
	}
	b.l2.pendingMu.Lock()
	pending := b.l2.pending["t"]
	b.l2.pendingMu.Unlock()
	if !pending {
		t.Error("the failed purge is not kept for retrying")
	}

	Set(ctx, a, "stale", 1, time.Minute)
	emptied := a.l2.emptied.Load()
	v.Start(t)
	testenv.Eventually(t, 15*time.Second, "L2 back", func() bool {
		Set(ctx, a, "back", 2, time.Minute)
		b.l1.Invalidate("back")
		_, ok := Get[int](ctx, b, "back")
		return ok
	})
	testenv.Eventually(t, 10*time.Second, "a's L1 emptied on resubscribing", func() bool { return a.l2.emptied.Load() > emptied && !inL1(a, "stale") })
	testenv.Eventually(t, 10*time.Second, "the purge retried", func() bool {
		b.l2.pendingMu.Lock()
		defer b.l2.pendingMu.Unlock()
		return len(b.l2.pending) == 0
	})
	// And purges fan out again.
	testenv.Eventually(t, 10*time.Second, "both subscribed again", func() bool { return subscribers(t, a) == 2 })
	Set(ctx, a, "x", 1, time.Minute, "x")
	testenv.Eventually(t, 5*time.Second, "x in L2", func() bool { _, ok := Get[int](ctx, b, "x"); return ok })
	testenv.Eventually(t, 10*time.Second, "an acknowledged purge", func() bool { return a.Invalidate(ctx, "x") == nil })
	if inL1(b, "x") {
		t.Error("b kept x after an acknowledged purge")
	}
}

// TestValkeyFrozen freezes Valkey (it accepts connections and answers nothing): no call
// waits much longer than L2Timeout.
func TestValkeyFrozen(t *testing.T) {
	v := testenv.StartValkey(t)
	cfg := testConfig()
	m := newManager(t, newConn(t, valkeyconn.Config{Addresses: []string{v.Addr}}), cfg)
	ctx := context.Background()
	v.Freeze(t)
	limit := cfg.L2Timeout
	if limit == 0 {
		limit = 50 * time.Millisecond
	}
	limit += 60 * time.Millisecond
	for i := range 50 {
		start := time.Now()
		if _, err := GetOrLoad(ctx, m, fmt.Sprintf("k%d", i), time.Minute, nil, func(ctx context.Context) (int, error) { return i, nil }); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > limit {
			t.Fatalf("GetOrLoad took %v with Valkey frozen, limit %v", took, limit)
		}
	}
	if lookups(m, layerL2, outcomeUnavailable) < 40 {
		t.Errorf("l2 unavailable %v: the breaker did not open", lookups(m, layerL2, outcomeUnavailable))
	}
}

// TestConcurrentUse mixes every call on two instances, for the race detector.
func TestConcurrentUse(t *testing.T) {
	vc := valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}}
	cfg := testConfig()
	cfg.L1Bytes = 64 << 10
	ms := []*Manager{newManager(t, newConn(t, vc), cfg), newManager(t, newConn(t, vc), cfg)}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			m := ms[g%2]
			for i := range 200 {
				key := fmt.Sprintf("k%d", i%16)
				tag := fmt.Sprintf("t%d", i%4)
				switch i % 5 {
				case 0:
					Set(ctx, m, key, feed{Title: key}, time.Minute, tag)
				case 1:
					Get[feed](ctx, m, key)
				case 2:
					_ = m.Invalidate(ctx, tag)
				default:
					if _, err := GetOrLoad(ctx, m, key, time.Minute, []string{tag}, func(ctx context.Context) (feed, error) { return feed{Title: key}, nil }); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkL1Hit(b *testing.B) {
	m := newManager(b, nil, Config{})
	ctx := context.Background()
	Set(ctx, m, "k", feed{Title: "t", IDs: make([]string, 20)}, time.Hour, "t")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := Get[feed](ctx, m, "k"); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkL2Hit reads a 20-story feed from the dev Valkey (L1 dropped before each read).
func BenchmarkL2Hit(b *testing.B) {
	conn := newConn(b, valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}})
	cfg := testConfig()
	cfg.L2Timeout = time.Second
	m := newManager(b, conn, cfg)
	ctx := context.Background()
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprintf("story-%032d", i)
	}
	Set(ctx, m, "k", feed{Title: "t", IDs: ids}, time.Hour, "t")
	testenv.Eventually(b, 5*time.Second, "the value in L2", func() bool { _, ok := m.l2.get(ctx, "k"); return ok })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.l1.Invalidate("k")
		if _, ok := Get[feed](ctx, m, "k"); !ok {
			b.Fatal("miss")
		}
	}
}

// A value whose tags its load names is dropped by an invalidation of any of them, in L1
// and L2, as one whose tags were known up front.
func TestGetOrLoadTagged(t *testing.T) {
	conn := newConn(t, valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}})
	m := newManager(t, conn, testConfig())
	ctx := context.Background()
	loads := 0
	load := func(ctx context.Context) (feed, []string, error) {
		loads++
		return feed{Title: "page", IDs: []string{"w1", "w2"}}, []string{"whisper:w1", "whisper:w2"}, nil
	}
	for range 2 {
		if v, err := GetOrLoadTagged(ctx, m, "page", time.Minute, []string{"whispers:global"}, load); err != nil || v.Title != "page" {
			t.Fatalf("GetOrLoadTagged = %+v, %v", v, err)
		}
	}
	if loads != 1 {
		t.Fatalf("%d loads, want 1", loads)
	}
	if err := m.Invalidate(ctx, "whisper:w2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := Get[feed](ctx, m, "page"); ok {
		t.Fatal("the page is still cached after an invalidation of a tag its load named")
	}
	if _, err := GetOrLoadTagged(ctx, m, "page", time.Minute, []string{"whispers:global"}, load); err != nil || loads != 2 {
		t.Fatalf("after the invalidation: %v, %d loads; want a second load", err, loads)
	}
}
