package edgecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/maypok86/otter/v2"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
)

// stores holds every cache's store across config loads, so that L1 survives `caddy reload`:
// a config naming the same cache with the same L1 size and Valkey settings gets the same
// store.
var stores = caddy.NewUsagePool()

// store is one named cache's shared state: the in-memory L1, the optional Valkey L2, the
// purge records and the in-flight upstream requests being coalesced.
//
// L1 is an otter cache bounded by the approximate bytes of its entries. Otter's eviction is
// W-TinyLFU: a small admission window plus a frequency sketch that only lets a new entry
// displace one that is used less often. For an edge cache that is the right trade: hot pages
// (feeds, popular stories) stay resident while a crawl over millions of cold URLs passes
// through the window without flushing them, which plain LRU cannot do; and otter's reads are
// lock-free, so hits scale with cores.
//
// Purges are records "tag T purged at time P" rather than deletions: an entry whose upstream
// request was sent before P and that carries T is invalid. That makes purging a tag O(1) on
// every node, covers L1 and entries arriving late from L2 alike, and needs no reverse index.
// Records older than maxTTL+settle (no entry lives longer) are swept.
//
// The records are bounded (maxPurges records, and maxPurges×purgeRecordBytes bytes of
// tags): when a purge goes beyond, the oldest tenth is dropped and the purge floor rises to
// the newest record dropped. Every entry requested before the floor (plus settle) is then
// invalid, whatever its tags: dropping a record never brings purged content back; at worst a
// flood of purges makes older entries be fetched again. The floor is swept like a record.
type store struct {
	name   string
	l1     *otter.Cache[string, *entry]
	maxTTL time.Duration
	settle time.Duration // see purgedSince
	l2     *l2           // nil without Valkey
	logger *zap.Logger

	purgeMu    sync.RWMutex
	purges     map[string]time.Time
	purgeBytes int          // bytes the records take (purgeRecordWeight each)
	maxPurges  int          // at most this many records (and maxPurges*purgeRecordBytes bytes); 0: unbounded
	nPurges    atomic.Int64 // len(purges), read without the lock on every hit
	purgeFloor atomic.Int64 // Unix ns: entries requested before it (plus settle) are invalid; 0: none
	flightMu   sync.Mutex
	flights    map[string]*flight

	stop chan struct{}
	done sync.WaitGroup
}

// storeConfig is what identifies a store in the pool.
type storeConfig struct {
	name      string
	maxBytes  uint64
	maxTTL    time.Duration
	valkey    valkeyconn.Config // no Addresses: L1 only
	timeout   time.Duration
	retry     time.Duration
	queue     int
	purgeWait time.Duration
	settle    time.Duration
	heuristic float64
	targeted  string // Handler.TargetedFields, comma-separated
	maxPurges int
}

// takeStore takes a reference to the pooled store of cfg, making it on first use.
func takeStore(cfg storeConfig, logger *zap.Logger) (*store, error) {
	key := cfg.poolKey()
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newStore(cfg, logger)
	})
	if err != nil {
		return nil, err
	}
	return v.(*store), nil
}

func (c storeConfig) poolKey() string {
	v := c.valkey.Key()
	c.valkey = valkeyconn.Config{}
	return fmt.Sprintf("%+v|valkey=%s", c, v)
}

