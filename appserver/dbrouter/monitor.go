package dbrouter

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// NodeStatus is what the router knows about a node from its last check.
type NodeStatus struct {
	// Name is the configured name of the node.
	Name string `json:"name"`
	// Up reports that the node answered its last check and no query has failed on it since
	// with a connection error.
	Up bool `json:"up"`
	// Primary reports that the node is not in recovery (pg_is_in_recovery() is false).
	Primary bool `json:"primary"`
	// InRotation reports that reads may go to this replica now (up, lag under MaxLag).
	InRotation bool `json:"in_rotation"`
	// LSN is the node's replay position (a replica) or current WAL position (the primary).
	LSN uint64 `json:"lsn"`
	// LagBytes is how far the replica's replay is behind the primary's last known WAL
	// position; 0 for the primary.
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds estimates how long ago the primary was at the oldest position the replica
	// has not replayed: it is 0 whenever LagBytes is 0, so it does not grow on an idle
	// primary, and it may be short of the truth by up to one check interval.
	LagSeconds float64 `json:"lag_seconds"`
	// Error is the failure of the last check, if any.
	Error string `json:"error,omitempty"`
	// CheckedAt is when the node was last checked.
	CheckedAt time.Time `json:"checked_at"`
}

// Role is "primary" or "replica".
func (s NodeStatus) Role() string {
	if s.Primary {
		return "primary"
	}
	return "replica"
}

// Status returns what the router knows about every node, in configuration order, without
// querying anything.
func (r *Router) Status() []NodeStatus {
	out := make([]NodeStatus, len(r.nodes))
	maxLag := r.cfg.MaxLag.Seconds()
	for i, n := range r.nodes {
		s := *n.status.Load()
		s.Up = n.up.Load()
		s.InRotation = s.Up && !s.Primary && s.LagSeconds <= maxLag
		out[i] = s
	}
	return out
}

// Check checks every node now (as the monitor does each interval), updates routing and
// returns the statuses. Callers that arrive while a check is running wait for the next one
// to start, so concurrent callers share checks and every result is fresher than the call.
func (r *Router) Check(ctx context.Context) []NodeStatus {
	start := time.Now()
	r.checkMu.Lock()
	if r.lastCheck.Before(start) {
		r.checkLocked(ctx)
	}
	r.checkMu.Unlock()
	return r.Status()
}

func (r *Router) monitor(ctx context.Context) {
	defer close(r.done)
	tick := time.NewTicker(r.cfg.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.recheck:
		}
		r.checkAll(ctx)
	}
}

// probe is the outcome of checking one node.
type probe struct {
	err        error
	inRecovery bool
	lsn        uint64
	replayAge  *float64 // seconds since the last replayed transaction, replicas only
	backlog    bool     // a replica has received WAL it has not replayed yet
}

const probeSQL = `select pg_is_in_recovery(),
	(case when pg_is_in_recovery() then coalesce(pg_last_wal_replay_lsn(), '0/0') else pg_current_wal_lsn() end - '0/0')::int8,
	extract(epoch from now() - pg_last_xact_replay_timestamp())::float8,
	coalesce(pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn(), false)`

func (r *Router) probe(ctx context.Context, n *node) probe {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CheckTimeout)
	defer cancel()
	var p probe
	var lsn int64
	p.err = n.pool.QueryRow(ctx, probeSQL).Scan(&p.inRecovery, &lsn, &p.replayAge, &p.backlog)
	if isAuthFailure(p.err) { // OnAuthFailure has run: try the refreshed password
		p.err = n.pool.QueryRow(ctx, probeSQL).Scan(&p.inRecovery, &lsn, &p.replayAge, &p.backlog)
	}
	p.lsn = uint64(lsn)
	return p
}

// checkAll runs a check.
func (r *Router) checkAll(ctx context.Context) {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	r.checkLocked(ctx)
}

