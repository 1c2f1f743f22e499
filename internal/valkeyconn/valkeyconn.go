// Package valkeyconn is the one connection layer to Valkey (or Redis) of the edge modules and
// the app server: a valkey-go client for one server or a cluster (Config), made in the
// background so that a Caddy config or the app server starts while Valkey is down, and a
// circuit breaker, so that callers stop asking (and waiting for) a Valkey that has failed a
// few calls in a row until a probe succeeds again. The same breaker and timeouts apply to a
// single server and to a cluster; on a cluster the client follows MOVED and ASK redirects,
// failovers and resharding itself.
//
// Callers bound every call with a short timeout through Call, which also turns a panic of
// the call (valkey-go's command builder panics on a multi-key command whose keys are in
// different cluster slots) into an error:
//
//	err := conn.Call(ctx, 20*time.Millisecond, func(ctx context.Context, c valkey.Client) error {
//		return c.Do(ctx, c.B().Get().Key(k).Build()).Error()
//	})
//	if err != nil { ... fall back: not connected, breaker open, timeout or error ... }
//
// On a cluster, every command and script must touch one slot: keys that go together share a
// hash tag ({...}) chosen on purpose by their package.
package valkeyconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
)

// ErrNotConnected is what a caller gets while the first connection is being made.
var ErrNotConnected = errors.New("not connected to valkey")

// Options are a Conn's settings besides the server's.
type Options struct {
	// Name names the breaker and the connection in logs.
	Name string
	// OpenFor is the breaker's first open period after three failures in a row; it doubles
	// on repeated trips, up to 30s.
	OpenFor time.Duration
	// OnChange, if not nil, is called on each of the breaker's state changes.
	OnChange func(from, to breaker.State)
	// Logger logs connection failures (once per run of failures) and recovered panics; nil
	// logs nothing.
	Logger *zap.Logger
	// DialTimeout bounds each connection attempt; default 1s.
	DialTimeout time.Duration
	// ProbeInterval is how often Valkey is probed (PING, off the request path) while the
	// breaker is not closed: the first answer closes it, so callers are back on Valkey
	// within about an interval of its return instead of after the breaker's open period.
	// Default 100ms.
	ProbeInterval time.Duration
	// ProbeTimeout bounds each probe; default 250ms, longer than a request's budget, so
	// that a Valkey that answers slowly after a restart is not left alone for long.
	ProbeTimeout time.Duration
}

// Conn is a Valkey server's or cluster's client and the breaker around it.
type Conn struct {
	// Config is the server or cluster, with credentials already resolved.
	Config Config
	// Breaker guards the calls: three failures (errors or timeouts) in a row open it, first
	// for Options.OpenFor, doubling on repeated trips up to 30s.
	Breaker *breaker.Breaker

	opt    Options
	client atomic.Pointer[valkey.Client]
	stop   chan struct{}
	done   sync.WaitGroup
}

// New returns a Conn for cfg and connects in the background, retrying with a growing pause
// until it succeeds or Close is called.
func New(cfg Config, opt Options) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := cfg.clientOption(); err != nil {
		return nil, err
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = time.Second
	}
	if opt.ProbeInterval <= 0 {
		opt.ProbeInterval = 100 * time.Millisecond
	}
	if opt.ProbeTimeout <= 0 {
		opt.ProbeTimeout = 250 * time.Millisecond
	}
	b, err := breaker.New(opt.Name, breaker.Settings{
		ConsecutiveFailures: 3,
		OpenDuration:        opt.OpenFor,
		MaxOpenDuration:     max(opt.OpenFor, 30*time.Second),
		HalfOpenProbes:      1,
	}, opt.OnChange)
	if err != nil {
		return nil, err
	}
	c := &Conn{Config: cfg, Breaker: b, opt: opt, stop: make(chan struct{})}
	panics.Go(&c.done, opt.Logger, "valkey.connect", c.connect)
	panics.Go(&c.done, opt.Logger, "valkey.probe", c.probe)
	return c, nil
}

// probe closes the breaker as soon as Valkey answers a PING again, until Close. A breaker
// an operator forced open stays open.
func (c *Conn) probe() {
	t := time.NewTicker(c.opt.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		client := c.Client()
		if client == nil || c.Breaker.State() == breaker.Closed || c.Breaker.Snapshot().Forced {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opt.ProbeTimeout)
		err := c.ping(ctx, client)
		cancel()
		if err == nil {
			c.Breaker.Close()
		}
	}
}

