package edgecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/internal/valkeytags"
)

// l2 is a store's shared second level in Valkey, and the purge fan-out between edge nodes.
// It works the same on one Valkey server and on a Valkey Cluster.
//
// Keys, under muejam:cache:<store>: (hashes keep them short whatever the URL). On a cluster
// a command or script may only touch keys of one slot, and a key's slot is the hash of its
// hash tag, the part in braces; the tags are chosen so that what one command touches shares
// one, and so that the rest spreads over the cluster:
//
//	{<h(primary)>}:v                 the Vary'd field names of a primary key, "\n"-joined, as long-lived as its longest variant
//	{<h(primary)>}:e:<h(secondary)>  an entry: one variant of the primary key, PX its retention
//	{t:<tag>}:m                      the keys of the entries carrying a tag, as long-lived as its longest entry
//	{t:<tag>}:p                      when the tag was last purged (µs, Valkey's clock), PX max_ttl + purge_settle
//
// with h a hash. A response's Vary record and its variants share the primary key's slot, so
// that one MGET reads the record with the variant L1's record predicts, and one script writes
// an entry with the record; different URLs spread over the slots. A tag's member set and its
// purge record share the tag's slot (a tag holding '}' only moves its slot: both keys still
// share it), so that one script answers "add this entry; was the tag purged since?" and
// another "record a purge; which entries carry the tag?". An entry and its tags are in
// different slots, so storing an entry cannot be one atomic script; the writer and the purge
// are ordered so that this loses nothing (see write and purge).
//
// Purges fan out on sharded pub/sub (SSUBSCRIBE, SPUBLISH: Valkey or Redis 7.0 or later, on a
// cluster and on one server alike) on two channels sharing the hash tag {<store>}, so that
// both live on the shard that serves their slot: every node subscribes there, and SPUBLISH
// counts every node's subscription.
//
//	muejam:cache:{<store>}:purge       "<node> <id> <tag>..." from the node that purged
//	muejam:cache:{<store>}:purge-ack   "<node> <id>" from each node that applied it
//
// Reads are on the request path: one MGET (Vary record + the variant L1's Vary record
// predicts), a second GET only when the prediction was wrong, each bounded by the timeout
// and guarded by the connection's breaker, so a slow or dead Valkey costs one timeout and then
// nothing until it answers again. Writes never are: they go through a bounded queue to a
// writer goroutine, and are dropped (and counted) when the queue is full.
type l2 struct {
	s        *store
	conn     *valkeyconn.Conn
	prefix   string
	bus      *valkeytags.Bus // the purge fan-out
	records  valkeytags.Records
	timeout  time.Duration
	purgeTO  time.Duration
	heur     float64
	targeted []string // targeted cache-control fields (RFC 9213)
	queue    chan l2Write
	keys     atomic.Int64 // keys of the primaries at the last probe
	memory   atomic.Int64 // used_memory of the primaries at the last probe
	ctx      context.Context
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

// Where the cache recovers panics: the where label of muejam_edge_panics_total.
const (
	whereServe      = "edge_cache.serve"
	whereRevalidate = "edge_cache.revalidate"
	whereSweep      = "edge_cache.sweep"
	whereGet        = "edge_cache.l2_get"
	whereWriter     = "edge_cache.l2_writer"
	wherePurge      = "edge_cache.purge"
	whereAck        = "edge_cache.purge_ack"
	whereSubscriber = "edge_cache.subscriber"
	whereProbe      = "edge_cache.l2_probe"
)

var panicSites = []string{whereServe, whereRevalidate, whereSweep, whereGet, whereWriter, wherePurge, whereAck, whereSubscriber, whereProbe}

// l2Write is an entry waiting in the queue to be written.
type l2Write struct {
	key, varyKey string
	tags         []string // the entry's purge tags
	value        []byte
	vary         string
	ttl          time.Duration
	requestTime  time.Time // when the entry's upstream request was sent
}

// writeEntry stores an entry and the Vary record of its primary key (one slot).
//
//	KEYS[1] entry key, KEYS[2] Vary record key
//	ARGV[1] entry, ARGV[2] retention ms, ARGV[3] Vary'd names
var writeEntry = valkeytags.NewScript(`
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local vttl = redis.call('PTTL', KEYS[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', math.max(ttl, vttl))
return 1
`)

func newL2(s *store, cfg storeConfig) (*l2, error) {
	conn, err := valkeyconn.New(cfg.valkey, valkeyconn.Options{
		Name:    "cache valkey " + cfg.valkey.String(),
		OpenFor: cfg.retry,
		Logger:  s.logger,
		OnChange: func(from, to breaker.State) {
			s.logger.Warn("cache valkey breaker changed state",
				zap.String("cache", s.name), zap.Stringer("valkey", cfg.valkey), zap.Stringer("from", from), zap.Stringer("to", to))
		},
	})
	if err != nil {
		return nil, err
	}
	l := &l2{
		s:        s,
		conn:     conn,
		prefix:   "muejam:cache:" + s.name + ":",
		records:  valkeytags.Records{PurgedSince: s.purgedSince, PurgedAt: s.purgedAt, Record: s.recordPurge, Settle: s.settle},
		timeout:  cfg.timeout,
		purgeTO:  cfg.purgeWait,
		heur:     cfg.heuristic,
		targeted: strings.FieldsFunc(cfg.targeted, func(r rune) bool { return r == ',' }),
		queue:    make(chan l2Write, cfg.queue),
	}
	l.bus = valkeytags.NewBus(conn, valkeytags.BusOptions{
		Channel:         "muejam:cache:{" + s.name + "}:purge",
		AckChannel:      "muejam:cache:{" + s.name + "}:purge-ack",
		Logger:          s.logger.With(zap.String("cache", s.name)),
		SubscriberWhere: whereSubscriber,
		AckWhere:        whereAck,
		AckTimeout:      cfg.purgeWait,
		Call:            l.call,
		OnSubscribed:    l.onSubscribed,
		OnMessage: func(tags []string) {
			s.recordPurge(tags, time.Now())
			purges.WithLabelValues(s.name, "remote").Inc()
		},
	})
	l.ctx, l.cancel = context.WithCancel(context.Background())
	panics.Go(&l.done, s.logger, whereWriter, l.writer)
	panics.Go(&l.done, s.logger, whereSubscriber, func() { l.bus.Subscribe(l.ctx) })
	panics.Go(&l.done, s.logger, whereProbe, l.probe)
	return l, nil
}

func (l *l2) close() {
	l.cancel()
	l.done.Wait()
	l.conn.Close()
}

func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// entryKey and varyRecordKey share the primary key's hash tag.
func (l *l2) entryKey(primary, secondary string) string {
	return l.prefix + "{" + hashKey(primary) + "}:e:" + hashKey(secondary)
}
func (l *l2) varyRecordKey(primary string) string { return l.prefix + "{" + hashKey(primary) + "}:v" }

// tagKeys are a tag's member set and purge record, which share the tag's hash tag.
func (l *l2) tagKeys(tag string) []string { return valkeytags.Keys(l.prefix, tag) }

// recordRetention is how long a tag's purge record is kept in Valkey: as long as this
// node's records in memory (store.sweep), past which no entry fetched before the purge can
// still be waiting to be written.
func (l *l2) recordRetention() time.Duration { return max(time.Millisecond, l.s.maxTTL+l.s.settle) }

// call runs fn against Valkey under the breaker and the timeout (valkeyconn.Conn.Call, which
// also turns a panic into an error), and records its duration and failure.
func (l *l2) call(ctx context.Context, timeout time.Duration, where string, fn func(ctx context.Context, c valkey.Client) error) error {
	took, err := l.conn.Call(ctx, timeout, where, fn)
	if errors.Is(err, valkeyconn.ErrNotConnected) || errors.Is(err, breaker.ErrOpen) {
		return err // no call made
	}
	l2Seconds.WithLabelValues(l.s.name).Observe(took.Seconds())
	if err != nil {
		l2Errors.WithLabelValues(l.s.name).Inc()
	}
	return err
}

// get returns the L2 entry of a request's variant, or nil on a miss or any error. guess
// are the Vary'd names L1 knows for primary.
func (l *l2) get(ctx context.Context, primary string, guess []string, reqHeader map[string][]string) *entry {
	secondary := secondaryKey(guess, reqHeader)
	var e *entry
	err := l.call(ctx, l.timeout, whereGet, func(ctx context.Context, c valkey.Client) error {
		vals, err := c.Do(ctx, c.B().Mget().Key(l.varyRecordKey(primary), l.entryKey(primary, secondary)).Build()).ToArray()
		if err != nil || len(vals) != 2 {
			return err
		}
		rec, err := vals[0].ToString()
		if valkey.IsValkeyNil(err) {
			return nil // no entry of this primary key
		}
		if err != nil {
			return err
		}
		var names []string
		if rec != "" {
			names = strings.Split(rec, "\n")
		}
		raw := vals[1]
		if !slices.Equal(names, guess) {
			secondary = secondaryKey(names, reqHeader)
			raw, err = c.Do(ctx, c.B().Get().Key(l.entryKey(primary, secondary)).Build()).ToMessage()
			if err != nil && !valkey.IsValkeyNil(err) {
				return err
			}
		}
		b, err := raw.AsBytes()
		if valkey.IsValkeyNil(err) {
			return nil
		}
		if err != nil {
			return err
		}
		e, err = unmarshalEntry(b, l.heur, l.targeted...)
		if err != nil {
			return err
		}
		e.vary, e.secondary = names, secondary
		return nil
	})
	if err != nil {
		return nil
	}
	return e
}

// put queues e, fetched for primary, for writing; a full queue drops it.
func (l *l2) put(primary string, e *entry) {
	w := l2Write{
		key:         l.entryKey(primary, e.secondary),
		varyKey:     l.varyRecordKey(primary),
		tags:        e.tags,
		value:       e.marshal(nil),
		vary:        strings.Join(e.vary, "\n"),
		ttl:         e.ttl,
		requestTime: e.requestTime,
	}
	select {
	case l.queue <- w:
	default:
		l2Dropped.WithLabelValues(l.s.name).Inc()
	}
}

// writer writes queued entries until the store stops.
func (l *l2) writer() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case w := <-l.queue:
			if l.s.purgedSince(w.tags, w.requestTime) {
				continue // purged while it waited: nothing to share
			}
			_ = l.call(l.ctx, 4*l.timeout, whereWriter, func(ctx context.Context, c valkey.Client) error {
				return l.write(ctx, c, w)
			})
		}
	}
}

