package blockers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/internal/valkeytags"
)

// ErrUnavailable is what Add returns when it could not add the user to the set and have
// every edge node acknowledge it: the block must not be made.
var ErrUnavailable = errors.New("blockers: the set of users who block anyone cannot be updated")

// Writer is the app server's side: it adds users to the set before they block anyone, and
// keeps the set complete (rebuilt from the database when its marker is missing).
type Writer struct {
	conn    *valkeyconn.Conn
	bus     *valkeytags.Bus
	list    func(ctx context.Context) ([]string, error)
	log     *zap.Logger
	timeout time.Duration

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// NewWriter returns a Writer on conn (which stays the caller's), timeout bounding each Add
// with its acknowledgements; list reads from the database every user who blocks anyone. It
// subscribes to the acknowledgements and checks the marker every second until Close.
func NewWriter(conn *valkeyconn.Conn, timeout time.Duration, list func(ctx context.Context) ([]string, error), log *zap.Logger) *Writer {
	w := &Writer{conn: conn, list: list, log: log, timeout: timeout}
	// Another instance's add is acknowledged; there is nothing to keep.
	w.bus = newBus(conn, log, func(bool) {}, func([]string) {})
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	panics.Go(&w.done, log, WhereSubscriber, func() { w.bus.Subscribe(ctx) })
	panics.Go(&w.done, log, WhereCheck, func() { w.keepComplete(ctx) })
	return w
}

// Close stops the Writer's goroutines.
func (w *Writer) Close() {
	w.cancel()
	w.done.Wait()
}

// Add puts user in the set and waits until every edge node subscribed to the add channel
// has acknowledged it. Call it before the user's block is made, and make the block only if
// it returns nil (ErrUnavailable, wrapping why, otherwise).
func (w *Writer) Add(ctx context.Context, user string) error {
	callErr, ackErr := w.bus.Publish(ctx, []string{encode(user)}, w.timeout, WhereAck,
		func(ctx context.Context, c valkey.Client, publish valkey.Completed) (int64, error) {
			res := c.DoMulti(ctx, c.B().Sadd().Key(setKey).Member(user).Build(), publish)
			if err := res[0].Error(); err != nil {
				return -1, err
			}
			return res[1].AsInt64()
		})
	if err := errors.Join(callErr, ackErr); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// keepComplete makes sure, every checkEvery (retryEvery after a failure), that the set has
// its marker, rebuilding it when it has none.
func (w *Writer) keepComplete(ctx context.Context) {
	failing := false
	for {
		err := w.ensure(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			w.log.Warn("blockers: cannot make sure the set of users who block anyone is complete; edge nodes share nothing with signed-in readers meanwhile", zap.Error(err))
			failing = true
		case err == nil && failing:
			w.log.Info("blockers: the set of users who block anyone is complete again")
			failing = false
		}
		wait := checkEvery
		if err != nil {
			wait = retryEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// ensure rebuilds the set from the database and sets a new marker when the marker is
// missing. Adds made meanwhile are kept: the rebuild only adds.
func (w *Writer) ensure(ctx context.Context) error {
	var g string
	if _, err := w.conn.Call(ctx, callTimeout, WhereCheck, func(ctx context.Context, c valkey.Client) (err error) {
		g, err = marker(ctx, c)
		return err
	}); err != nil || g != "" {
		return err
	}
	users, err := w.list(ctx)
	if err != nil {
		return fmt.Errorf("listing blockers: %w", err)
	}
	for len(users) > 0 {
		batch := users[:min(len(users), scanCount)]
		users = users[len(batch):]
		if _, err := w.conn.Call(ctx, callTimeout, WhereCheck, func(ctx context.Context, c valkey.Client) error {
			return c.Do(ctx, c.B().Sadd().Key(setKey).Member(batch...).Build()).Error()
		}); err != nil {
			return err
		}
	}
	gen := make([]byte, 8)
	_, _ = rand.Read(gen)
	_, err = w.conn.Call(ctx, callTimeout, WhereCheck, func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Set().Key(markerKey).Value(hex.EncodeToString(gen)).Nx().Build()).Error()
	})
	if valkey.IsValkeyNil(err) { // another instance set it first
		err = nil
	}
	if err == nil {
		w.log.Info("blockers: rebuilt the set of users who block anyone from the database")
	}
	return err
}
