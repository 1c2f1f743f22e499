package blockers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

// db stands for the blocks table: the users who block anyone, as the app lists them. While
// held, listing waits (a rebuild of the set cannot finish).
type db struct {
	mu    sync.Mutex
	users []string
	held  chan struct{}
}

func (d *db) list(ctx context.Context) ([]string, error) {
	d.mu.Lock()
	held := d.held
	d.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.users), nil
}

// hold makes listing wait until the returned function is called.
func (d *db) hold() (release func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.held = make(chan struct{})
	held := d.held
	return func() { close(held) }
}

func conn(t *testing.T, cfg valkeyconn.Config) *valkeyconn.Conn {
	t.Helper()
	c, err := valkeyconn.New(cfg, valkeyconn.Options{Name: "blockers test", OpenFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// setup starts a Writer (whose database lists old) and two Followers (two edge nodes) on
// cfg, and waits until both trust the set.
func setup(t *testing.T, cfg valkeyconn.Config, old ...string) (*Writer, []*Follower, *db) {
	t.Helper()
	log := zaptest.NewLogger(t)
	d := &db{users: old}
	w := NewWriter(conn(t, cfg), time.Second, d.list, log)
	t.Cleanup(w.Close)
	var fs []*Follower
	for range 2 {
		f := NewFollower(conn(t, cfg), log)
		t.Cleanup(f.Close)
		fs = append(fs, f)
	}
	for i, f := range fs {
		testenv.Eventually(t, 5*time.Second, fmt.Sprintf("follower %d trusts the set", i), f.Trusted)
	}
	return w, fs, d
}

// TestAddReachesEveryNodeBeforeItReturns: on one server and on a cluster, a user the
// database lists and a user added are blockers on every node as soon as Add returns,
// anonymous readers and everyone else share, and odd user ids survive the messages.
func TestAddReachesEveryNodeBeforeItReturns(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) valkeyconn.Config
	}{
		{"standalone", func(t *testing.T) valkeyconn.Config {
			return valkeyconn.Config{Addresses: []string{testenv.NewValkey(t)}}
		}},
		{"cluster", func(t *testing.T) valkeyconn.Config {
			return valkeyconn.Config{Addresses: testenv.StartStableValkeyCluster(t).Seeds(), Cluster: true}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, fs, _ := setup(t, tc.cfg(t), "old-blocker")
			for _, f := range fs {
				if !f.Shares("") || !f.Shares("reader") || f.Shares("old-blocker") {
					t.Fatalf("loaded set: Shares(anonymous, reader, old-blocker) = %v %v %v, want true true false",
						f.Shares(""), f.Shares("reader"), f.Shares("old-blocker"))
				}
			}
			for i, user := range []string{"new-blocker", "odd id+with spaces%20&=", "ünïcode"} {
				if err := w.Add(context.Background(), user); err != nil {
					t.Fatalf("Add(%q): %v", user, err)
				}
				for j, f := range fs {
					if f.Shares(user) {
						t.Errorf("add %d: node %d still shares with %q once Add returned", i, j, user)
					}
				}
			}
			if got := fs[0].Size(); got != 4 {
				t.Errorf("node 0 holds %d blockers, want 4", got)
			}
		})
	}
}

// TestLostDataIsNotTrusted: a Valkey that lost its data (FLUSHALL) leaves no marker: every
// node stops sharing with signed-in readers until the Writer has rebuilt the set from the
// database, and what was added before the loss is still known after it.
func TestLostDataIsNotTrusted(t *testing.T) {
	addr := testenv.NewValkey(t)
	w, fs, d := setup(t, valkeyconn.Config{Addresses: []string{addr}}, "listed")
	if err := w.Add(context.Background(), "added"); err != nil {
		t.Fatal(err)
	}
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The database answers the rebuild only once both nodes have stopped trusting the set.
	release := d.hold()
	if err := client.Do(context.Background(), client.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "both nodes stop trusting the set Valkey lost", func() bool { return !fs[0].Trusted() && !fs[1].Trusted() })
	for _, user := range []string{"reader", "listed", "added"} {
		if fs[0].Shares(user) || fs[1].Shares(user) {
			t.Errorf("while the set is lost a node shares with signed-in %q", user)
		}
	}
	release()
	testenv.Eventually(t, 5*time.Second, "the set rebuilt and trusted again", func() bool { return fs[0].Trusted() && fs[1].Trusted() })
	n, err := client.Do(context.Background(), client.B().Sismember().Key(setKey).Member("listed").Build()).AsBool()
	if err != nil || !n {
		t.Errorf("after the rebuild SISMEMBER listed = %v %v, want true (from the database)", n, err)
	}
	for _, user := range []string{"listed", "added"} {
		if fs[0].Shares(user) || fs[1].Shares(user) {
			t.Errorf("after the loss a node shares with blocker %q", user)
		}
	}
	if !fs[0].Shares("reader") {
		t.Error("after the rebuild a reader who blocks nobody is not shared with")
	}
}

// TestValkeyDown: while Valkey is down nobody signed in is shared with, and Add fails (the
// block must not be made); once it is back (empty) the set is rebuilt and trusted again.
func TestValkeyDown(t *testing.T) {
	v := testenv.StartValkey(t)
	w, fs, _ := setup(t, valkeyconn.Config{Addresses: []string{v.Addr}}, "listed")
	v.Stop(t)
	testenv.Eventually(t, 5*time.Second, "nodes stop sharing with signed-in readers", func() bool { return !fs[0].Shares("reader") && !fs[1].Shares("reader") })
	if !fs[0].Shares("") {
		t.Error("an anonymous reader is not shared with while Valkey is down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := w.Add(ctx, "during"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Add with Valkey down = %v, want ErrUnavailable", err)
	}
	v.Start(t)
	testenv.Eventually(t, 5*time.Second, "nodes trust the rebuilt set", func() bool { return fs[0].Trusted() && fs[1].Trusted() })
	if fs[0].Shares("listed") || !fs[0].Shares("reader") {
		t.Errorf("after the return Shares(listed, reader) = %v %v, want false true", fs[0].Shares("listed"), fs[0].Shares("reader"))
	}
}
