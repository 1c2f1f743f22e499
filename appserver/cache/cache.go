// Package cache is the app server's cache manager: typed values the app computes (feeds,
// block lists, search results, story metadata) kept in two layers and invalidated by the same
// tags the app names in Cache-Purge.
//
// # Layers
//
// L1 is an otter cache in this process, bounded by bytes (Config.L1Bytes): each entry is
// weighed by its JSON encoding plus its key and tags, and expires after its own TTL. It keeps
// the decoded value, so a hit costs no decoding; callers must treat values they get as
// immutable, since every caller of a key shares one.
//
// L2 is Valkey (a server or a cluster) through internal/valkeyconn, shared by every app
// instance: a value is stored JSON-encoded, beside its tags and the time its load started.
// Reads are on the request path, bounded by Config.L2Timeout and guarded by the connection's
// breaker, so a slow or dead Valkey costs a request at most one timeout, and then nothing
// (the breaker is open: L1 only) until Valkey answers a probe again. Writes never are: they
// go through a bounded queue to a writer goroutine and are dropped (and counted) when it is
// full.
//
// GetOrLoad looks in L1, then L2, then runs the load once per key however many goroutines
// of this instance miss it at the same time (single flight), and stores the result in both
// layers. A load that panics does not crash the process: the panic is recovered, logged and
// counted (muejam_edge_panics_total{where="app_cache.load"}, the counter every MueJam
// binary exports), and returned as a *panics.Error to the leader and to every goroutine that
// waited on it; nothing is cached.
//
// # Keys in Valkey
//
// Under Config.Prefix (default "muejam:app:"). On a cluster a command or script may only
// touch keys of one slot, the hash of a key's hash tag (the part in braces); the tags are
// chosen so that what one command touches shares one, and so that the rest spreads:
//
//	e:{<h(key)>}   an entry (its tags, load time, expiry and JSON value), PX its TTL
//	{t:<tag>}:m    the keys of the entries carrying a tag, as long-lived as its longest entry
//	{t:<tag>}:p    when the tag was last purged (µs, Valkey's clock), PX a minute
//
// with h a hash (entries spread over the slots whatever the key). A tag's member set and its
// purge record share the tag's slot, so that one script answers "add this entry; was the
// tag purged since?" and another "record a purge; which entries carry the tag?" (the scripts
// of internal/valkeytags, shared with the edge's L2). An entry and its tags are in different
// slots, so storing an entry cannot be one atomic script; the writer and the purge are
// ordered so that a purge is never undone by a write of a value loaded before it (l2write).
//
// # Invalidation
//
// Invalidate(tags) first drops the tags' entries from this instance's L1 and records the
// purge, so that a load in flight that started before it is not stored; then, in one
// pipeline, it records the purge in Valkey, pops the tags' member sets, deletes their
// entries and publishes "<instance> <id> <tag>..." on the sharded pub/sub channel
// Config.PurgeChannel (SPUBLISH; Valkey 7 or later, on a cluster and on one server alike).
// Every instance subscribes to it (SSUBSCRIBE, on the shard that serves the channel's slot),
// drops the tags from its L1, records the purge and answers "<instance> <id>" on
// PurgeChannel+"-ack", a channel with the same hash tag, hence the same shard. Invalidate
// waits for as many acknowledgements as SPUBLISH counted subscribers (its own message counts
// as its own), at most Config.AckWait, so that once it returns no instance serves a purged
// entry from L1.
//
// An instance whose subscription broke (Valkey restarted, failed over, its connection
// reset) may have missed purges: each time it subscribes again it empties its L1. An
// Invalidate that could not reach Valkey returns an error after purging the local L1, and
// is retried in the background until Valkey takes it, so that L2 and the other instances
// follow once Valkey is back.
//
// # Degraded modes
//
// Without Valkey (conn nil, not connected yet, down, slow, breaker open) the manager is an
// L1-only cache: no call fails because of Valkey, Get and GetOrLoad wait at most
// L2Timeout for it (a read that outlives it, such as one on which valkey-go dials a new
// connection, bounded by the dial timeout and not by the read's context, is abandoned, not
// waited for), and it comes back by itself when the breaker closes again
// (muejam_app_cache_lookups_total{layer="l2",outcome="unavailable"} counts the lookups it
// skipped meanwhile).
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
)

