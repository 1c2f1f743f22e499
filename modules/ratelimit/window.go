package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// windowsIDs numbers the Windows made by this process.
var windowsIDs atomic.Uint64

// numShards is the number of independently locked shards of a Windows.
const numShards = 64

// evictSample is how many keys of a full shard a new key samples to evict the least
// recently used of them (the approximated LRU of Redis).
const evictSample = 8

// Windows is an exact sliding-window log per key, in memory: for each key it keeps the times
// of the events it admitted in the last window, and admits an event only when fewer than the
// limit are there. So no span of one window ever holds more admitted events than the limit,
// wherever the span starts. A key's memory is its live events (8 bytes each, at most the
// limit) plus a fixed overhead; a key whose events have all left the window is idle and is
// dropped by Sweep or when its shard needs room. Windows imports nothing from Caddy.
type Windows struct {
	id      uint64 // orders the locking of several zones' shards (AllowAll)
	window  time.Duration
	maxKeys int64
	keys    atomic.Int64 // keys held, all shards
	seed    maphash.Seed
	shards  [numShards]shard
}

type shard struct {
	mu        sync.Mutex
	logs      map[string][]int64 // admitted events, oldest first, Unix nanoseconds
	lastSweep int64              // when makeRoom last swept the shard
	_         [32]byte           // keeps shards on separate cache lines
}

// Decision is the outcome of one event for one key.
type Decision struct {
	// Allowed is true when the key had room for the event: Allow admitted (and recorded)
	// it; AllowAll recorded it if every zone of the request allowed it.
	Allowed bool
	// Remaining is how many more events the key may make now.
	Remaining int
	// Reset is how long until the oldest event in the window leaves it, which frees one
	// event of quota: when denied, the time to wait before retrying.
	Reset time.Duration
}

// NewWindows returns windows of the given length holding at most maxKeys keys (exceeded by
// at most one key per shard that is empty when a new key lands in it). When they
// are full, a new key first drops the idle keys of its shard (at most once per sixteenth of
// a window), then evicts the least recently active of a few sampled keys: an evicted
// key starts afresh, so a flood of distinct keys makes the limiter err towards admitting,
// never towards refusing keys that are in use and never towards unbounded memory.
func NewWindows(window time.Duration, maxKeys int) *Windows {
	w := &Windows{id: windowsIDs.Add(1), window: window, maxKeys: int64(max(1, maxKeys)), seed: maphash.MakeSeed()}
	for i := range w.shards {
		w.shards[i].logs = map[string][]int64{}
	}
	return w
}

func (w *Windows) shard(key string) *shard {
	return &w.shards[maphash.String(w.seed, key)%numShards]
}

// Allow decides an event for key at now against limit, recording it when admitted.
func (w *Windows) Allow(key string, limit int, now time.Time) Decision {
	s := w.shard(key)
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	log, ok := s.logs[key]
	log = w.trim(log, t)
	if len(log) >= limit {
		d := Decision{Reset: w.reset(log, t)}
		s.logs[key] = log
		return d
	}
	if !ok {
		w.makeRoom(s, t)
		w.keys.Add(1)
	}
	log = append(log, t)
	s.logs[key] = log
	return Decision{Allowed: true, Remaining: limit - len(log), Reset: w.reset(log, t)}
}

// Record adds an event admitted elsewhere (by Valkey) to key's window, keeping at most
// limit events, so that a fallback to local windows starts from this node's recent history.
func (w *Windows) Record(key string, limit int, now time.Time) {
	s := w.shard(key)
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	log, ok := s.logs[key]
	log = w.trim(log, t)
	if !ok {
		w.makeRoom(s, t)
		w.keys.Add(1)
	}
	if len(log) >= limit {
		log = log[len(log)-limit+1:]
	}
	s.logs[key] = append(log, t)
}

// Check is one zone's part of a request decided by AllowAll: the zone's windows, the
// request's key in it, the zone's limit and whether it is a dry run (decides without
// refusing). AllowAll sets Decision.
type Check struct {
	Windows *Windows
	Key     string
	Limit   int
	DryRun  bool

	// Decision is the zone's: Allowed when the key has room for the request; Remaining and
	// Reset count the request only if it was admitted (AllowAll returned true).
	Decision Decision

	shard uint64 // index of Key's shard in Windows
}

// maxLocked is how many checks AllowAll orders without allocating.
const maxLocked = 8