// write stores an entry in L2 so that a purge of one of its tags, made through any node at
// any moment, is not undone by it: the entry is written first (one script in its primary
// key's slot, with its Vary record), then valkeytags.Tag adds it to its tags' member sets,
// judges it against their purge records and this node's (the store's, as for L1), and
// deletes it again if it was fetched before a purge (or less than purge_settle after it).
func (l *l2) write(ctx context.Context, c valkey.Client, w l2Write) error {
	ttl := strconv.FormatInt(max(1, w.ttl.Milliseconds()), 10)
	err := writeEntry.Run(ctx, c, valkey.LuaExec{
		Keys: []string{w.key, w.varyKey},
		Args: []string{valkey.BinaryString(w.value), ttl, w.vary},
	})[0].Error()
	if err != nil || len(w.tags) == 0 {
		return err
	}
	return valkeytags.Tag(ctx, c, l.prefix, w.key, w.tags, w.ttl, w.requestTime, l.records)
}

// purge deletes the tags' entries from Valkey, publishes the purge and waits (within the
// purge timeout) until every node subscribed to the channel has acknowledged it, so that
// once it returns no node serves a purged entry. It returns an error when Valkey could not
// be reached or some node did not acknowledge in time.
//
// Per tag, one script in the tag's slot records the purge and pops the tag's member set
// (see valkeytags.Tag for why a concurrent write loses nothing); then the members, which live in
// many slots, are deleted by single-key DELs in one pipeline (valkey-go sends each to its
// slot's node), with the SPUBLISH beside them. A member whose DEL fails goes back into its
// tag's set, so that purging the tag again deletes it. The message goes out even when some
// tag's shard failed: the other nodes' records then honour the purge while L2 may not.
func (l *l2) purge(ctx context.Context, tags []string) error {
	callErr, ackErr := l.bus.Purge(ctx, l.prefix, tags, l.recordRetention(), l.purgeTO, wherePurge)
	return errors.Join(callErr, ackErr)
}