// Config are a Manager's settings; zero fields take their defaults.
type Config struct {
	// L1Bytes bounds the in-memory layer's approximate size; default 64 MiB.
	L1Bytes int64
	// L2Timeout bounds each Valkey call on a request's path (reads); default 50ms. Writes,
	// off the request path, get four times as long.
	L2Timeout time.Duration
	// Prefix starts every Valkey key of the cache, without braces; default "muejam:app:".
	Prefix string
	// PurgeChannel is the sharded pub/sub channel of purges; acknowledgements go on
	// PurgeChannel+"-ack". It must hold a hash tag ({...}), so that both channels are on
	// one shard of a cluster. Default "muejam:app:{cache}:purge".
	PurgeChannel string
	// AckWait bounds Invalidate's Valkey work and its wait for the other instances'
	// acknowledgements; default 250ms.
	AckWait time.Duration
	// Settle is how long after a purge of a tag a value carrying it, loaded meanwhile, is
	// still not stored (a load may read a replica that has not yet replayed the write that
	// caused the purge); default 0.
	Settle time.Duration
	// WriteQueue is how many L2 writes may wait for the writer; default 1024.
	WriteQueue int
}

// withDefaults returns c with its zero fields set to their defaults, or an error for a
// setting it cannot take.
func (c Config) withDefaults() (Config, error) {
	if c.L1Bytes <= 0 {
		c.L1Bytes = 64 << 20
	}
	if c.L2Timeout <= 0 {
		c.L2Timeout = 50 * time.Millisecond
	}
	if c.Prefix == "" {
		c.Prefix = "muejam:app:"
	}
	if c.PurgeChannel == "" {
		c.PurgeChannel = "muejam:app:{cache}:purge"
	}
	if c.AckWait <= 0 {
		c.AckWait = 250 * time.Millisecond
	}
	if c.Settle < 0 {
		c.Settle = 0
	}
	if c.WriteQueue <= 0 {
		c.WriteQueue = 1024
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return c, fmt.Errorf("cache: key prefix %q holds a brace: it would be the hash tag of every key, all in one cluster slot", c.Prefix)
	}
	if !hasHashTag(c.PurgeChannel) {
		return c, fmt.Errorf("cache: purge channel %q has no hash tag ({...}): its acknowledgement channel could be on another cluster shard", c.PurgeChannel)
	}
	return c, nil
}

// hasHashTag reports whether s has a non-empty hash tag, as a cluster computes it: the part
// between the first '{' and the first '}' after it.
func hasHashTag(s string) bool {
	_, after, ok := strings.Cut(s, "{")
	return ok && strings.IndexByte(after, '}') > 0
}

// Where the manager recovers panics: the where label of muejam_edge_panics_total.
const (
	whereLoad       = "app_cache.load"
	whereL2         = "app_cache.l2"
	whereWriter     = "app_cache.l2_writer"
	wherePurge      = "app_cache.purge"
	whereAck        = "app_cache.purge_ack"
	whereSubscriber = "app_cache.subscriber"
	whereSweep      = "app_cache.sweep"
)

// recordRetention is how long a purge is remembered (in this process and in Valkey) to
// refuse values loaded before it: longer than any load, write queue wait or L2 round trip.
const recordRetention = time.Minute

// entry is an L1 entry.
type entry struct {
	value any
	size  int // bytes of the JSON encoding
	tags  []string
	ttl   time.Duration
}

// Manager is the app server's cache: L1 in memory, L2 in Valkey when there is one. Its
// methods and the package's functions are safe for concurrent use.
type Manager struct {
	cfg    Config
	logger *zap.Logger
	conn   *valkeyconn.Conn
	l1     *otter.Cache[string, *entry]
	m      *metrics

	mu     sync.Mutex
	index  map[string]map[string]*entry // tag → key → the L1 entry that carries it
	purges map[string]time.Time         // tag → when this process last heard of its purge

	flightMu sync.Mutex
	flights  map[string]*flight

	l2 *l2 // nil without Valkey

	stop chan struct{}
	done sync.WaitGroup
}

// flight is a load in progress, shared by the goroutines that missed its key.
type flight struct {
	done  chan struct{}
	tags  []string  // the tags its value will carry
	start time.Time // when it started: a goroutine that misses the key after a purge of one of its tags does not wait for it
	value any
	err   error
}

