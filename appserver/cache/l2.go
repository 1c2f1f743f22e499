package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
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

// maxPending bounds the tags whose purge waits to be retried while Valkey is away.
const maxPending = 10000

// l2 is the manager's Valkey layer and the purge fan-out between instances.
type l2 struct {
	m       *Manager
	conn    *valkeyconn.Conn
	bus     *valkeytags.Bus // the purge fan-out
	records valkeytags.Records
	queue   chan l2Write

	pendingMu sync.Mutex
	pending   map[string]bool // tags whose purge did not reach Valkey

	emptied atomic.Int64 // subscriptions handled: L1 emptied after each

	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// l2Write is a value waiting in the queue to be written.
type l2Write struct {
	key    string
	value  []byte // JSON
	tags   []string
	ttl    time.Duration
	loaded time.Time // when its load started
}

// l2Read is a value read from L2.
type l2Read struct {
	value   []byte // JSON
	tags    []string
	loaded  time.Time
	expires time.Time
}

func newL2(m *Manager) *l2 {
	l := &l2{
		m:       m,
		conn:    m.conn,
		queue:   make(chan l2Write, m.cfg.WriteQueue),
		pending: map[string]bool{},
		records: valkeytags.Records{
			PurgedSince: func(tags []string, since time.Time) bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return m.purgedSince(tags, since)
			},
			PurgedAt: m.purgedAt,
			Record:   m.recordPurge,
			Settle:   m.cfg.Settle,
		},
	}
	l.bus = valkeytags.NewBus(m.conn, valkeytags.BusOptions{
		Channel:         m.cfg.PurgeChannel,
		AckChannel:      m.cfg.PurgeChannel + "-ack",
		Logger:          m.logger,
		SubscriberWhere: whereSubscriber,
		AckWhere:        whereAck,
		AckTimeout:      m.cfg.AckWait,
		Call: func(ctx context.Context, timeout time.Duration, where string, fn func(ctx context.Context, c valkey.Client) error) error {
			_, err := l.call(ctx, timeout, where, fn)
			return err
		},
		OnSubscribed: l.onSubscribed,
		OnMessage: func(tags []string) {
			m.recordPurge(tags, time.Now())
			m.m.invalidations.WithLabelValues("remote").Add(float64(len(tags)))
		},
	})
	l.ctx, l.cancel = context.WithCancel(context.Background())
	panics.Go(&l.done, m.logger, whereWriter, l.writer)
	panics.Go(&l.done, m.logger, whereSubscriber, func() { l.bus.Subscribe(l.ctx) })
	panics.Go(&l.done, m.logger, wherePurge, l.retrier)
	return l
}

func (l *l2) close() {
	l.cancel()
	l.done.Wait()
}

// entryKey is key's L2 key, hash-tagged by a hash of key so that entries spread over a
// cluster's slots.
func (l *l2) entryKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.m.cfg.Prefix + "e:{" + hex.EncodeToString(sum[:16]) + "}"
}

// encode is an L2 value: version 1, when its load started (µs) and when it expires (ms),
// both Unix, its tags (count, then length and bytes of each, as uvarints), then its JSON.
func encode(w l2Write) []byte {
	n := 17 + binary.MaxVarintLen64 + len(w.value)
	for _, t := range w.tags {
		n += binary.MaxVarintLen64 + len(t)
	}
	b := make([]byte, 1, n)
	b[0] = 1
	b = binary.BigEndian.AppendUint64(b, uint64(w.loaded.UnixMicro()))
	b = binary.BigEndian.AppendUint64(b, uint64(w.loaded.Add(w.ttl).UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(w.tags)))
	for _, t := range w.tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return append(b, w.value...)
}

var errBadValue = errors.New("malformed L2 value")

// decode reads a value encode wrote.
func decode(b []byte) (l2Read, error) {
	var r l2Read
	if len(b) < 17 || b[0] != 1 {
		return r, errBadValue
	}
	r.loaded = time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:])))
	r.expires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:])))
	b = b[17:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return r, errBadValue
	}
	b = b[k:]
	r.tags = make([]string, n)
	for i := range r.tags {
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return r, errBadValue
		}
		r.tags[i] = string(b[k : k+int(size)])
		b = b[k+int(size):]
	}
	r.value = b
	return r, nil
}

// call runs fn against Valkey under the breaker and timeout (valkeyconn.Conn.Call, which
// also turns a panic into an error), and records its duration and failure. It reports
// whether a call was made at all.
func (l *l2) call(ctx context.Context, timeout time.Duration, where string, fn func(ctx context.Context, c valkey.Client) error) (made bool, err error) {
	took, err := l.conn.Call(ctx, timeout, where, fn)
	if errors.Is(err, valkeyconn.ErrNotConnected) || errors.Is(err, breaker.ErrOpen) {
		return false, err
	}
	l.m.m.l2Seconds.Observe(took.Seconds())
	if err != nil {
		l.m.m.l2Errors.Inc()
	}
	return true, err
}

