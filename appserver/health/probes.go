package health

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/muejam/edge/appserver/dbrouter"
)

// DatabaseNode probes the database node of the router named name: it runs a router check
// (concurrent probes share one) and reports the node's role, replication lag and whether it
// serves reads. The probe fails when the node is unreachable; a lagging replica is up (the
// router sends its reads elsewhere).
func DatabaseNode(r *dbrouter.Router, name string) Probe {
	return func(ctx context.Context) (map[string]any, error) {
		for _, s := range r.Check(ctx) {
			if s.Name != name {
				continue
			}
			details := map[string]any{
				"role":        s.Role(),
				"lag_bytes":   s.LagBytes,
				"lag_seconds": s.LagSeconds,
				"in_rotation": s.InRotation,
			}
			if !s.Up {
				return details, fmt.Errorf("node unreachable: %s", s.Error)
			}
			return details, nil
		}
		return nil, fmt.Errorf("no database node %q", name)
	}
}

// Valkey probes a Valkey (or Redis) server with PING. The client is created on first use and
// again after a failed creation, so the app server starts, and recovers, while Valkey is down.
type Valkey struct {
	addr    string
	timeout time.Duration

	mu     sync.Mutex
	client valkey.Client
}

// NewValkey returns a Valkey probe for addr (host:port); timeout bounds dialing and each
// command.
func NewValkey(addr string, timeout time.Duration) *Valkey {
	return &Valkey{addr: addr, timeout: timeout}
}

// Probe is the health probe.
func (v *Valkey) Probe(ctx context.Context) (map[string]any, error) {
	c, err := v.get()
	if err != nil {
		return nil, err
	}
	return nil, c.Do(ctx, c.B().Ping().Build()).Error()
}

func (v *Valkey) get() (valkey.Client, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client != nil {
		return v.client, nil
	}
	c, err := valkey.NewClient(valkey.ClientOption{
		InitAddress:       []string{v.addr},
		ForceSingleClient: true,
		DisableCache:      true,
		Dialer:            net.Dialer{Timeout: v.timeout},
		ConnWriteTimeout:  v.timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to valkey: %w", err)
	}
	v.client = c
	return c, nil
}

// Close releases the client, if one was made.
func (v *Valkey) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client != nil {
		v.client.Close()
		v.client = nil
	}
}
