package edgecache

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
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
	s          *store
	conn       *valkeyconn.Conn
	prefix     string
	channel    string
	ackChannel string
	node       string // this process's id in purge messages
	timeout    time.Duration
	purgeTO    time.Duration
	heur       float64
	targeted   []string // targeted cache-control fields (RFC 9213)
	queue      chan l2Write
	subscribed atomic.Bool   // a subscription to the purge channel was confirmed before
	listening  atomic.Bool   // a subscription was confirmed since subscribe last called Receive
	purgeSeq   atomic.Uint64 // ids of this node's purges
	acks       sync.Map      // purge id → *ackWait
	keys       atomic.Int64  // keys of the primaries at the last probe
	memory     atomic.Int64  // used_memory of the primaries at the last probe
	ctx        context.Context
	cancel     context.CancelFunc
	done       sync.WaitGroup
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

// script is a Lua script run with EVALSHA, and with EVAL where the node does not know it
// (NOSCRIPT: a node restarted, or a replica just promoted). valkey-go's Lua.ExecMulti is not
// used: it loads the script on every node the client knows before each run, and fails when
// one of them (a dead primary not yet forgotten) does not answer.
type script struct{ src, sha string }

func newScript(src string) script {
	sum := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(sum[:])}
}

// run runs the script once for each of runs, pipelined; each run's keys are in one slot,
// different runs may be in different slots (valkey-go sends each to its slot's node).
func (s script) run(ctx context.Context, c valkey.Client, runs ...valkey.LuaExec) []valkey.ValkeyResult {
	cmds := make(valkey.Commands, len(runs))
	for i, r := range runs {
		cmds[i] = c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(r.Keys))).Key(r.Keys...).Arg(r.Args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	var again valkey.Commands
	var at []int
	for i, r := range res {
		if e, ok := valkey.IsValkeyErr(r.Error()); ok && e.IsNoScript() {
			again = append(again, c.B().Eval().Script(s.src).Numkeys(int64(len(runs[i].Keys))).Key(runs[i].Keys...).Arg(runs[i].Args...).Build())
			at = append(at, i)
		}
	}
	if len(again) > 0 {
		for j, r := range c.DoMulti(ctx, again...) {
			res[at[j]] = r
		}
	}
	return res
}

// writeEntry stores an entry and the Vary record of its primary key (one slot).
//
//	KEYS[1] entry key, KEYS[2] Vary record key
//	ARGV[1] entry, ARGV[2] retention ms, ARGV[3] Vary'd names
var writeEntry = newScript(`
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local vttl = redis.call('PTTL', KEYS[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', math.max(ttl, vttl))
return 1
`)

// tagEntry adds an entry to a tag's member set, keeping the set as long as the entry, and
// returns how long ago (µs, by the server's clock) the tag was last purged, -1 if not within
// the purge record's life. One slot: the tag's.
//
//	KEYS[1] member set, KEYS[2] purge record
//	ARGV[1] entry key, ARGV[2] retention ms
var tagEntry = newScript(`
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
	redis.call('PEXPIRE', KEYS[1], ttl)
end
local p = redis.call('GET', KEYS[2])
if not p then
	return -1
end
local t = redis.call('TIME')
return math.max(0, tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(p))
`)

