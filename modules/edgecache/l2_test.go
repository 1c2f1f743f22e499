package edgecache

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/internal/valkeytags"
)

// TestL2Commands sends every Valkey command and script the cache sends, to the dev Valkey
// server and to the dev Valkey Cluster through a cluster client, whose command builder
// panics on a command whose keys are in different slots (and whose server refuses a
// script that touches keys of several): writes of entries with tags spread over many
// slots, reads (a hit, and a Vary mismatch that takes the second GET), purges whose entries
// live in many slots, the purge fan-out with its acknowledgements between two nodes
// (stores), a write racing a purge it did not hear of, and the probe. A panic, a failed
// call or an entry left behind fails it.
func TestL2Commands(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		testL2Commands(t, valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}})
	})
	t.Run("cluster", func(t *testing.T) {
		testL2Commands(t, valkeyconn.Config{Addresses: testenv.RequireValkeyCluster(t), Cluster: true})
	})
}

func testL2Commands(t *testing.T, vc valkeyconn.Config) {
	// The dev servers outlive the test: a name of its own keeps earlier runs' keys out.
	cfg := storeConfig{name: procCacheName("l2test"), maxBytes: 16 << 20, maxTTL: time.Minute, valkey: vc,
		timeout: time.Second, retry: time.Second, queue: 4096, purgeWait: 5 * time.Second}
	logger := zaptest.NewLogger(t)
	a, err := newStore(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Destruct()
	b, err := newStore(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destruct()
	panicsBefore := panicCount()
	errorsBefore := testutil.ToFloat64(l2Errors.WithLabelValues(cfg.name))
	testenv.Eventually(t, 10*time.Second, "both stores subscribed to the purge channel", func() bool {
		return a.l2.bus.Subscribed() && b.l2.bus.Subscribed()
	})
	if a.l2.conn.IsCluster() != vc.Cluster {
		t.Fatalf("cluster client %t, want %t", a.l2.conn.IsCluster(), vc.Cluster)
	}

	// 64 primary keys without Vary and 8 with two variants each, tagged "all", one of 8
	// groups, and their own key tag: entries and tags in many slots.
	const plain, varied = 64, 8
	now := time.Now()
	var keys []string
	for i := range plain + varied {
		primary := fmt.Sprintf("GET edge.test /l2/%d ?", i)
		keys = append(keys, primary)
		tags := []string{"all", fmt.Sprintf("group:%d", i%8), keyTag(primary)}
		if i < plain {
			a.put(primary, l2TestEntry(tags, nil, nil, now))
			continue
		}
		for _, lang := range []string{"en", "fr"} {
			a.put(primary, l2TestEntry(tags, []string{"Accept-Language"}, http.Header{"Accept-Language": {lang}}, now))
		}
	}
	fr := http.Header{"Accept-Language": {"fr"}}
	testenv.Eventually(t, 10*time.Second, "every entry written", func() bool {
		for i, k := range keys {
			if b.l2.get(context.Background(), k, nil, fr) == nil {
				return false
			}
			if i >= plain && b.l2.get(context.Background(), k, []string{"Accept-Language"}, http.Header{"Accept-Language": {"en"}}) == nil {
				return false
			}
		}
		return true
	})
	// A hit in one MGET, and a Vary mismatch (no Vary record in L1) answered by the second GET.
	if e := b.l2.get(context.Background(), keys[0], nil, nil); e == nil || len(e.vary) != 0 {
		t.Fatalf("hit without Vary: %+v", e)
	}
	if e := b.l2.get(context.Background(), keys[plain], nil, fr); e == nil || e.secondary != secondaryKey([]string{"Accept-Language"}, fr) {
		t.Fatalf("hit after a Vary mismatch: %+v", e)
	}

	// A purge through a reaches b (acknowledged) and deletes the group's entries only.
	if err := a.purge(context.Background(), []string{"group:3"}, "admin"); err != nil {
		t.Fatalf("purge: %v", err)
	}
	if !b.purgedSince([]string{"group:3"}, now) {
		t.Fatal("b has no record of a's purge after it was acknowledged")
	}
	for i, k := range keys {
		if got := b.l2.get(context.Background(), k, nil, fr); (got == nil) != (i%8 == 3) {
			t.Fatalf("after purging group:3, entry %d in L2: %t", i, got != nil)
		}
	}
	// A purge of a tag every entry carries, and of tags nothing carries.
	if err := b.purge(context.Background(), []string{"all", "nothing", "none:{x}"}, "admin"); err != nil {
		t.Fatalf("purge of all: %v", err)
	}
	for _, k := range keys {
		if b.l2.get(context.Background(), k, nil, fr) != nil || b.l2.get(context.Background(), k, nil, http.Header{"Accept-Language": {"en"}}) != nil {
			t.Fatalf("entry of %s still in L2 after purging all", k)
		}
	}

	// A write of an entry fetched before a purge that its node never heard of (the purge is
	// recorded in Valkey only, as by a node whose message was lost): the writer deletes it
	// again and records the purge.
	const late = "late"
	purgedAt := time.Now()
	if err := a.l2.call(context.Background(), time.Second, "test", func(ctx context.Context, c valkey.Client) error {
		_, err := valkeytags.PurgeTag.Run(ctx, c, valkey.LuaExec{Keys: a.l2.tagKeys(late), Args: []string{"60000"}})[0].AsStrSlice()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stale := l2TestEntry([]string{late}, nil, nil, purgedAt.Add(-time.Second))
	b.l2.put("GET edge.test /late ?", stale)
	testenv.Eventually(t, 5*time.Second, "the late write's purge recorded", func() bool { return b.purgedSince([]string{late}, stale.requestTime) })
	if e := a.l2.get(context.Background(), "GET edge.test /late ?", nil, nil); e != nil {
		t.Fatal("an entry fetched before its tag's purge stayed in L2")
	}
	fresh := l2TestEntry([]string{late}, nil, nil, time.Now().Add(time.Second))
	b.l2.put("GET edge.test /late ?", fresh)
	testenv.Eventually(t, 5*time.Second, "an entry fetched after the purge written", func() bool {
		return a.l2.get(context.Background(), "GET edge.test /late ?", nil, nil) != nil
	})

	// The probe, summed over the primaries.
	if err := a.l2.call(context.Background(), 5*time.Second, whereProbe, a.l2.measure); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if k, m := a.l2.sizes(); k <= 0 || m <= 0 {
		t.Fatalf("probe: %d keys, %d bytes", k, m)
	}

	if n := panicCount() - panicsBefore; n != 0 {
		t.Fatalf("%v panics recovered", n)
	}
	if n := testutil.ToFloat64(l2Errors.WithLabelValues(cfg.name)) - errorsBefore; n != 0 {
		t.Fatalf("%v Valkey calls failed", n)
	}
}

// l2TestEntry is a 200 fresh for a minute, fetched at requestTime, with tags and, when vary
// names fields, the variant of reqHeader.
func l2TestEntry(tags, vary []string, reqHeader http.Header, requestTime time.Time) *entry {
	e := &entry{status: 200, header: http.Header{"Cache-Control": {"max-age=60"}}, body: []byte(`{"data":1}`),
		tags: tags, vary: vary, secondary: secondaryKey(vary, reqHeader), requestTime: requestTime, responseTime: requestTime}
	e.derive(0)
	e.ttl = time.Minute
	return e
}

// panicCount is the number of panics the cache recovered so far.
func panicCount() float64 {
	n := 0.0
	for _, w := range panicSites {
		n += testutil.ToFloat64(panics.Total.WithLabelValues(w))
	}
	return n
}