// checkLocked checks every node concurrently, then updates each node's status, the write
// target and the metrics. The caller holds checkMu.
func (r *Router) checkLocked(ctx context.Context) {
	r.lastCheck = time.Now()
	probes := make([]probe, len(r.nodes))
	var wg sync.WaitGroup
	for i, n := range r.nodes {
		wg.Go(func() { probes[i] = r.probe(ctx, n) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // the caller gave up (or the router is closing): the probes say nothing
	}
	now := time.Now()

	cur := r.primary.Load()
	var primary *node
	primaries, at := 0, 0
	for i, n := range r.nodes {
		if probes[i].err == nil && !probes[i].inRecovery {
			primaries++
			if primary == nil || n == cur {
				primary, at = n, i
			}
		}
	}
	if primary != nil {
		r.hist.add(now, probes[at].lsn)
	}
	if primaries > 1 {
		r.cfg.Logger.Error("more than one node is out of recovery; writes stay on one of them",
			zap.String("primary", primary.name), zap.Int("primaries", primaries))
	}

	for i, n := range r.nodes {
		p := probes[i]
		if p.err != nil && !isConnError(p.err) && !n.missed && n.up.Load() {
			// One slow check is not an outage: the node keeps its state until the next one.
			n.missed = true
			continue
		}
		n.missed = false
		s := NodeStatus{Name: n.name, CheckedAt: now}
		if p.err != nil {
			old := n.status.Load()
			s.Primary, s.LSN, s.LagBytes, s.LagSeconds = old.Primary, old.LSN, old.LagBytes, old.LagSeconds
			s.Error = p.err.Error()
		} else {
			s.Up, s.Primary, s.LSN = true, !p.inRecovery, p.lsn
			if !s.Primary {
				replayAge := p.replayAge
				if !p.backlog {
					replayAge = nil // see lag
				}
				s.LagBytes, s.LagSeconds = r.hist.lag(now, p.lsn, replayAge)
			}
		}
		if was := n.up.Load(); was != s.Up {
			if s.Up {
				r.cfg.Logger.Info("database node up", zap.String("node", n.name), zap.String("role", s.Role()))
			} else {
				r.cfg.Logger.Warn("database node down", zap.String("node", n.name), zap.String("error", s.Error))
			}
		}
		n.status.Store(&s)
		n.up.Store(s.Up)
		r.metrics.observe(s)
	}

	if primary != nil && primary != cur {
		r.primary.Store(primary)
		if cur != nil && r.checked {
			r.metrics.failovers.Inc()
			r.cfg.Logger.Warn("new primary", zap.String("node", primary.name), zap.String("previous", cur.name))
		}
	}
	r.checked = true
}

// lsnHistory remembers when the primary was first seen at each WAL position, to estimate a
// replica's lag in time from its replay position without trusting any clock but ours.
type lsnHistory struct {
	samples []lsnSample // oldest first
}

type lsnSample struct {
	at  time.Time
	lsn uint64
}

const maxSamples = 1024

// add records the primary's position at a check, if it moved.
func (h *lsnHistory) add(at time.Time, lsn uint64) {
	if n := len(h.samples); n > 0 && h.samples[n-1].lsn >= lsn {
		return
	}
	if len(h.samples) == maxSamples {
		h.samples = append(h.samples[:0], h.samples[1:]...)
	}
	h.samples = append(h.samples, lsnSample{at, lsn})
}

// lag returns how far a replica at replay position lsn is behind: bytes against the
// primary's last known position, and seconds since the primary was first seen past lsn.
// When that happened before the history starts, the age of the replica's last replayed
// transaction (replayAge) is used if larger; the caller passes it only while the replica has
// received WAL it has not replayed: on an idle system the last transaction can be hours old
// while the replica, replaying all it received, is a few bytes of non-transactional WAL
// behind, and that age would keep a current replica out of rotation.
func (h *lsnHistory) lag(now time.Time, lsn uint64, replayAge *float64) (int64, float64) {
	n := len(h.samples)
	if n == 0 || h.samples[n-1].lsn <= lsn {
		return 0, 0
	}
	bytes := int64(h.samples[n-1].lsn - lsn)
	i := 0
	for i < n && h.samples[i].lsn <= lsn {
		i++
	}
	secs := now.Sub(h.samples[i].at).Seconds()
	if i == 0 && replayAge != nil && *replayAge > secs {
		// The replica was behind before our first sample.
		secs = *replayAge
	}
	return bytes, secs
}