// bounded runs fn as call does, but returns after L2Timeout (or when ctx ends) even when
// the call has not: valkey-go may make a new connection inside a command (after a timeout
// closed the last one), bounded by the dial timeout rather than by the command's context,
// and a request must not wait for that. An abandoned call ends on its own.
func (l *l2) bounded(ctx context.Context, where string, fn func(ctx context.Context, c valkey.Client) error) (made bool, err error) {
	type result struct {
		made bool
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		defer func() { res <- r }()
		defer panics.Recover(l.m.logger, where, &r.err)
		r.made, r.err = l.call(ctx, l.m.cfg.L2Timeout, where, fn)
	}()
	t := time.NewTimer(l.m.cfg.L2Timeout)
	defer t.Stop()
	select {
	case r := <-res:
		return r.made, r.err
	case <-t.C:
		return true, context.DeadlineExceeded
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// get reads key's value, counting a miss, an error or an unavailable L2 (a hit is counted
// by the caller, once the value decodes). A value of a tag this instance knows was purged
// after its load is a miss.
func (l *l2) get(ctx context.Context, key string) (l2Read, bool) {
	var raw []byte
	made, err := l.bounded(ctx, whereL2, func(ctx context.Context, c valkey.Client) error {
		var err error
		raw, err = c.Do(ctx, c.B().Get().Key(l.entryKey(key)).Build()).AsBytes()
		if valkey.IsValkeyNil(err) {
			raw, err = nil, nil
		}
		return err
	})
	lookups := l.m.m.lookups
	switch {
	case !made:
		lookups.WithLabelValues(layerL2, outcomeUnavailable).Inc()
		return l2Read{}, false
	case err != nil:
		lookups.WithLabelValues(layerL2, outcomeError).Inc()
		return l2Read{}, false
	case raw == nil:
		lookups.WithLabelValues(layerL2, outcomeMiss).Inc()
		return l2Read{}, false
	}
	r, err := decode(raw)
	if err != nil {
		lookups.WithLabelValues(layerL2, outcomeError).Inc()
		return l2Read{}, false
	}
	if l.records.PurgedSince(r.tags, r.loaded) || !time.Now().Before(r.expires) {
		lookups.WithLabelValues(layerL2, outcomeMiss).Inc()
		return l2Read{}, false
	}
	return r, true
}

// put queues w for writing; a full queue drops it.
func (l *l2) put(w l2Write) {
	select {
	case l.queue <- w:
	default:
		l.m.m.l2Dropped.Inc()
	}
}

// writer writes queued values until the manager closes.
func (l *l2) writer() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case w := <-l.queue:
			if l.records.PurgedSince(w.tags, w.loaded) {
				continue // invalidated while it waited
			}
			_, _ = l.call(l.ctx, 4*l.m.cfg.L2Timeout, whereWriter, func(ctx context.Context, c valkey.Client) error {
				return l.write(ctx, c, w)
			})
		}
	}
}

// write stores a value in L2 so that a purge of one of its tags, made through any instance
// at any moment, is not undone by it: the entry is written first, then valkeytags.Tag adds
// it to its tags' member sets, judges it against their purge records and this instance's,
// and deletes it again if its value was loaded before a purge (or less than Settle after
// it); a purge this instance missed is then recorded here too, dropping the key from L1.
func (l *l2) write(ctx context.Context, c valkey.Client, w l2Write) error {
	key := l.entryKey(w.key)
	err := c.Do(ctx, c.B().Set().Key(key).Value(valkey.BinaryString(encode(w))).Px(max(time.Millisecond, w.ttl)).Build()).Error()
	if err != nil || len(w.tags) == 0 {
		return err
	}
	return valkeytags.Tag(ctx, c, l.m.cfg.Prefix, key, w.tags, w.ttl, w.loaded, l.records)
}

// purge purges tags in Valkey and publishes the purge (valkeytags.Purge), then waits until
// every instance subscribed to the channel has acknowledged it, all within AckWait. A purge
// that did not fully reach Valkey is retried in the background.
func (l *l2) purge(ctx context.Context, tags []string) error {
	callErr, ackErr := l.bus.Purge(ctx, l.m.cfg.Prefix, tags, recordRetention+l.m.cfg.Settle, l.m.cfg.AckWait, wherePurge)
	if callErr != nil {
		l.postpone(tags)
		callErr = fmt.Errorf("cache: purge of %v: %w (retried in the background)", tags, callErr)
	}
	if ackErr != nil {
		ackErr = fmt.Errorf("cache: %w", ackErr)
	}
	return errors.Join(callErr, ackErr)
}

// postpone keeps tags for the retrier.
func (l *l2) postpone(tags []string) {
	var dropped []string
	l.pendingMu.Lock()
	for _, t := range tags {
		if len(l.pending) >= maxPending {
			dropped = append(dropped, t)
			continue
		}
		l.pending[t] = true
	}
	l.pendingMu.Unlock()
	if len(dropped) > 0 {
		l.m.logger.Error("cache: too many purges wait for Valkey; dropped some (their entries in L2 stay until they expire)", zap.Strings("tags", dropped))
	}
}

// retrier purges the pending tags again, once Valkey is available, until the manager closes.
func (l *l2) retrier() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if !l.conn.Available() {
			continue
		}
		l.pendingMu.Lock()
		tags := make([]string, 0, len(l.pending))
		for tag := range l.pending {
			tags = append(tags, tag)
		}
		clear(l.pending)
		l.pendingMu.Unlock()
		if len(tags) > 0 {
			if err := l.purge(l.ctx, tags); err != nil {
				l.m.logger.Warn("cache: retried purge", zap.Error(err))
			}
		}
	}
}

// onSubscribed empties L1 on every subscription to the purge channel: purges published
// while this instance was not listening are lost, and the entries they invalidated may be
// in L1 (on the first, entries stored before the subscription was confirmed).
func (l *l2) onSubscribed(again bool) {
	l.m.l1.InvalidateAll()
	l.emptied.Add(1)
	if again {
		l.m.logger.Warn("cache purge channel resubscribed: emptied L1, purges may have been missed")
	}
}
