// Package blockers keeps, in Valkey, the set of users who block anyone, so that an edge node
// can tell without asking the app that a signed-in reader blocks nobody, and so sees exactly
// what an anonymous reader sees: such a reader's feeds are then looked up in the one copy
// every anonymous reader shares (modules/viewerfilter) instead of each being passed to the
// app.
//
// The app server writes the set (Writer): a user is added, and every edge node subscribed to
// the add channel has acknowledged it, before their first block commits; an add that cannot
// be made or acknowledged fails the block (the client retries; nothing was changed). Edge
// nodes follow it (Follower): each loads the whole set on every subscription to the add
// channel and adds what each message names, so that once a block has answered no node takes
// its author for someone who blocks nobody.
//
// The set only grows: a user who unblocks everyone stays in it. An entry too many costs that
// reader the shared copy (their feeds come from the app, filtered, as before), never shows
// them an author they blocked. It is trusted only while its marker key holds the generation
// it was loaded with: a Valkey that lost its data (restarted empty, flushed) has no marker,
// and until an app instance has rebuilt the set from the database and set a new marker
// (Writer, every second), no node shares anything with a signed-in reader.
//
// The keys and both channels share one hash tag: on a cluster they live on one shard, where
// SPUBLISH counts every subscriber.
package blockers

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/internal/valkeytags"
)

// The set, its marker and the channels.
const (
	setKey      = "muejam:{blockers}:set"
	markerKey   = "muejam:{blockers}:complete"
	channel     = "muejam:{blockers}:add"
	ackChannel  = "muejam:{blockers}:add-ack"
	callTimeout = 250 * time.Millisecond
	// checkEvery is how often the Writer makes sure the marker is there and the Follower
	// that it has not changed; retryEvery, how often while not (not yet connected, the set
	// not complete or not trusted).
	checkEvery = time.Second
	retryEvery = 100 * time.Millisecond
	// scanCount is how many members an SSCAN step returns and an SADD adds.
	scanCount = 1000
)

// The panic sites (muejam_edge_panics_total{where}) of this package's goroutines and calls.
const (
	WhereSubscriber = "blockers.subscriber"
	WhereAck        = "blockers.ack"
	WhereCheck      = "blockers.check"
)

// Words in a message are query-escaped user ids: a message's words are split on spaces.
func encode(user string) string { return url.QueryEscape(user) }

func decode(word string) (string, bool) {
	u, err := url.QueryUnescape(word)
	return u, err == nil && u != ""
}

// members reads the whole set with SSCAN, calling add for each member.
func members(ctx context.Context, c valkey.Client, add func(string)) error {
	cursor := uint64(0)
	for {
		e, err := c.Do(ctx, c.B().Sscan().Key(setKey).Cursor(cursor).Count(scanCount).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		for _, m := range e.Elements {
			add(m)
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// marker returns the set's generation, "" when there is none.
func marker(ctx context.Context, c valkey.Client) (string, error) {
	g, err := c.Do(ctx, c.B().Get().Key(markerKey).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return "", nil
	}
	return strings.TrimSpace(g), err
}

// newBus returns the add channel's Bus on conn, calling onSubscribed after each confirmed
// subscription and onMessage with the words of each add from another process.
func newBus(conn *valkeyconn.Conn, log *zap.Logger, onSubscribed func(again bool), onMessage func(words []string)) *valkeytags.Bus {
	return valkeytags.NewBus(conn, valkeytags.BusOptions{
		Channel: channel, AckChannel: ackChannel,
		Logger:          log,
		SubscriberWhere: WhereSubscriber,
		AckWhere:        WhereAck,
		AckTimeout:      callTimeout,
		Call: func(ctx context.Context, timeout time.Duration, where string, fn func(ctx context.Context, c valkey.Client) error) error {
			_, err := conn.Call(ctx, timeout, where, fn)
			return err
		},
		OnSubscribed: onSubscribed,
		OnMessage:    onMessage,
	})
}
