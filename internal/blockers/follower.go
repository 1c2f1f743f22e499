package blockers

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/internal/valkeytags"
)

// Follower is an edge node's copy of the set: loaded on each subscription to the add
// channel, added to by each message, trusted while the marker keeps the generation it was
// loaded with and Valkey is reachable.
type Follower struct {
	conn *valkeyconn.Conn
	bus  *valkeytags.Bus
	log  *zap.Logger

	mu  sync.RWMutex
	set map[string]struct{}
	gen string // the marker the set was loaded with; "" while it is not trusted

	trusted atomic.Bool
	epoch   atomic.Uint64 // subscriptions confirmed: a load trusts the set only within one
	reload  chan struct{}
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// NewFollower returns a Follower on conn (which stays the caller's) and starts following
// the set until Close.
func NewFollower(conn *valkeyconn.Conn, log *zap.Logger) *Follower {
	f := &Follower{conn: conn, log: log, set: map[string]struct{}{}, reload: make(chan struct{}, 1)}
	// Messages may have been missed while unsubscribed: the set is not trusted until it has
	// been loaded again.
	f.bus = newBus(conn, log, func(bool) {
		f.epoch.Add(1)
		f.distrust()
		select {
		case f.reload <- struct{}{}:
		default:
		}
	}, f.add)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	panics.Go(&f.done, log, WhereSubscriber, func() { f.bus.Subscribe(ctx) })
	panics.Go(&f.done, log, WhereCheck, func() { f.follow(ctx) })
	return f
}

// Close stops following.
func (f *Follower) Close() {
	f.cancel()
	f.done.Wait()
}

// Shares reports whether user (the verified user id; "" when anonymous) sees what an
// anonymous reader sees: anonymous, or known, by a set that is trusted now, to block nobody.
func (f *Follower) Shares(user string) bool {
	if user == "" {
		return true
	}
	if !f.Trusted() {
		return false
	}
	f.mu.RLock()
	_, blocks := f.set[user]
	f.mu.RUnlock()
	return !blocks
}

// Trusted reports whether the set is trusted now.
func (f *Follower) Trusted() bool { return f.trusted.Load() && f.conn.Available() }

// Size returns how many users the set holds.
func (f *Follower) Size() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.set)
}

// add adds the users a message names.
func (f *Follower) add(words []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range words {
		if u, ok := decode(w); ok {
			f.set[u] = struct{}{}
		}
	}
}

func (f *Follower) distrust() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen = ""
	f.trusted.Store(false)
}

// follow loads the set after each subscription and checks every checkEvery (retryEvery while
// the set is not trusted) that the marker still holds the generation it was loaded with,
// loading it again when not.
func (f *Follower) follow(ctx context.Context) {
	failing := false
	for {
		wait := checkEvery
		if !f.trusted.Load() {
			wait = retryEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-f.reload:
		case <-time.After(wait):
		}
		if !f.bus.Subscribed() {
			continue
		}
		err := f.check(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			f.log.Warn("blockers: cannot load the set of users who block anyone; signed-in readers get their own answers meanwhile", zap.Error(err))
			failing = true
		case err == nil && failing:
			failing = false
		}
	}
}

// check compares the marker with the loaded generation and, when they differ, loads the
// set: the marker read before and after the members must be the same generation.
func (f *Follower) check(ctx context.Context) error {
	epoch := f.epoch.Load()
	var before string
	if _, err := f.conn.Call(ctx, callTimeout, WhereCheck, func(ctx context.Context, c valkey.Client) (err error) {
		before, err = marker(ctx, c)
		return err
	}); err != nil {
		f.distrust()
		return err
	}
	f.mu.RLock()
	current := f.gen
	f.mu.RUnlock()
	if before != "" && before == current {
		return nil
	}
	f.distrust()
	if before == "" {
		return nil // not complete: an app instance rebuilds it
	}
	var loaded []string
	var after string
	if _, err := f.conn.Call(ctx, 10*callTimeout, WhereCheck, func(ctx context.Context, c valkey.Client) error {
		if err := members(ctx, c, func(m string) { loaded = append(loaded, m) }); err != nil {
			return err
		}
		var err error
		after, err = marker(ctx, c)
		return err
	}); err != nil || after != before {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range loaded {
		f.set[u] = struct{}{}
	}
	if f.epoch.Load() != epoch { // resubscribed meanwhile: what was missed may not be loaded
		return nil
	}
	f.gen = before
	f.trusted.Store(true)
	f.log.Info("blockers: loaded the set of users who block anyone", zap.Int("users", len(f.set)))
	return nil
}