// New returns a Manager with cfg's settings. conn may be nil: the manager is then L1 only;
// otherwise it starts the purge subscriber and the L2 writer on it (conn stays the caller's:
// Close does not close it). logger may be nil; reg, if not nil, gets the manager's metrics
// (one manager per registry).
func New(conn *valkeyconn.Conn, cfg Config, logger *zap.Logger, reg prometheus.Registerer) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	m := &Manager{
		cfg:     cfg,
		logger:  logger,
		conn:    conn,
		index:   map[string]map[string]*entry{},
		purges:  map[string]time.Time{},
		flights: map[string]*flight{},
		stop:    make(chan struct{}),
	}
	m.l1, err = otter.New(&otter.Options[string, *entry]{
		MaximumWeight: uint64(cfg.L1Bytes),
		Weigher:       weigh,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *entry]) time.Duration {
			return e.Value.ttl
		}),
		OnAtomicDeletion: m.deleted,
	})
	if err != nil {
		return nil, err
	}
	if m.m, err = newMetrics(m, reg); err != nil {
		return nil, fmt.Errorf("cache: registering metrics: %w", err)
	}
	if err := panics.Register(reg, whereLoad, whereL2, whereWriter, wherePurge, whereAck, whereSubscriber, whereSweep); err != nil {
		return nil, fmt.Errorf("cache: registering metrics: %w", err)
	}
	if conn != nil {
		m.l2 = newL2(m)
	}
	panics.Go(&m.done, logger, whereSweep, m.sweep)
	return m, nil
}

// Close stops the manager's goroutines (L2 writes still queued are dropped) and empties L1.
func (m *Manager) Close() {
	close(m.stop)
	if m.l2 != nil {
		m.l2.close()
	}
	m.done.Wait()
	m.l1.InvalidateAll()
	m.l1.StopAllGoroutines()
}

// weigh is an L1 entry's approximate size in bytes.
func weigh(key string, e *entry) uint32 {
	n := 64 + len(key) + e.size
	for _, t := range e.tags {
		n += 16 + len(t)
	}
	return uint32(min(n, 1<<31))
}

// deleted unregisters an L1 entry from its tags when it leaves L1, and counts evictions. It
// runs under the lock of the entry's otter bucket: m.mu is only ever taken after otter's
// locks, never held while calling otter.
func (m *Manager) deleted(e otter.DeletionEvent[string, *entry]) {
	if e.Cause == otter.CauseOverflow {
		m.m.evictions.Inc()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range e.Value.tags {
		if keys := m.index[t]; keys[e.Key] == e.Value {
			delete(keys, e.Key)
			if len(keys) == 0 {
				delete(m.index, t)
			}
		}
	}
}

// purgedSince reports whether one of tags was purged after since (less Settle): a value
// loaded at since may predate the purge. m.mu is held.
func (m *Manager) purgedSince(tags []string, since time.Time) bool {
	for _, t := range tags {
		if p, ok := m.purges[t]; ok && !since.After(p.Add(m.cfg.Settle)) {
			return true
		}
	}
	return false
}

// storeL1 stores e under key unless one of its tags was purged since its value was loaded
// (at since). The entry is registered under its tags before it is stored and checked again
// after: a purge either comes first and is seen by one of the checks, or finds the entry
// registered and drops it after it was stored.
func (m *Manager) storeL1(key string, e *entry, since time.Time) bool {
	m.mu.Lock()
	if m.purgedSince(e.tags, since) {
		m.mu.Unlock()
		return false
	}
	for _, t := range e.tags {
		keys := m.index[t]
		if keys == nil {
			keys = map[string]*entry{}
			m.index[t] = keys
		}
		keys[key] = e
	}
	m.mu.Unlock()
	m.l1.Set(key, e)
	m.mu.Lock()
	stale := m.purgedSince(e.tags, since)
	m.mu.Unlock()
	if stale {
		m.l1.Invalidate(key)
		return false
	}
	return true
}

// recordPurge records that tags were purged at time at and drops their entries from L1.
func (m *Manager) recordPurge(tags []string, at time.Time) {
	var keys []string
	m.mu.Lock()
	for _, t := range tags {
		if p, ok := m.purges[t]; !ok || at.After(p) {
			m.purges[t] = at
		}
		for k := range m.index[t] {
			keys = append(keys, k)
		}
		delete(m.index, t)
	}
	m.mu.Unlock()
	for _, k := range keys {
		m.l1.Invalidate(k)
	}
}

// purgedAt returns when this process last heard of tag's purge.
func (m *Manager) purgedAt(tag string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.purges[tag]
	return p, ok
}

// sweep forgets purges older than recordRetention, every 10s until Close.
func (m *Manager) sweep() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.mu.Lock()
			for tag, p := range m.purges {
				if now.Sub(p) > recordRetention+m.cfg.Settle {
					delete(m.purges, tag)
				}
			}
			m.mu.Unlock()
		}
	}
}