// purgeTag records a tag's purge (now, by the server's clock, never earlier than the last
// one) and pops its member set: it returns the keys of the entries carrying the tag and
// deletes the set. One slot: the tag's.
//
//	KEYS[1] member set, KEYS[2] purge record
//	ARGV[1] the purge record's retention ms
var purgeTag = newScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], string.format('%d', math.max(now, last)), 'PX', ARGV[1])
local m = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return m
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
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	l := &l2{
		s:          s,
		conn:       conn,
		prefix:     "muejam:cache:" + s.name + ":",
		channel:    "muejam:cache:{" + s.name + "}:purge",
		ackChannel: "muejam:cache:{" + s.name + "}:purge-ack",
		node:       hex.EncodeToString(id),
		timeout:    cfg.timeout,
		purgeTO:    cfg.purgeWait,
		heur:       cfg.heuristic,
		targeted:   strings.FieldsFunc(cfg.targeted, func(r rune) bool { return r == ',' }),
		queue:      make(chan l2Write, cfg.queue),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	panics.Go(&l.done, s.logger, whereWriter, l.writer)
	panics.Go(&l.done, s.logger, whereSubscriber, l.subscribe)
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
func (l *l2) tagKeys(tag string) []string {
	base := l.prefix + "{t:" + tag + "}:"
	return []string{base + "m", base + "p"}
}

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
// any moment, is not undone by it. The entry is written first (one script in its primary
// key's slot), then joins each tag's member set (one script per tag, in the tag's slot,
// which also reads the tag's purge record); a purge pops the member set in the same slot
// before it deletes the members (purge). For each tag, one of the two scripts runs first:
//
//   - the tag script: the entry was written before it, and the purge pops it with the
//     set and deletes it after; or
//   - the purge: the tag script sees its record, and the writer deletes the entry again
//     when it was fetched before the purge (or less than purge_settle after it, as
//     purgedSince judges), and may record the purge on this node (below).
//
// Until that deletion, for the time of one round trip, a node that has no record of the
// purge (just started, or resubscribing) could read the entry; nodes that acknowledged the
// purge refuse it by their own record, as they refuse it from L1.
//
// The purge's time is measured by Valkey's clock and placed on this node's without
// comparing clocks: the tag script returns how long ago the purge was, which, taken back
// from when the script was sent and from when its answer arrived, bounds when it was. A
// node that has a record of that purge (or a later one) heard of it and judges the entry by
// its own record, as it judges L1. One that has not deletes the entry from L2 if it may have
// been fetched before the purge (before the later bound), and records the purge (at the
// earlier bound) when it surely was: the entry leaves its L1 too. (A node misses purges only
// while it is not subscribed, and empties L1 when it subscribes again; this catches the
// responses still in flight then.)
func (l *l2) write(ctx context.Context, c valkey.Client, w l2Write) error {
	ttl := strconv.FormatInt(max(1, w.ttl.Milliseconds()), 10)
	err := writeEntry.run(ctx, c, valkey.LuaExec{
		Keys: []string{w.key, w.varyKey},
		Args: []string{valkey.BinaryString(w.value), ttl, w.vary},
	})[0].Error()
	if err != nil || len(w.tags) == 0 {
		return err
	}
	runs := make([]valkey.LuaExec, len(w.tags))
	for i, t := range w.tags {
		runs[i] = valkey.LuaExec{Keys: l.tagKeys(t), Args: []string{w.key, ttl}}
	}
	sent := time.Now()
	res := tagEntry.run(ctx, c, runs...)
	answered := time.Now()
	var errs []error
	purged := false
	for i, r := range res {
		ago, err := r.AsInt64()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tag := w.tags[i : i+1]
		if l.s.purgedSince(tag, w.requestTime) {
			purged = true // by a purge this node heard of while the entry was written
			continue
		}
		if ago < 0 {
			continue
		}
		earliest := sent.Add(-time.Duration(ago) * time.Microsecond)
		if known, ok := l.s.purgedAt(tag[0]); ok && !known.Before(earliest) {
			continue // this node heard of the purge, and its record lets the entry be
		}
		if latest := answered.Add(-time.Duration(ago) * time.Microsecond); w.requestTime.Before(latest.Add(l.s.settle)) {
			purged = true
			if w.requestTime.Before(earliest.Add(l.s.settle)) {
				l.s.recordPurge(tag, earliest)
			}
		}
	}
	if purged {
		errs = append(errs, c.Do(ctx, c.B().Del().Key(w.key).Build()).Error())
	}
	return errors.Join(errs...)
}

// purge deletes the tags' entries from Valkey, publishes the purge and waits (within the
// purge timeout) until every node subscribed to the channel has acknowledged it, so that
// once it returns no node serves a purged entry. It returns an error when Valkey could not
// be reached or some node did not acknowledge in time.
//
// Per tag, one script in the tag's slot records the purge and pops the tag's member set
// (see write for why a concurrent write loses nothing); then the members, which live in
// many slots, are deleted by single-key DELs in one pipeline (valkey-go sends each to its
// slot's node), with the SPUBLISH beside them. A member whose DEL fails goes back into its
// tag's set, so that purging the tag again deletes it. The message goes out even when some
// tag's shard failed: the other nodes' records then honour the purge while L2 may not.
func (l *l2) purge(ctx context.Context, tags []string) error {
	id := strconv.FormatUint(l.purgeSeq.Add(1), 36)
	w := &ackWait{need: -1, done: make(chan struct{})}
	l.acks.Store(id, w)
	defer l.acks.Delete(id)
	ctx, cancel := context.WithTimeout(ctx, l.purgeTO)
	defer cancel()
	receivers := int64(-1)
	err := l.call(ctx, l.purgeTO, wherePurge, func(ctx context.Context, c valkey.Client) error {
		var errs []error
		retention := strconv.FormatInt(l.recordRetention().Milliseconds(), 10)
		runs := make([]valkey.LuaExec, len(tags))
		for i, t := range tags {
			runs[i] = valkey.LuaExec{Keys: l.tagKeys(t), Args: []string{retention}}
		}
		popped := make([][]string, len(tags)) // each tag's members
		var cmds valkey.Commands
		var members []string // the key each DEL of cmds deletes
		seen := map[string]bool{}
		for i, r := range purgeTag.run(ctx, c, runs...) {
			m, err := r.AsStrSlice()
			if err != nil {
				errs = append(errs, fmt.Errorf("tag %s: %w", tags[i], err))
				continue
			}
			popped[i] = m
			for _, k := range m {
				if !seen[k] {
					seen[k] = true
					members = append(members, k)
					cmds = append(cmds, c.B().Del().Key(k).Build())
				}
			}
		}
		cmds = append(cmds, c.B().Spublish().Channel(l.channel).Message(l.node+" "+id+" "+strings.Join(tags, " ")).Build())
		res := c.DoMulti(ctx, cmds...)
		var err error
		if receivers, err = res[len(res)-1].AsInt64(); err != nil {
			receivers = -1
			errs = append(errs, fmt.Errorf("publishing: %w", err))
		}
		failed := map[string]bool{}
		var delErr error
		for i, k := range members {
			if err := res[i].Error(); err != nil {
				failed[k] = true
				delErr = err
			}
		}
		if len(failed) > 0 {
			errs = append(errs, fmt.Errorf("deleting %d of %d entries: %w", len(failed), len(members), delErr),
				l.restoreMembers(ctx, c, tags, popped, failed))
		}
		return errors.Join(errs...)
	})
	if receivers < 0 {
		return err
	}
	if !w.expect(receivers) {
		select {
		case <-w.done:
		case <-ctx.Done():
			return errors.Join(err, fmt.Errorf("purge %s: %d of %d subscribed nodes acknowledged in %s", id, w.got.Load(), receivers, l.purgeTO))
		}
	}
	return err
}

// restoreMembers puts the members whose deletion failed back into the sets of the tags they
// were popped from, kept as long as a purge record.
func (l *l2) restoreMembers(ctx context.Context, c valkey.Client, tags []string, popped [][]string, failed map[string]bool) error {
	var cmds valkey.Commands
	for i, m := range popped {
		var back []string
		for _, k := range m {
			if failed[k] {
				back = append(back, k)
			}
		}
		if len(back) > 0 {
			set := l.tagKeys(tags[i])[0]
			cmds = append(cmds, c.B().Sadd().Key(set).Member(back...).Build(),
				c.B().Pexpire().Key(set).Milliseconds(l.recordRetention().Milliseconds()).Build())
		}
	}
	var errs []error
	for _, r := range c.DoMulti(ctx, cmds...) {
		errs = append(errs, r.Error())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restoring the members not deleted: %w", err)
	}
	return nil
}

// ackWait counts the acknowledgements of one purge.
type ackWait struct {
	mu   sync.Mutex
	need int64 // -1 until the number of receivers is known
	got  atomic.Int64
	done chan struct{}
}

// expect sets the number of acknowledgements needed and reports whether they are in.
func (w *ackWait) expect(n int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.need = n
	if w.got.Load() >= n {
		close(w.done)
		return true
	}
	return false
}

// ack counts one acknowledgement.
func (w *ackWait) ack() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.got.Add(1) == w.need {
		close(w.done)
	}
}

