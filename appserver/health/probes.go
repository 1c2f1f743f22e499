package health

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/internal/valkeyconn"
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

// Valkey probes a Valkey (or Redis) server with PING, or a cluster with CLUSTER INFO (its
// state must be ok: every slot served). The client is created on first use and again after a
// failed creation, so the app server starts, and recovers, while Valkey is down.
type Valkey struct {
	cfg     valkeyconn.Config
	timeout time.Duration

	mu     sync.Mutex
	client valkey.Client
}

// NewValkey returns a Valkey probe for the server or cluster of cfg; timeout bounds dialing.
func NewValkey(cfg valkeyconn.Config, timeout time.Duration) *Valkey {
	return &Valkey{cfg: cfg, timeout: timeout}
}

// Probe is the health probe.
func (v *Valkey) Probe(ctx context.Context) (map[string]any, error) {
	c, err := v.get()
	if err != nil {
		return nil, err
	}
	if c.Mode() != valkey.ClientModeCluster {
		return map[string]any{"mode": "standalone"}, c.Do(ctx, c.B().Ping().Build()).Error()
	}
	info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
	if err != nil {
		return map[string]any{"mode": "cluster"}, err
	}
	details := map[string]any{"mode": "cluster"}
	// RESP3 gives CLUSTER INFO as a verbatim string, whose text follows its format, "txt:".
	for line := range strings.Lines(strings.TrimPrefix(info, "txt:")) {
		k, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "cluster_state" || k == "cluster_known_nodes" || k == "cluster_size") {
			details[k] = val
		}
	}
	if details["cluster_state"] != "ok" {
		return details, fmt.Errorf("cluster state %v", details["cluster_state"])
	}
	return details, nil
}

func (v *Valkey) get() (valkey.Client, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client != nil {
		return v.client, nil
	}
	c, err := v.cfg.NewClient(v.timeout)
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
