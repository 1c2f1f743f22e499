package valkeytags

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
)

// Bus fans purges (or other messages: Publish) out between the processes (edge nodes, app
// instances) of one cache on sharded pub/sub (SSUBSCRIBE, SPUBLISH: Valkey or Redis 7.0 or
// later, on a cluster and on one server alike), on two channels that share a hash tag, so
// that both live on the shard that serves their slot: every process subscribes there, and
// SPUBLISH counts every process's subscription.
//
//	<channel>       "<node> <id> <word>..." from the process that purged (the tags) or published
//	<ack channel>   "<node> <id>" from each process that applied it
//
// A message's sender waits until as many processes acknowledged it as SPUBLISH counted
// receivers; its own message counts as its own acknowledgement.
type Bus struct {
	conn       *valkeyconn.Conn
	opt        BusOptions
	node       string        // this process's id in purge messages
	subscribed atomic.Bool   // a subscription to the purge channel was confirmed before
	listening  atomic.Bool   // a subscription was confirmed since Subscribe last called Receive
	seq        atomic.Uint64 // ids of this process's purges
	acks       sync.Map      // purge id → *ackWait
}

// BusOptions are a Bus's channels and the calls it makes back.
type BusOptions struct {
	// Channel and AckChannel are the purge and acknowledgement channels; they must share a
	// hash tag ({...}).
	Channel, AckChannel string
	// Logger logs subscription failures and recovered panics.
	Logger *zap.Logger
	// SubscriberWhere and AckWhere name the subscriber and the acknowledgements in
	// muejam_edge_panics_total{where}.
	SubscriberWhere, AckWhere string
	// AckTimeout bounds the publication of an acknowledgement.
	AckTimeout time.Duration
	// Call runs fn against Valkey under the breaker and a timeout, recording it.
	Call func(ctx context.Context, timeout time.Duration, where string, fn func(ctx context.Context, c valkey.Client) error) error
	// OnSubscribed is called, on a goroutine of its own, after each confirmed subscription
	// to Channel; again is false for the first one.
	OnSubscribed func(again bool)
	// OnMessage applies the words of a message from another process (the tags of a purge),
	// before it is acknowledged.
	OnMessage func(words []string)
}

// NewBus returns a Bus on conn with a random node id.
func NewBus(conn *valkeyconn.Conn, opt BusOptions) *Bus {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &Bus{conn: conn, opt: opt, node: hex.EncodeToString(id)}
}

// Subscribed reports whether a subscription to the purge channel was ever confirmed.
func (b *Bus) Subscribed() bool { return b.subscribed.Load() }

// Purge purges tags (see Purge, the function) under prefix, their records kept retention,
// publishes the purge and waits, all within timeout, until every process subscribed to the
// channel has acknowledged it, so that once it returns no process serves a purged entry.
// callErr is the error of the Valkey calls (nil when every tag was purged and the message
// published); ackErr says that some process did not acknowledge in time.
func (b *Bus) Purge(ctx context.Context, prefix string, tags []string, retention, timeout time.Duration, where string) (callErr, ackErr error) {
	return b.Publish(ctx, tags, timeout, where, func(ctx context.Context, c valkey.Client, publish valkey.Completed) (int64, error) {
		return Purge(ctx, c, prefix, tags, retention, publish)
	})
}

// Publish sends words to the other processes on the channel and waits, all within timeout,
// until every process subscribed to it has acknowledged them (applied them with OnMessage).
// do makes the Valkey calls that go with the message, ending with publish (the SPUBLISH of
// the message), and returns what publish returned: how many processes received it.
// callErr is do's error; ackErr says that some process did not acknowledge in time.
func (b *Bus) Publish(ctx context.Context, words []string, timeout time.Duration, where string, do func(ctx context.Context, c valkey.Client, publish valkey.Completed) (receivers int64, err error)) (callErr, ackErr error) {
	id := strconv.FormatUint(b.seq.Add(1), 36)
	w := &ackWait{need: -1, done: make(chan struct{})}
	b.acks.Store(id, w)
	defer b.acks.Delete(id)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	receivers := int64(-1)
	callErr = b.opt.Call(ctx, timeout, where, func(ctx context.Context, c valkey.Client) error {
		var err error
		receivers, err = do(ctx, c, c.B().Spublish().Channel(b.opt.Channel).Message(b.node+" "+id+" "+strings.Join(words, " ")).Build())
		return err
	})
	if receivers < 0 {
		return callErr, nil
	}
	if !w.expect(receivers) {
		select {
		case <-w.done:
		case <-ctx.Done():
			return callErr, fmt.Errorf("message %s: %d of %d subscribed processes acknowledged in %s", id, w.got.Load(), receivers, timeout)
		}
	}
	return callErr, nil
}