// subscribe receives other nodes' purges (and the acknowledgements of this node's) until
// the store stops. Every subscription after the first empties L1: purges published while
// this node was not listening are lost, and the entries they invalidated may be in L1.
//
// valkey-go's Receive holds the subscription on the connection to the node serving the
// channels' slot. It returns nil when that node drops the subscription (SUNSUBSCRIBE, when
// the slot moves to another shard) and an error when it cannot subscribe; when the
// connection breaks (the node died, a replica takes over) it subscribes again by itself,
// following MOVED on a cluster to the slot's new owner, until it succeeds or the store
// stops. Each confirmed subscription goes through onSubscription, which is how a
// resubscription made inside Receive is noticed too.
func (l *l2) subscribe() {
	ctx := valkey.WithOnSubscriptionHook(l.ctx, l.onSubscription)
	pause := 100 * time.Millisecond
	failing := false // logged a failure since the last subscription
	for l.ctx.Err() == nil {
		wait := 100 * time.Millisecond // until the first connection is made
		if c := l.conn.Client(); c != nil {
			err := c.Receive(ctx, c.B().Ssubscribe().Channel(l.channel, l.ackChannel).Build(), l.onMessage)
			if l.ctx.Err() != nil {
				return
			}
			if l.listening.Swap(false) {
				pause, failing = 100*time.Millisecond, false // it was subscribed: subscribe again soon
			}
			if err != nil && !failing {
				l.s.logger.Warn("cache purge channel: not subscribed; retrying (purges of other nodes do not reach this one meanwhile)",
					zap.String("cache", l.s.name), zap.String("channel", l.channel), zap.Error(err))
				failing = true
			}
			wait, pause = pause, min(2*pause, 5*time.Second)
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// onSubscription is called for each change of the subscription, on the goroutine that
// reads the connection's replies: L1 is emptied on another, so that those replies (L2 reads
// among them) do not wait for it.
func (l *l2) onSubscription(s valkey.PubSubSubscription) {
	defer panics.Recover(l.s.logger, whereSubscriber, nil)
	if s.Channel != l.channel || s.Kind != "ssubscribe" {
		return
	}
	l.listening.Store(true)
	if l.subscribed.Swap(true) {
		go func() {
			defer panics.Recover(l.s.logger, whereSubscriber, nil)
			l.s.l1.InvalidateAll()
			l.s.logger.Warn("cache purge channel resubscribed: emptied L1, purges may have been missed",
				zap.String("cache", l.s.name))
		}()
	}
}

// onMessage dispatches a message of either channel.
func (l *l2) onMessage(m valkey.PubSubMessage) {
	if m.Channel == l.ackChannel {
		node, id, _ := strings.Cut(m.Message, " ")
		l.acked(node, id)
	} else {
		l.received(m.Message)
	}
}

// received applies a purge message "<node> <id> <tag> <tag>..." from another node and
// acknowledges it to the sender. This node's own message counts as its own acknowledgement:
// SPUBLISH counted this node among the receivers only if it was subscribed.
func (l *l2) received(msg string) {
	node, rest, _ := strings.Cut(msg, " ")
	id, tags, _ := strings.Cut(rest, " ")
	if tags == "" {
		return
	}
	if node == l.node {
		l.acked(node, id)
		return
	}
	l.s.recordPurge(strings.Fields(tags), time.Now())
	purges.WithLabelValues(l.s.name, "remote").Inc()
	go func() {
		defer panics.Recover(l.s.logger, whereAck, nil)
		_ = l.call(l.ctx, l.purgeTO, whereAck, func(ctx context.Context, c valkey.Client) error {
			return c.Do(ctx, c.B().Spublish().Channel(l.ackChannel).Message(node+" "+id).Build()).Error()
		})
	}()
}

// acked counts an acknowledgement of purge id when this node sent it.
func (l *l2) acked(node, id string) {
	if node != l.node {
		return
	}
	if w, ok := l.acks.Load(id); ok {
		w.(*ackWait).ack()
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