func newStore(cfg storeConfig, logger *zap.Logger) (*store, error) {
	s := &store{
		name:      cfg.name,
		maxTTL:    cfg.maxTTL,
		settle:    cfg.settle,
		logger:    logger,
		maxPurges: cfg.maxPurges,
		purges:    map[string]time.Time{},
		flights:   map[string]*flight{},
		stop:      make(chan struct{}),
	}
	var err error
	s.l1, err = otter.New(&otter.Options[string, *entry]{
		MaximumWeight: cfg.maxBytes,
		Weigher: func(key string, e *entry) uint32 {
			return uint32(min(len(key)+e.size, 1<<31))
		},
		ExpiryCalculator: otter.ExpiryCreatingFunc(func(e otter.Entry[string, *entry]) time.Duration {
			return e.Value.ttl
		}),
		OnDeletion: func(e otter.DeletionEvent[string, *entry]) {
			if e.WasEvicted() && e.Cause == otter.CauseOverflow {
				evictions.WithLabelValues(s.name).Inc()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if cfg.valkey.Configured() {
		s.l2, err = newL2(s, cfg)
		if err != nil {
			return nil, err
		}
	}
	panics.Go(&s.done, logger, whereSweep, s.sweep)
	return s, nil
}

// Destruct stops the store once no config uses it.
func (s *store) Destruct() error {
	close(s.stop)
	s.done.Wait()
	if s.l2 != nil {
		s.l2.close()
	}
	s.l1.InvalidateAll()
	return nil
}

// sweep drops purge records no entry can be older than.
func (s *store) sweep() {
	t := time.NewTicker(min(s.maxTTL, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.purgeMu.Lock()
			for tag, at := range s.purges {
				if now.Sub(at) > s.maxTTL+s.settle {
					delete(s.purges, tag)
					s.purgeBytes -= purgeRecordWeight(tag)
				}
			}
			s.nPurges.Store(int64(len(s.purges)))
			if f := s.purgeFloor.Load(); f != 0 && now.Sub(time.Unix(0, f)) > s.maxTTL+s.settle {
				s.purgeFloor.Store(0)
			}
			s.purgeMu.Unlock()
		}
	}
}

// recordPurge makes every entry fetched before at that carries one of tags invalid.
func (s *store) recordPurge(tags []string, at time.Time) {
	s.purgeMu.Lock()
	for _, t := range tags {
		old, ok := s.purges[t]
		if !ok {
			s.purgeBytes += purgeRecordWeight(t)
		}
		if at.After(old) {
			s.purges[t] = at
		}
	}
	s.trimPurges()
	s.nPurges.Store(int64(len(s.purges)))
	s.purgeMu.Unlock()
}

// purgeRecordBytes is the average size of a record the byte bound of the records allows
// for; purgeRecordOverhead is what a record takes besides its tag (map slot, time, string
// header).
const (
	purgeRecordBytes    = 128
	purgeRecordOverhead = 64
)

// defaultMaxPurges bounds the purge records by default: about 12 MiB at most.
const defaultMaxPurges = 100_000

func purgeRecordWeight(tag string) int { return len(tag) + purgeRecordOverhead }

// trimPurges keeps the purge records within their bounds, dropping the oldest tenth (or
// more, to get within the byte bound) and raising the purge floor to the newest dropped.
// Called with purgeMu held.
func (s *store) trimPurges() {
	maxBytes := s.maxPurges * purgeRecordBytes
	if s.maxPurges <= 0 || (len(s.purges) <= s.maxPurges && s.purgeBytes <= maxBytes) {
		return
	}
	type rec struct {
		at     time.Time
		weight int
	}
	recs := make([]rec, 0, len(s.purges))
	for tag, at := range s.purges {
		recs = append(recs, rec{at, purgeRecordWeight(tag)})
	}
	slices.SortFunc(recs, func(a, b rec) int { return b.at.Compare(a.at) }) // newest first
	keepN, keepBytes := s.maxPurges-s.maxPurges/10, maxBytes-maxBytes/10
	n, bytes := 0, 0
	for n < len(recs) && n < keepN && bytes+recs[n].weight <= keepBytes {
		bytes += recs[n].weight
		n++
	}
	if n == len(recs) {
		return
	}
	cut := recs[n].at // the newest record dropped: every record as old goes
	for tag, at := range s.purges {
		if !at.After(cut) {
			delete(s.purges, tag)
			s.purgeBytes -= purgeRecordWeight(tag)
		}
	}
	if c := cut.UnixNano(); c > s.purgeFloor.Load() {
		s.purgeFloor.Store(c)
	}
}

// purgeRecords returns the number of purge records.
func (s *store) purgeRecords() int64 { return s.nPurges.Load() }

// purgedAt returns the time of the last purge of tag this node has a record of.
func (s *store) purgedAt(tag string) (time.Time, bool) {
	s.purgeMu.RLock()
	defer s.purgeMu.RUnlock()
	at, ok := s.purges[tag]
	return at, ok
}

// purged reports whether a purge record invalidates e.
func (s *store) purged(e *entry) bool { return s.purgedSince(e.tags, e.requestTime) }

// purgedSince reports whether a response with tags, requested upstream at requestTime, is
// invalid: a tag was purged after it was requested, or less than the settle time before
// (the origin may have read it from a replica that had not yet replayed the purging write).
func (s *store) purgedSince(tags []string, requestTime time.Time) bool {
	if f := s.purgeFloor.Load(); f != 0 && requestTime.Before(time.Unix(0, f).Add(s.settle)) {
		return true
	}
	if s.nPurges.Load() == 0 {
		return false
	}
	s.purgeMu.RLock()
	defer s.purgeMu.RUnlock()
	for _, t := range tags {
		if at, ok := s.purges[t]; ok && requestTime.Before(at.Add(s.settle)) {
			return true
		}
	}
	return false
}

// l1Key is the L1 key of a variant of a response that has Vary'd fields. A response without
// any is stored under its primary key alone; one with some leaves under the primary key a
// Vary record (an entry with status 0 and only vary set) naming them.
func l1Key(primary, secondary string) string { return primary + "\n" + secondary }

// keyTag is the purge tag every entry of a primary key carries, so that purging a URL is
// purging a tag.
func keyTag(primary string) string {
	sum := sha256.Sum256([]byte(primary))
	return "key:" + hex.EncodeToString(sum[:12])
}

// lookupL1 returns the L1 entry of a request's variant, or nil, and the Vary'd field names
// L1 knows for primary (nil when it knows none). A hit on a response without Vary is one
// lookup and no allocation.
func (s *store) lookupL1(primary string, reqHeader map[string][]string) (e *entry, names []string) {
	e, ok := s.l1.GetIfPresent(primary)
	if !ok {
		return nil, nil
	}
	if e.status != 0 {
		return e, nil
	}
	names = e.vary
	if e, ok = s.l1.GetIfPresent(l1Key(primary, secondaryKey(names, reqHeader))); !ok {
		return nil, names
	}
	return e, names
}

// putL1 stores e (fetched for primary) in L1, with the Vary record when it has Vary'd fields.
func (s *store) putL1(primary string, e *entry) {
	if len(e.vary) == 0 {
		s.l1.Set(primary, e)
		return
	}
	if old, ok := s.l1.GetIfPresent(primary); !ok || old.status != 0 || !slices.Equal(old.vary, e.vary) || old.ttl < e.ttl {
		s.l1.Set(primary, &entry{vary: e.vary, ttl: e.ttl, size: entryOverhead})
	}
	s.l1.Set(l1Key(primary, e.secondary), e)
}

// flight is an upstream request other requests for the same key wait for.
type flight struct {
	key  string
	done chan struct{}
	e    *entry // the stored result, nil when it could not be shared
}

// join returns the flight of key, starting one (leader true) when there is none.
func (s *store) join(key string) (f *flight, leader bool) {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if f := s.flights[key]; f != nil {
		return f, false
	}
	f = &flight{key: key, done: make(chan struct{})}
	s.flights[key] = f
	return f, true
}

// land ends a flight with its result.
func (s *store) land(f *flight, e *entry) {
	s.flightMu.Lock()
	delete(s.flights, f.key)
	s.flightMu.Unlock()
	f.e = e
	close(f.done)
}

// put stores e, fetched for primary, in L1 and (asynchronously) L2. An incomplete entry
// stays in L1: L2 holds complete responses only.
func (s *store) put(primary string, e *entry) {
	s.putL1(primary, e)
	if s.l2 != nil && e.parts == nil {
		s.l2.put(primary, e)
	}
}

// variant returns the L1 entry stored for the variant of primary that e is, or nil.
func (s *store) variant(primary string, e *entry) *entry {
	key := primary
	if len(e.vary) > 0 {
		key = l1Key(primary, e.secondary)
	}
	if old, ok := s.l1.GetIfPresent(key); ok && old.status != 0 {
		return old
	}
	return nil
}

// purge makes the entries carrying tags invalid on this node at once and, with Valkey,
// deletes them from L2 and tells every other node, waiting up to the purge timeout. source
// labels the purge in metrics: response, admin.
func (s *store) purge(ctx context.Context, tags []string, source string) error {
	s.recordPurge(tags, time.Now())
	purges.WithLabelValues(s.name, source).Inc()
	if s.l2 == nil {
		return nil
	}
	err := s.l2.purge(ctx, tags)
	if err != nil {
		s.logger.Warn("cache purge did not reach valkey: other nodes keep their entries until they expire",
			zap.String("cache", s.name), zap.Strings("tags", tags), zap.Error(err))
	}
	return err
}