// getL1 returns key's value from L1 if it holds one of type T.
func getL1[T any](m *Manager, key string) (T, bool) {
	if e, ok := m.l1.GetIfPresent(key); ok {
		if v, ok := e.value.(T); ok {
			m.m.l1Hit.Inc()
			return v, true
		}
	}
	m.m.l1Miss.Inc()
	var zero T
	return zero, false
}

// getL2 returns key's value from L2, and stores it in L1; it waits at most L2Timeout.
func getL2[T any](ctx context.Context, m *Manager, key string) (T, bool) {
	var zero T
	if m.l2 == nil {
		return zero, false
	}
	r, ok := m.l2.get(ctx, key)
	if !ok {
		return zero, false
	}
	var v T
	if err := json.Unmarshal(r.value, &v); err != nil {
		m.m.lookups.WithLabelValues(layerL2, outcomeError).Inc()
		m.logger.Warn("cache: undecodable L2 value", zap.String("key", key), zap.Error(err))
		return zero, false
	}
	m.m.lookups.WithLabelValues(layerL2, outcomeHit).Inc()
	if ttl := time.Until(r.expires); ttl > 0 {
		m.storeL1(key, &entry{value: v, size: len(r.value), tags: r.tags, ttl: ttl}, r.loaded)
	}
	return v, true
}

// Get returns the value of key if L1 or L2 holds one of type T (decoded from its JSON in
// L2). A key holds values of one type: a value of another type is a miss. It waits for
// Valkey at most Config.L2Timeout.
func Get[T any](ctx context.Context, m *Manager, key string) (T, bool) {
	if v, ok := getL1[T](m, key); ok {
		return v, true
	}
	return getL2[T](ctx, m, key)
}

// Set stores v under key for ttl, carrying tags (Invalidate of any of them drops it), in L1
// now and in L2 in the background. v must encode to JSON (otherwise nothing is stored and
// the error is logged) and must not be changed afterwards: L1 keeps it as it is. Set takes
// v as current: a value computed before an Invalidate of one of its tags and set after it
// stays; GetOrLoad, which knows when its load started, does not store such a value.
func Set[T any](ctx context.Context, m *Manager, key string, v T, ttl time.Duration, tags ...string) {
	set(m, key, v, ttl, tags, time.Now())
}

// set stores v, loaded at since, under key in both layers, unless one of its tags was
// purged since.
func set[T any](m *Manager, key string, v T, ttl time.Duration, tags []string, since time.Time) {
	if ttl <= 0 {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		m.logger.Error("cache: value not stored: it does not encode to JSON", zap.String("key", key), zap.Error(err))
		return
	}
	tags = cloneTags(tags)
	if !m.storeL1(key, &entry{value: v, size: len(b), tags: tags, ttl: ttl}, since) {
		return
	}
	if m.l2 != nil {
		m.l2.put(l2Write{key: key, value: b, tags: tags, ttl: ttl, loaded: since})
	}
}

