package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/valkeyconn"
)

// slidingLog is the Valkey side of a decision, one EVALSHA: the same exact sliding-window
// log as Windows, in a sorted set of admitted events scored by Valkey's own clock in
// microseconds (so edge nodes' clocks do not matter), trimmed, counted, added to and given
// an expiry atomically.
//
//	KEYS[1] the zone key, muejam:rl:<zone>:<key>
//	ARGV[1] window in microseconds, ARGV[2] limit, ARGV[3] a member unique to this event
//
// It returns {admitted 0|1, events in the window, microseconds until the oldest leaves}.
var slidingLog = valkey.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local ok = 0
if n < limit then
	redis.call('ZADD', KEYS[1], now, ARGV[3])
	redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
	n = n + 1
	ok = 1
end
local reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then
	reset = tonumber(oldest[2]) + window - now
end
return {ok, n, reset}
`)

// keyPrefix namespaces the limiter's keys in Valkey.
const keyPrefix = "muejam:rl:"

// remote is a Valkey server shared by the zones that name its address, guarded by the
// connection's breaker: once Valkey has failed a few calls in a row, decisions stop asking it
// (and stop waiting for it) until the breaker's open period ends and a probe succeeds.
type remote struct {
	*valkeyconn.Conn
	node string        // prefix of this process's event members
	seq  atomic.Uint64 // suffix of this process's event members
}

// newRemote returns a remote for addr and connects to it in the background, so that a config
// loads while Valkey is down.
func newRemote(addr string, openFor time.Duration, onChange func(from, to breaker.State)) (*remote, error) {
	c, err := valkeyconn.New(addr, "valkey "+addr, openFor, onChange)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &remote{Conn: c, node: hex.EncodeToString(id) + ":"}, nil
}

// remoteDecision is Valkey's answer for one event.
type remoteDecision struct {
	Decision
	// Count is the number of events in the window, this one included when admitted.
	Count int
}

// decide asks Valkey about one event of zone's key. It returns breaker.ErrOpen without
// calling when the breaker is open, valkeyconn.ErrNotConnected before the first connection, and the
// call's error (a timeout when ctx ends first) otherwise; the caller falls back on any error.
func (r *remote) decide(ctx context.Context, zone, key string, limit int, window time.Duration) (remoteDecision, time.Duration, error) {
	client := r.Client()
	if client == nil {
		return remoteDecision{}, 0, valkeyconn.ErrNotConnected
	}
	done, err := r.Breaker.Allow()
	if err != nil {
		return remoteDecision{}, 0, err
	}
	start := time.Now()
	member := r.node + strconv.FormatUint(r.seq.Add(1), 36)
	vals, err := slidingLog.Exec(ctx, client, []string{keyPrefix + zone + ":" + key},
		[]string{strconv.FormatInt(window.Microseconds(), 10), strconv.Itoa(limit), member}).AsIntSlice()
	if err == nil && len(vals) != 3 {
		err = errors.New("valkey: unexpected script reply")
	}
	took := time.Since(start)
	done(breaker.ResultOf(err), took)
	if err != nil {
		return remoteDecision{}, took, err
	}
	d := remoteDecision{Count: int(vals[1])}
	d.Allowed = vals[0] == 1
	d.Remaining = max(0, limit-d.Count)
	d.Reset = time.Duration(vals[2]) * time.Microsecond
	return d, took, nil
}
