package edgecache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/muejam/edge/internal/valkeyconn"
)

// l2 is a store's shared second level in Valkey, and the purge fan-out between edge nodes.
//
// Keys, under muejam:cache:<store>: (hashes keep them short whatever the URL):
//
//	e:<sha256(primary key + secondary key)>  an entry in its binary form, PX its retention
//	v:<sha256(primary key)>                  the Vary'd field names of a primary key, "\n"-joined
//	t:<tag>                                  the set of entry keys carrying a tag, as long-lived as its longest entry
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
	node       string // this process's id in purge messages
	timeout    time.Duration
	purgeTO    time.Duration
	heur       float64
	queue      chan l2Write
	ackChannel string
	listening  atomic.Bool   // subscribed to the purge channel now
	purgeSeq   atomic.Uint64 // ids of this node's purges
	acks       sync.Map      // purge id → *ackWait
	keys       atomic.Int64  // DBSIZE at the last probe
	memory     atomic.Int64  // used_memory at the last probe
	stop       chan struct{}
	done       sync.WaitGroup
}

type l2Write struct {
	key, varyKey string
	tags         []string
	value        []byte
	vary         string
	ttl          time.Duration
}

// writeEntry stores an entry, the Vary record of its primary key and its tag memberships in
// one atomic call.
//
//	KEYS[1] entry key, KEYS[2] Vary record key, KEYS[3..] tag set keys
//	ARGV[1] entry, ARGV[2] retention ms, ARGV[3] Vary'd names
var writeEntry = valkey.NewLuaScript(`
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local vttl = redis.call('PTTL', KEYS[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', math.max(ttl, vttl))
for i = 3, #KEYS do
	redis.call('SADD', KEYS[i], KEYS[1])
	if redis.call('PTTL', KEYS[i]) < ttl then
		redis.call('PEXPIRE', KEYS[i], ttl)
	end
end
return 1
`)

// purgeTags deletes every entry carrying one of the tags, the tag sets, and publishes the
// purge to every edge node, atomically. It returns the number of subscribers the message
// reached.
//
//	KEYS tag set keys; ARGV[1] channel, ARGV[2] message
var purgeTags = valkey.NewLuaScript(`
for i = 1, #KEYS do
	local m = redis.call('SMEMBERS', KEYS[i])
	for j = 1, #m, 1000 do
		redis.call('DEL', unpack(m, j, math.min(j + 999, #m)))
	end
	redis.call('DEL', KEYS[i])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
`)