// AllowAll decides one request in several zones at once: the request is admitted when every
// zone that is not a dry run allows it, and is then recorded in each zone that allows it; a
// refused request is recorded in none (a zone that refuses consumes nothing of the others').
// The shards of all the keys stay locked from the checks to the records, taken in one global
// order (windows, then shard) so that concurrent calls cannot deadlock: no other request sees
// the zones between the check and the record, and the decision is as exact as Allow's. It
// returns whether the request was admitted.
func AllowAll(checks []Check, now time.Time) bool {
	if len(checks) == 1 {
		c := &checks[0]
		c.Decision = c.Windows.Allow(c.Key, c.Limit, now)
		return c.Decision.Allowed || c.DryRun
	}
	var buf [maxLocked]int
	order := buf[:0]
	for i := range checks {
		c := &checks[i]
		c.shard = maphash.String(c.Windows.seed, c.Key) % numShards
		order = append(order, i)
	}
	before := func(a, b *Check) bool {
		if a.Windows.id != b.Windows.id {
			return a.Windows.id < b.Windows.id
		}
		return a.shard < b.shard
	}
	for i := 1; i < len(order); i++ { // insertion sort: a handful of zones
		for j := i; j > 0 && before(&checks[order[j]], &checks[order[j-1]]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	var prev *shard
	for _, i := range order {
		c := &checks[i]
		if s := &c.Windows.shards[c.shard]; s != prev { // two zones never share Windows, but be safe
			s.mu.Lock()
			prev = s
		}
	}
	t := now.UnixNano()
	admit := true
	for i := range checks {
		c := &checks[i]
		w := c.Windows
		s := &w.shards[c.shard]
		log, ok := s.logs[c.Key]
		log = w.trim(log, t)
		if ok {
			s.logs[c.Key] = log
		}
		c.Decision = Decision{Allowed: len(log) < c.Limit, Remaining: max(0, c.Limit-len(log)), Reset: w.reset(log, t)}
		admit = admit && (c.Decision.Allowed || c.DryRun)
	}
	if admit {
		for i := range checks {
			c := &checks[i]
			if !c.Decision.Allowed {
				continue
			}
			w := c.Windows
			s := &w.shards[c.shard]
			log, ok := s.logs[c.Key]
			if !ok {
				w.makeRoom(s, t)
				w.keys.Add(1)
			}
			log = append(log, t)
			s.logs[c.Key] = log
			c.Decision.Remaining = c.Limit - len(log)
			c.Decision.Reset = w.reset(log, t)
		}
	}
	prev = nil
	for _, i := range order {
		c := &checks[i]
		if s := &c.Windows.shards[c.shard]; s != prev {
			s.mu.Unlock()
			prev = s
		}
	}
	return admit
}

// trim drops the events that have left the window (a, t] where a = t - window.
func (w *Windows) trim(log []int64, t int64) []int64 {
	cut := t - int64(w.window)
	i := 0
	for i < len(log) && log[i] <= cut {
		i++
	}
	if i == len(log) {
		return log[:0]
	}
	return log[i:]
}

// reset is the time until the oldest event of a trimmed log leaves the window.
func (w *Windows) reset(log []int64, t int64) time.Duration {
	if len(log) == 0 {
		return 0
	}
	return time.Duration(log[0] + int64(w.window) - t)
}

// makeRoom frees a slot for a new key when the windows are full: the idle keys of the
// shard first, then the least recently active of evictSample sampled keys of the shard.
// The caller holds s.mu.
func (w *Windows) makeRoom(s *shard, t int64) {
	if w.keys.Load() < w.maxKeys {
		return
	}
	if t-s.lastSweep >= int64(w.window/16) {
		s.lastSweep = t
		w.sweepShard(s, t)
		if w.keys.Load() < w.maxKeys {
			return
		}
	}
	if len(s.logs) == 0 {
		return
	}
	var victim string
	newest := int64(-1 << 63)
	n := 0
	for k, log := range s.logs { // map order is random: a sample
		last := log[len(log)-1]
		if victim == "" || last < newest {
			victim, newest = k, last
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(s.logs, victim)
	w.keys.Add(-1)
}

// sweepShard drops the idle keys of a shard. The caller holds s.mu.
func (w *Windows) sweepShard(s *shard, t int64) {
	cut := t - int64(w.window)
	for k, log := range s.logs {
		if len(log) == 0 || log[len(log)-1] <= cut {
			delete(s.logs, k)
			w.keys.Add(-1)
		}
	}
}

// Sweep drops every idle key; a zone calls it periodically.
func (w *Windows) Sweep(now time.Time) {
	t := now.UnixNano()
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		w.sweepShard(s, t)
		s.mu.Unlock()
	}
}

// Len returns the number of keys held.
func (w *Windows) Len() int {
	return int(w.keys.Load())
}