// Subscribe receives other processes' purges (and the acknowledgements of this one's) until
// ctx ends.
//
// valkey-go's Receive holds the subscription on the connection to the node serving the
// channels' slot. It returns nil when that node drops the subscription (SUNSUBSCRIBE, when
// the slot moves to another shard) and an error when it cannot subscribe; when the
// connection breaks (the node died, a replica takes over) it subscribes again by itself,
// following MOVED on a cluster to the slot's new owner, until it succeeds or ctx ends. Each
// confirmed subscription goes through onSubscription, which is how a resubscription made
// inside Receive is noticed too.
func (b *Bus) Subscribe(ctx context.Context) {
	life := ctx
	ctx = valkey.WithOnSubscriptionHook(ctx, func(s valkey.PubSubSubscription) { b.onSubscription(life, s) })
	pause := 100 * time.Millisecond
	failing := false // logged a failure since the last subscription
	for life.Err() == nil {
		wait := 100 * time.Millisecond // until the first connection is made
		if c := b.conn.Client(); c != nil {
			err := c.Receive(ctx, c.B().Ssubscribe().Channel(b.opt.Channel, b.opt.AckChannel).Build(), func(m valkey.PubSubMessage) { b.onMessage(life, m) })
			if life.Err() != nil {
				return
			}
			if b.listening.Swap(false) {
				pause, failing = 100*time.Millisecond, false // it was subscribed: subscribe again soon
			}
			if err != nil && !failing {
				b.opt.Logger.Warn("cache purge channel: not subscribed; retrying (purges of other nodes do not reach this one meanwhile)",
					zap.String("channel", b.opt.Channel), zap.Error(err))
				failing = true
			}
			wait, pause = pause, min(2*pause, 5*time.Second)
		}
		select {
		case <-life.Done():
			return
		case <-time.After(wait):
		}
	}
}

// onSubscription is called for each change of the subscription, on the goroutine that
// reads the connection's replies: OnSubscribed runs on another, so that those replies
// (cache reads among them) do not wait for it.
func (b *Bus) onSubscription(ctx context.Context, s valkey.PubSubSubscription) {
	defer panics.Recover(b.opt.Logger, b.opt.SubscriberWhere, nil)
	if s.Channel != b.opt.Channel || s.Kind != "ssubscribe" {
		return
	}
	b.listening.Store(true)
	again := b.subscribed.Swap(true)
	go func() {
		defer panics.Recover(b.opt.Logger, b.opt.SubscriberWhere, nil)
		b.opt.OnSubscribed(again)
	}()
}

// onMessage dispatches a message of either channel.
func (b *Bus) onMessage(ctx context.Context, m valkey.PubSubMessage) {
	if m.Channel == b.opt.AckChannel {
		node, id, _ := strings.Cut(m.Message, " ")
		b.acked(node, id)
	} else {
		b.received(ctx, m.Message)
	}
}

// received applies a purge message "<node> <id> <tag> <tag>..." from another process and
// acknowledges it to the sender. This process's own message counts as its own
// acknowledgement: SPUBLISH counted it among the receivers only if it was subscribed.
func (b *Bus) received(ctx context.Context, msg string) {
	node, rest, _ := strings.Cut(msg, " ")
	id, tags, _ := strings.Cut(rest, " ")
	if tags == "" {
		return
	}
	if node == b.node {
		b.acked(node, id)
		return
	}
	b.opt.OnMessage(strings.Fields(tags))
	go func() {
		defer panics.Recover(b.opt.Logger, b.opt.AckWhere, nil)
		_ = b.opt.Call(ctx, b.opt.AckTimeout, b.opt.AckWhere, func(ctx context.Context, c valkey.Client) error {
			return c.Do(ctx, c.B().Spublish().Channel(b.opt.AckChannel).Message(node+" "+id).Build()).Error()
		})
	}()
}

// acked counts an acknowledgement of purge id when this process sent it.
func (b *Bus) acked(node, id string) {
	if node != b.node {
		return
	}
	if w, ok := b.acks.Load(id); ok {
		w.(*ackWait).ack()
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
