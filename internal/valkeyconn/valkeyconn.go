// Package valkeyconn is the edge modules' connection to a shared Valkey (or Redis) server: a
// valkey-go client made in the background, so that a Caddy config loads while Valkey is down,
// and a circuit breaker, so that callers stop asking (and waiting for) a Valkey that has
// failed a few calls in a row until a probe succeeds again.
//
// Callers bound every call with a short context deadline and report its result:
//
//	c := conn.Client()
//	if c == nil { ... fall back: not connected yet ... }
//	done, err := conn.Breaker.Allow()
//	if err != nil { ... fall back: breaker open ... }
//	start := time.Now()
//	err = c.Do(ctx, ...).Error()
//	done(breaker.ResultOf(err), time.Since(start))
package valkeyconn

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/muejam/edge/internal/breaker"
)

// ErrNotConnected is what a caller reports while the first connection is being made.
var ErrNotConnected = errors.New("not connected to valkey")

// Conn is a Valkey server's client and the breaker around it.
type Conn struct {
	// Addr is the server's host:port.
	Addr string
	// Breaker guards the calls to the server: three failures (errors or timeouts) in a row
	// open it, first for the open duration given to New, doubling on repeated trips up to 30s.
	Breaker *breaker.Breaker

	client atomic.Pointer[valkey.Client]
	stop   chan struct{}
	done   sync.WaitGroup
}

// New returns a Conn for addr and connects in the background, retrying with a growing pause
// until it succeeds or Close is called. name names the breaker in logs; onChange, if not
// nil, is called on each of its state changes.
func New(addr, name string, openFor time.Duration, onChange func(from, to breaker.State)) (*Conn, error) {
	b, err := breaker.New(name, breaker.Settings{
		ConsecutiveFailures: 3,
		OpenDuration:        openFor,
		MaxOpenDuration:     max(openFor, 30*time.Second),
		HalfOpenProbes:      1,
	}, onChange)
	if err != nil {
		return nil, err
	}
	c := &Conn{Addr: addr, Breaker: b, stop: make(chan struct{})}
	c.done.Add(1)
	go c.connect()
	return c, nil
}

// connect makes the client, retrying with a growing pause.
func (c *Conn) connect() {
	defer c.done.Done()
	pause := 100 * time.Millisecond
	for {
		client, err := valkey.NewClient(valkey.ClientOption{
			InitAddress:  []string{c.Addr},
			DisableCache: true,
			Dialer:       net.Dialer{Timeout: time.Second},
		})
		if err == nil {
			c.client.Store(&client)
			return
		}
		select {
		case <-c.stop:
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// Client returns the client, or nil until the first connection succeeded.
func (c *Conn) Client() valkey.Client {
	if p := c.client.Load(); p != nil {
		return *p
	}
	return nil
}

// Available reports whether calls may be made now: connected, with the breaker closed.
func (c *Conn) Available() bool {
	return c.client.Load() != nil && c.Breaker.State() == breaker.Closed
}

// Close stops connecting and closes the client.
func (c *Conn) Close() {
	close(c.stop)
	c.done.Wait()
	if client := c.Client(); client != nil {
		client.Close()
	}
}