// onSubscribed empties L1 on every subscription to the purge channel after the first:
// purges published while this node was not listening are lost, and the entries they
// invalidated may be in L1.
func (l *l2) onSubscribed(again bool) {
	if again {
		l.s.l1.InvalidateAll()
		l.s.logger.Warn("cache purge channel resubscribed: emptied L1, purges may have been missed",
			zap.String("cache", l.s.name))
	}
}

// sizes returns the key count and memory of Valkey at the last probe.
func (l *l2) sizes() (keys, bytes int64) { return l.keys.Load(), l.memory.Load() }

// probe measures Valkey's key count and memory every 15s until the store stops.
func (l *l2) probe() {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		_ = l.call(l.ctx, time.Second, whereProbe, l.measure)
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// measure sums DBSIZE and used_memory over the primaries (one server, or the cluster's
// primaries: replicas hold copies) the client knows, asking them in parallel. Nodes that do
// not answer are left out (a dead primary the client has not forgotten yet); it fails only
// when no primary answers.
func (l *l2) measure(ctx context.Context, c valkey.Client) error {
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		keys, mem, primes int64
		errs              []error
	)
	for addr, n := range c.Nodes() {
		wg.Go(func() {
			var err error
			defer func() {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}()
			defer panics.Recover(l.s.logger, whereProbe, &err)
			res := n.DoMulti(ctx, n.B().Info().Section("replication").Build(), n.B().Info().Section("memory").Build(), n.B().Dbsize().Build())
			role, err := res[0].ToString()
			if err != nil {
				err = fmt.Errorf("%s: %w", addr, err)
				return
			}
			if infoField(role, "role") != "master" {
				return
			}
			memory, err := res[1].ToString()
			if err != nil {
				err = fmt.Errorf("%s: %w", addr, err)
				return
			}
			size, err := res[2].AsInt64()
			if err != nil {
				err = fmt.Errorf("%s: %w", addr, err)
				return
			}
			used, _ := strconv.ParseInt(infoField(memory, "used_memory"), 10, 64)
			mu.Lock()
			keys, mem, primes = keys+size, mem+used, primes+1
			mu.Unlock()
		})
	}
	wg.Wait()
	if primes == 0 {
		return errors.Join(append(errs, errors.New("no primary answered"))...)
	}
	l.keys.Store(keys)
	l.memory.Store(mem)
	return nil
}

// infoField returns the value of a field of an INFO reply ("name:value" lines).
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