// cloneTags copies tags without duplicates, so that the caller's slice may change.
func cloneTags(tags []string) []string {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// GetOrLoad returns key's value from L1, else from L2, else from load, which it runs once
// for all the goroutines of this instance that miss key at the same time (the others wait
// for its result, or for their own ctx; one that misses key after an invalidation of one of
// tags does not wait for a load that started before it, but loads again). A loaded value
// is stored for ttl under tags in L1 and, in the background, in L2; it is not stored when
// one of its tags was invalidated while it loaded. load's error is returned (nothing is
// cached); a panic of load is returned as a *panics.Error. When the goroutine that ran load
// gave up (its ctx ended), the waiters whose ctx is still live load again.
func GetOrLoad[T any](ctx context.Context, m *Manager, key string, ttl time.Duration, tags []string, load func(ctx context.Context) (T, error)) (T, error) {
	return GetOrLoadTagged(ctx, m, key, ttl, tags, func(ctx context.Context) (T, []string, error) {
		v, err := load(ctx)
		return v, nil, err
	})
}

// GetOrLoadTagged is GetOrLoad for a value whose tags depend on what it holds (a page of
// a feed carries the tag of each item on it): load returns them, and the value is stored
// under tags and those.
func GetOrLoadTagged[T any](ctx context.Context, m *Manager, key string, ttl time.Duration, tags []string, load func(ctx context.Context) (T, []string, error)) (T, error) {
	var zero T
	if v, ok := getL1[T](m, key); ok {
		return v, nil
	}
	for {
		m.flightMu.Lock()
		f, waiting := m.flights[key]
		if waiting {
			m.mu.Lock()
			waiting = !m.purgedSince(f.tags, f.start)
			m.mu.Unlock()
		}
		if !waiting { // none in flight, or one that started before a purge of its tags
			f = &flight{done: make(chan struct{}), tags: tags, start: time.Now()}
			m.flights[key] = f
		}
		m.flightMu.Unlock()
		if !waiting {
			f.value, f.err = lead(ctx, m, key, ttl, tags, load)
			m.flightMu.Lock()
			if m.flights[key] == f {
				delete(m.flights, key)
			}
			m.flightMu.Unlock()
			close(f.done)
			if f.err != nil {
				return zero, f.err
			}
			return f.value.(T), nil
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		if f.err != nil {
			if (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue // the leader's request ended, not ours
			}
			return zero, f.err
		}
		v, ok := f.value.(T)
		if !ok {
			return zero, fmt.Errorf("cache: key %q is loaded as %T, not %T", key, f.value, zero)
		}
		return v, nil
	}
}

// lead is the work of a flight: L1 again (a flight that just ended may have filled it),
// L2, then load.
func lead[T any](ctx context.Context, m *Manager, key string, ttl time.Duration, tags []string, load func(ctx context.Context) (T, []string, error)) (T, error) {
	if e, ok := m.l1.GetIfPresent(key); ok {
		if v, ok := e.value.(T); ok {
			return v, nil
		}
	}
	if v, ok := getL2[T](ctx, m, key); ok {
		return v, nil
	}
	since := time.Now()
	v, more, err := runLoad(ctx, m, load)
	if err != nil {
		return v, err
	}
	set(m, key, v, ttl, append(slices.Clip(tags), more...), since)
	return v, nil
}

// runLoad runs load, its panic recovered into an error, and counts it.
func runLoad[T any](ctx context.Context, m *Manager, load func(ctx context.Context) (T, []string, error)) (v T, tags []string, err error) {
	defer func() {
		var pe *panics.Error
		switch {
		case errors.As(err, &pe):
			m.m.loads.WithLabelValues("panic").Inc()
		case err != nil:
			m.m.loads.WithLabelValues("error").Inc()
		default:
			m.m.loads.WithLabelValues("ok").Inc()
		}
	}()
	defer panics.Recover(m.logger, whereLoad, &err)
	return load(ctx)
}

// Invalidate drops every entry carrying any of tags: from this instance's L1 first, then
// from L2 and from the L1 of every instance sharing the Valkey, waiting (at most
// Config.AckWait) until each of them has acknowledged. Values loaded before it are not
// stored afterwards. It returns an error when Valkey could not be reached (the purge is
// retried in the background until it can) or an instance did not acknowledge in time; this
// instance's L1 is purged either way. A tag must not contain white space.
func (m *Manager) Invalidate(ctx context.Context, tags ...string) error {
	tags = cloneTags(tags)
	if len(tags) == 0 {
		return nil
	}
	for _, t := range tags {
		if t == "" || strings.ContainsFunc(t, unicode.IsSpace) {
			return fmt.Errorf("cache: invalid tag %q: empty or with white space", t)
		}
	}
	m.recordPurge(tags, time.Now())
	m.m.invalidations.WithLabelValues("local").Add(float64(len(tags)))
	if m.l2 == nil {
		return nil
	}
	return m.l2.purge(ctx, tags)
}