func newL2(s *store, cfg storeConfig) (*l2, error) {
	conn, err := valkeyconn.New(cfg.valkey, "cache valkey "+cfg.valkey, cfg.retry, func(from, to breaker.State) {
		s.logger.Warn("cache valkey breaker changed state",
			zap.String("cache", s.name), zap.String("valkey", cfg.valkey), zap.Stringer("from", from), zap.Stringer("to", to))
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
		channel:    "muejam:cache:" + s.name + ":purge",
		ackChannel: "muejam:cache:" + s.name + ":purge-ack",
		node:       hex.EncodeToString(id),
		timeout:    cfg.timeout,
		purgeTO:    cfg.purgeWait,
		heur:       cfg.heuristic,
		queue:      make(chan l2Write, cfg.queue),
		stop:       make(chan struct{}),
	}
	l.done.Add(3)
	go l.writer()
	go l.subscribe()
	go l.probe()
	return l, nil
}

func (l *l2) close() {
	close(l.stop)
	l.done.Wait()
	l.conn.Close()
}

func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

func (l *l2) entryKey(primary, secondary string) string {
	return l.prefix + "e:" + hashKey(l1Key(primary, secondary))
}
func (l *l2) varyRecordKey(primary string) string { return l.prefix + "v:" + hashKey(primary) }
func (l *l2) tagKey(tag string) string            { return l.prefix + "t:" + tag }

// call runs fn against Valkey under the breaker and the timeout.
func (l *l2) call(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, c valkey.Client) error) error {
	c := l.conn.Client()
	if c == nil {
		return valkeyconn.ErrNotConnected
	}
	done, err := l.conn.Breaker.Allow()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err = fn(ctx, c)
	took := time.Since(start)
	done(breaker.ResultOf(err), took)
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
	err := l.call(ctx, l.timeout, func(ctx context.Context, c valkey.Client) error {
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
		e, err = unmarshalEntry(b, l.heur)
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
	tags := make([]string, len(e.tags))
	for i, t := range e.tags {
		tags[i] = l.tagKey(t)
	}
	w := l2Write{
		key:     l.entryKey(primary, e.secondary),
		varyKey: l.varyRecordKey(primary),
		tags:    tags,
		value:   e.marshal(nil),
		vary:    strings.Join(e.vary, "\n"),
		ttl:     e.ttl,
	}
	select {
	case l.queue <- w:
	default:
		l2Dropped.WithLabelValues(l.s.name).Inc()
	}
}

// writer writes queued entries until the store stops.
func (l *l2) writer() {
	defer l.done.Done()
	for {
		select {
		case <-l.stop:
			return
		case w := <-l.queue:
			_ = l.call(context.Background(), 4*l.timeout, func(ctx context.Context, c valkey.Client) error {
				keys := append([]string{w.key, w.varyKey}, w.tags...)
				return writeEntry.Exec(ctx, c, keys, []string{
					valkey.BinaryString(w.value), strconv.FormatInt(max(1, w.ttl.Milliseconds()), 10), w.vary,
				}).Error()
			})
		}
	}
}

// purge deletes the tags' entries from Valkey, publishes the purge and waits (within the
// purge timeout) until every other node subscribed to the channel has acknowledged it, so
// that once it returns no node serves a purged entry. It returns an error when Valkey could
// not be reached or some node did not acknowledge in time.
func (l *l2) purge(ctx context.Context, tags []string) error {
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = l.tagKey(t)
	}
	id := strconv.FormatUint(l.purgeSeq.Add(1), 36)
	w := &ackWait{need: -1, done: make(chan struct{})}
	l.acks.Store(id, w)
	defer l.acks.Delete(id)
	ctx, cancel := context.WithTimeout(ctx, l.purgeTO)
	defer cancel()
	var receivers int64
	err := l.call(ctx, l.purgeTO, func(ctx context.Context, c valkey.Client) error {
		var err error
		receivers, err = purgeTags.Exec(ctx, c, keys, []string{l.channel, l.node + " " + id + " " + strings.Join(tags, " ")}).AsInt64()
		return err
	})
	if err != nil {
		return err
	}
	if l.listening.Load() {
		receivers-- // this node's own subscription got it too
	}
	if w.expect(receivers) {
		return nil
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("purge %s: %d of %d other nodes acknowledged in %s", id, w.got.Load(), receivers, l.purgeTO)
	}
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
func (l *l2) subscribe() {
	defer l.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-l.stop
		cancel()
	}()
	var ever atomic.Bool // a subscription was confirmed before (set on valkey-go's goroutine)
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		if c := l.conn.Client(); c != nil {
			dc, release := c.Dedicate()
			wait := dc.SetPubSubHooks(valkey.PubSubHooks{
				OnMessage: func(m valkey.PubSubMessage) {
					if m.Channel == l.ackChannel {
						l.acked(m.Message)
					} else {
						l.received(m.Message)
					}
				},
				OnSubscription: func(s valkey.PubSubSubscription) {
					if s.Kind != "subscribe" || s.Channel != l.channel {
						return
					}
					if ever.Swap(true) {
						l.s.l1.InvalidateAll()
						l.s.logger.Warn("cache purge channel resubscribed: emptied L1, purges may have been missed",
							zap.String("cache", l.s.name))
					}
					l.listening.Store(true)
				},
			})
			err := dc.Do(ctx, dc.B().Subscribe().Channel(l.channel, l.ackChannel).Build()).Error()
			if err == nil {
				pause = 100 * time.Millisecond // connected: retry soon after a drop
				select {
				case <-wait:
				case <-ctx.Done():
				}
			}
			l.listening.Store(false)
			release()
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// received applies a purge message "<node> <id> <tag> <tag>..." from another node and
// acknowledges it to the sender.
func (l *l2) received(msg string) {
	node, rest, _ := strings.Cut(msg, " ")
	id, tags, _ := strings.Cut(rest, " ")
	if node == l.node || tags == "" {
		return
	}
	l.s.recordPurge(strings.Fields(tags), time.Now())
	purges.WithLabelValues(l.s.name, "remote").Inc()
	go func() {
		_ = l.call(context.Background(), l.purgeTO, func(ctx context.Context, c valkey.Client) error {
			return c.Do(ctx, c.B().Publish().Channel(l.ackChannel).Message(node+" "+id).Build()).Error()
		})
	}()
}

// acked counts an acknowledgement "<node> <id>" when this node sent the purge.
func (l *l2) acked(msg string) {
	node, id, _ := strings.Cut(msg, " ")
	if node != l.node {
		return
	}
	if w, ok := l.acks.Load(id); ok {
		w.(*ackWait).ack()
	}
}

// sizes returns the key count and memory of the Valkey server at the last probe.
func (l *l2) sizes() (keys, bytes int64) { return l.keys.Load(), l.memory.Load() }

// probe reads the server's key count and memory every 15s until the store stops.
func (l *l2) probe() {
	defer l.done.Done()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		_ = l.call(context.Background(), time.Second, func(ctx context.Context, c valkey.Client) error {
			n, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
			if err != nil {
				return err
			}
			info, err := c.Do(ctx, c.B().Info().Section("memory").Build()).ToString()
			if err != nil {
				return err
			}
			l.keys.Store(n)
			for line := range strings.Lines(info) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
					if b, err := strconv.ParseInt(v, 10, 64); err == nil {
						l.memory.Store(b)
					}
				}
			}
			return nil
		})
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}