// ping sends PING to every node the client knows, in parallel, and returns nil only if
// all of them answered: the server, or every node of a cluster in the client's view of it.
// A keyless PING to a cluster client goes to any one node, which may be a replica that
// answers while its shard has no primary (all primaries frozen, or one dead and not yet
// replaced): that would close the breaker in the middle of the outage, and let calls wait
// on the dead shard again every probe interval.
func (c *Conn) ping(ctx context.Context, client valkey.Client) error {
	nodes := client.Nodes()
	errs := make(chan error, len(nodes))
	for addr, n := range nodes {
		go func() {
			var err error
			defer func() { errs <- err }()
			defer panics.Recover(c.opt.Logger, "valkey.probe", &err)
			if err = n.Do(ctx, n.B().Ping().Build()).Error(); err != nil {
				err = fmt.Errorf("%s: %w", addr, err)
			}
		}()
	}
	var err error
	for range nodes {
		err = errors.Join(err, <-errs)
	}
	return err
}

// connect makes the client, retrying with a growing pause.
func (c *Conn) connect() {
	pause := 100 * time.Millisecond
	logged := false
	for {
		client, err := c.dial()
		if err == nil {
			c.client.Store(&client)
			if logged && c.opt.Logger != nil {
				c.opt.Logger.Info("connected to valkey", zap.String("valkey", c.opt.Name))
			}
			return
		}
		if !logged && c.opt.Logger != nil {
			c.opt.Logger.Warn("cannot connect to valkey yet; retrying in the background",
				zap.String("valkey", c.opt.Name), zap.Error(err))
			logged = true
		}
		select {
		case <-c.stop:
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// dial makes the client.
func (c *Conn) dial() (valkey.Client, error) { return c.Config.NewClient(c.opt.DialTimeout) }

// NewClient makes a valkey-go client for c now, each connection attempt bounded by
// dialTimeout (and each write by it, when positive): for callers that manage the client
// themselves, such as a health probe; most callers use a Conn.
func (c Config) NewClient(dialTimeout time.Duration) (valkey.Client, error) {
	opt, err := c.clientOption()
	if err != nil {
		return nil, err
	}
	opt.Dialer = net.Dialer{Timeout: dialTimeout}
	client, err := valkey.NewClient(opt)
	if err != nil {
		return nil, err
	}
	if c.Cluster && client.Mode() != valkey.ClientModeCluster {
		client.Close()
		return nil, fmt.Errorf("valkey at %s is not a cluster (cluster mode is required by the config)", c)
	}
	return client, nil
}

// Client returns the client, or nil until the first connection succeeded.
func (c *Conn) Client() valkey.Client {
	if p := c.client.Load(); p != nil {
		return *p
	}
	return nil
}

// IsCluster reports whether the client (once connected) is a cluster client.
func (c *Conn) IsCluster() bool {
	cl := c.Client()
	return cl != nil && cl.Mode() == valkey.ClientModeCluster
}

// Available reports whether calls may be made now: connected, with the breaker closed.
func (c *Conn) Available() bool {
	return c.client.Load() != nil && c.Breaker.State() == breaker.Closed
}

// Call runs fn with the client under the breaker, bounded by timeout, and reports its result
// to the breaker. It returns ErrNotConnected before the first connection, breaker.ErrOpen
// while the breaker is open, and fn's error (a timeout when the deadline passes first)
// otherwise; a panic in fn is recovered, logged, counted (muejam_edge_panics_total{where})
// and returned as an error. took is the time fn ran.
func (c *Conn) Call(ctx context.Context, timeout time.Duration, where string, fn func(ctx context.Context, client valkey.Client) error) (took time.Duration, err error) {
	client := c.Client()
	if client == nil {
		return 0, ErrNotConnected
	}
	done, err := c.Breaker.Allow()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err = c.run(ctx, client, where, fn)
	took = time.Since(start)
	done(breaker.ResultOf(err), took)
	return took, err
}

// run calls fn, its panic turned into an error.
func (c *Conn) run(ctx context.Context, client valkey.Client, where string, fn func(ctx context.Context, client valkey.Client) error) (err error) {
	defer panics.Recover(c.opt.Logger, where, &err)
	return fn(ctx, client)
}

// Close stops connecting and closes the client.
func (c *Conn) Close() {
	close(c.stop)
	c.done.Wait()
	if client := c.Client(); client != nil {
		client.Close()
	}
}
