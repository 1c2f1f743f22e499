package health

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valkey-io/valkey-go"
)

// Postgres probes a PostgreSQL node through its pool and checks its role: a node expected to
// be the primary must not be in recovery, a replica must be.
func Postgres(pool *pgxpool.Pool, wantPrimary bool) Probe {
	return func(ctx context.Context) (map[string]any, error) {
		var inRecovery bool
		if err := pool.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return nil, err
		}
		role := "primary"
		if inRecovery {
			role = "replica"
		}
		details := map[string]any{"role": role}
		if wantPrimary == inRecovery {
			return details, fmt.Errorf("node is a %s, expected the other role", role)
		}
		return details, nil
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
