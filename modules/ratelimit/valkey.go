package ratelimit

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/valkeyconn"
)

// decideScript is the Valkey side of decisions: the same exact sliding-window log as
// Windows, one sorted set per zone key of admitted events scored by Valkey's own clock in
// microseconds (so edge nodes' clocks do not matter). It decides, in order, k requests that
// have the same zone keys, all in one slot: each key is trimmed and counted once, then each
// request is admitted if every zone that is not a dry run still has room, and an admitted
// request is added to each key that has room for it; a refused request is added to none.
// Finally each key that got events is given an expiry of its window. Atomic, like every
// script: the k requests are decided as if one after the other.
//
//	KEYS    the zone keys, muejam:rl:{<key>}:<zone>, all in one slot
//	ARGV[1] k; ARGV[2..k+1] the requests' members, unique to each request
//	ARGV[k+2+3(i-1)], ARGV[k+3+3(i-1)], ARGV[k+4+3(i-1)]  KEYS[i]'s window in microseconds,
//	        its limit, and 1 for a dry-run zone (else 0)
//
// It returns, for each key, the events in the window before these requests and the
// microseconds until the oldest of them leaves (0 when none); then for each request, 1 if
// admitted (else 0) and, for each key, the events the request found there.
const decideScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local k = tonumber(ARGV[1])
local n = #KEYS
local window, limit, dry, count, added = {}, {}, {}, {}, {}
local res = {}
for i = 1, n do
	local a = k + 3 * i - 1
	window[i] = tonumber(ARGV[a])
	limit[i] = tonumber(ARGV[a + 1])
	dry[i] = ARGV[a + 2] == '1'
	added[i] = {}
	redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window[i])
	count[i] = redis.call('ZCARD', KEYS[i])
	local reset = 0
	if count[i] > 0 then
		local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
		reset = tonumber(oldest[2]) + window[i] - now
	end
	res[#res + 1] = count[i]
	res[#res + 1] = reset
end
for j = 1, k do
	local ok = 1
	for i = 1, n do
		if count[i] >= limit[i] and not dry[i] then
			ok = 0
		end
	end
	res[#res + 1] = ok
	for i = 1, n do
		res[#res + 1] = count[i]
		if ok == 1 and count[i] < limit[i] then
			local m = added[i]
			m[#m + 1] = now
			m[#m + 1] = ARGV[1 + j]
			count[i] = count[i] + 1
		end
	end
end
for i = 1, n do
	if #added[i] > 0 then
		redis.call('ZADD', KEYS[i], unpack(added[i]))
		redis.call('PEXPIRE', KEYS[i], math.ceil(window[i] / 1000) + 1)
	end
end
return res
`

// decideOneScript is decideScript for one request (k = 1), with the same arguments and
// reply, without the bookkeeping of several: a third cheaper for Valkey.
const decideOneScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local res = {}
local ok = 1
for i = 1, n do
	local window = tonumber(ARGV[3 * i])
	redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
	local c = redis.call('ZCARD', KEYS[i])
	local reset = 0
	if c > 0 then
		local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
		reset = tonumber(oldest[2]) + window - now
	end
	if c >= tonumber(ARGV[3 * i + 1]) and ARGV[3 * i + 2] == '0' then
		ok = 0
	end
	res[2 * i - 1] = c
	res[2 * i] = reset
end
res[2 * n + 1] = ok
for i = 1, n do
	res[2 * n + 1 + i] = res[2 * i - 1]
	if ok == 1 and res[2 * i - 1] < tonumber(ARGV[3 * i + 1]) then
		redis.call('ZADD', KEYS[i], now, ARGV[2])
		redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[3 * i]) / 1000) + 1)
	end
end
return res
`

// decideSHA and decideOneSHA are the SHA-1s that EVALSHA names the scripts by.
var decideSHA, decideOneSHA = sha1Hex(decideScript), sha1Hex(decideOneScript)

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// maxBatch is the most requests one script call decides.
const maxBatch = 128

// keyPrefix namespaces the limiter's keys in Valkey.
const keyPrefix = "muejam:rl:"

// valkeyKey is the Valkey key of a zone's key: muejam:rl:{<key>}:<zone>. The hash tag is the
// request's key, so on a cluster the zones that count the same key (user and the per-route
// write limits of one user; the per-address zones of one client) share a slot and are decided
// by one script; the zone name after it keeps their sorted sets apart (a zone name has no
// ':', '{' or '}', so two (key, zone) pairs never make one Valkey key).
func valkeyKey(zone, key string) string {
	return keyPrefix + "{" + key + "}:" + zone
}

// remote is a Valkey server or cluster shared by the zones that name it, guarded by the
// connection's breaker: once Valkey has failed a few calls in a row, decisions stop asking it
// (and stop waiting for it) until the breaker's open period ends and a probe succeeds.
type remote struct {
	*valkeyconn.Conn
	node string        // prefix of this process's event members
	seq  atomic.Uint64 // suffix of this process's event members

	seed    maphash.Seed
	batches [numShards]batchShard
	calls   atomic.Uint64 // script calls of batches sent, for tests
}

// batchShard holds the batches in progress of some key sets.
type batchShard struct {
	mu sync.Mutex
	m  map[uint64]*batch
}

// newRemote returns a remote for cfg and connects to it in the background, so that a config
// loads while Valkey is down.
func newRemote(cfg valkeyconn.Config, openFor time.Duration, logger *zap.Logger) (*remote, error) {
	c, err := valkeyconn.New(cfg, valkeyconn.Options{
		Name:    "rate limiter valkey " + cfg.String(),
		OpenFor: openFor,
		Logger:  logger,
		OnChange: func(from, to breaker.State) {
			logger.Warn("rate limiter valkey breaker changed state",
				zap.Stringer("valkey", cfg), zap.Stringer("from", from), zap.Stringer("to", to))
		},
	})
	if err != nil {
		return nil, err
	}
	return remoteOf(c), nil
}

// remoteOf returns a remote over a connection.
func remoteOf(c *valkeyconn.Conn) *remote {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	r := &remote{Conn: c, node: hex.EncodeToString(id) + ":", seed: maphash.MakeSeed()}
	for i := range r.batches {
		r.batches[i].m = map[uint64]*batch{}
	}
	return r
}

// remoteCheck is one zone's part of a request decided by Valkey.
type remoteCheck struct {
	// Key is the Valkey key (valkeyKey); Slot is its cluster slot, set by decideAll on a
	// cluster, which sorts the checks by it.
	Key  string
	Slot uint16
	// Index is the caller's: the zone the check is for, as the checks get reordered.
	Index int
	// Window, WindowArg and LimitArg are the zone's window and the script's arguments for
	// it; DryRun marks a zone that decides without refusing.
	Window              time.Duration
	WindowArg, LimitArg string
	Limit               int
	DryRun              bool

	// Decision is Valkey's answer for the zone: Allowed when the key had room; Remaining and
	// Reset count the request only if it was admitted.
	Decision Decision

	// What the script answered for Key: the events the request found there, the time until
	// the oldest of them leaves; room when count was under the limit, added when the
	// request's group counted the request.
	room, added bool
	count       int
	reset       time.Duration
}

// errScriptReply is an answer of the script that is not what it returns.
var errScriptReply = errors.New("valkey: unexpected script reply")

// decideAll decides one request in the zones of checks on Valkey, within timeout: it
// returns whether the request was admitted, with each check's Decision set, and the time it
// took. The request is admitted when every zone that is not a dry run has room, and then
// counted in each zone that has room; a refused request stays counted in none.
//
// On one server, or on a cluster when all the keys share a slot, that is one script, one
// round trip. Concurrent requests with the same keys are decided by one script call (group
// commit): while two calls for a set of keys are in flight, the requests for the same keys
// wait and go together in the next call, decided in order as if one after the other. A key
// that many requests hit at once (a flooding client, a busy user) then costs Valkey one
// script per round trip instead of one per request; a request waits at most for a call in
// flight, and never past the Valkey timeout.
//
// On a cluster, when the keys span slots, they are grouped by slot and the groups' scripts
// are sent together (one pipelined round trip, to the nodes that own them in parallel); each
// group counts the request if its own zones all have room. If another group refused, a
// second round trip removes the request's event (ZREM of its unique member) from the groups
// that counted it: on a cluster such a refused request costs two round trips and is counted,
// for the microseconds between them, in the zones of the other slots.
//
// It returns valkeyconn.ErrNotConnected before the first connection, breaker.ErrOpen while
// the breaker is open, and the calls' error (a timeout when timeout passes first, a
// recovered panic) otherwise; the caller then falls back on local windows (what groups
// counted is taken back first, as far as the time left allows).
func (r *remote) decideAll(ctx context.Context, timeout time.Duration, checks []remoteCheck) (admitted bool, took time.Duration, err error) {
	start := time.Now()
	defer func() {
		if took = time.Since(start); errors.Is(err, breaker.ErrOpen) || errors.Is(err, valkeyconn.ErrNotConnected) {
			took = 0 // no call made
		}
	}()
	member := r.node + strconv.FormatUint(r.seq.Add(1), 36)
	if r.IsCluster() && len(checks) > 1 {
		for i := range checks {
			checks[i].Slot = keySlot(checks[i].Key)
		}
		sortBySlot(checks)
		if checks[0].Slot != checks[len(checks)-1].Slot {
			_, err = r.Call(ctx, timeout, "edge_rate_limit.valkey", func(ctx context.Context, c valkey.Client) error {
				var e error
				admitted, e = decideSlots(ctx, c, member, checks)
				return e
			})
			return admitted, 0, err
		}
	}
	admitted, err = r.decideBatched(ctx, start.Add(timeout), member, checks)
	return admitted, 0, err
}

// batch is the state of one set of keys with calls in flight: how many, and the requests
// waiting for the next call.
type batch struct {
	key      uint64 // batchKey of checks
	checks   []remoteCheck
	shard    *batchShard
	inflight int
	pending  []*waiter
}

// maxInflight is how many script calls of one set of keys may be in flight at once: with
// two, the next call is on its way while the previous one is answered, so Valkey never waits
// for a request to be scheduled; the requests that find both in flight wait and go together.
const maxInflight = 2

// waiter is a request decided in a batch.
type waiter struct {
	member string
	checks []remoteCheck
	// deadline is when the request stops waiting for Valkey (and falls back).
	deadline time.Time
	// ch, for a request that waits, gets true when the request is to send the next call
	// (lead: the waiters of that call, itself first), false when its result is in.
	ch    chan bool
	lead  []*waiter
	taken bool  // in a call: its result will come
	ok    bool  // admitted
	err   error // the call's error
}

// batchKey is a hash of what makes requests share a script call: the same keys with the
// same arguments, in the same order (sameKeys checks it).
func (r *remote) batchKey(checks []remoteCheck) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	for i := range checks {
		ch := &checks[i]
		h.WriteString(ch.Key)
		h.WriteByte(0)
		h.WriteString(ch.WindowArg)
		h.WriteByte(0)
		h.WriteString(ch.LimitArg)
		if ch.DryRun {
			h.WriteByte(1)
		}
		h.WriteByte(0)
	}
	return h.Sum64()
}

// sameKeys reports whether two requests' checks can share a script call.
func sameKeys(a, b []remoteCheck) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].WindowArg != b[i].WindowArg || a[i].LimitArg != b[i].LimitArg || a[i].DryRun != b[i].DryRun {
			return false
		}
	}
	return true
}

// errNotSent is the error of the requests of a call that did not answer (a recovered panic
// before the call).
var errNotSent = errors.New("valkey: call not sent")

// errWaited is the error of a request that waited for its batch past its deadline.
var errWaited = errors.New("valkey: no answer within the timeout (waiting for a call in flight)")

// decideBatched decides a request whose keys share a slot, joining the batch of its keys: it
// sends its call at once when fewer than maxInflight are in flight for them, else waits for
// the next call, sent by the first request that waits when a call in flight is answered. A request waits at most until its deadline (the Valkey
// timeout after it started): then it leaves the batch, or ignores its result if its call was
// sent already (the event then counted by Valkey stays counted: on the safe side).
func (r *remote) decideBatched(ctx context.Context, deadline time.Time, member string, checks []remoteCheck) (bool, error) {
	key := r.batchKey(checks)
	sh := &r.batches[key%numShards]
	w := &waiter{member: member, checks: checks, deadline: deadline, taken: true}

	sh.mu.Lock()
	b, busy := sh.m[key]
	if !busy {
		b = &batch{key: key, checks: checks, shard: sh}
		sh.m[key] = b
	}
	if !busy || b.inflight < maxInflight && len(b.pending) == 0 && sameKeys(b.checks, checks) {
		b.inflight++
		sh.mu.Unlock()
		r.send(ctx, b, []*waiter{w})
		return w.ok, w.err
	}
	if !sameKeys(b.checks, checks) { // another set of keys with the same hash: on its own
		sh.mu.Unlock()
		_, err := r.Call(ctx, time.Until(deadline), "edge_rate_limit.valkey", func(ctx context.Context, c valkey.Client) error {
			return decideBatch(ctx, c, []*waiter{w})
		})
		return w.ok, err
	}
	w.ch, w.taken = make(chan bool, 1), false
	b.pending = append(b.pending, w)
	sh.mu.Unlock()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var done <-chan struct{} = ctx.Done()
	for {
		select {
		case lead := <-w.ch:
			if lead {
				r.send(ctx, b, w.lead)
			}
			return w.ok, w.err
		case <-done:
		case <-timer.C:
		}
		sh.mu.Lock()
		if w.lead != nil || w.taken { // picked to send the next call, or in one: see it through
			sh.mu.Unlock()
			if w.lead != nil {
				<-w.ch
				r.send(ctx, b, w.lead)
				return w.ok, w.err
			}
			return false, errWaited
		}
		for i, p := range b.pending {
			if p == w {
				b.pending = append(b.pending[:i], b.pending[i+1:]...)
				break
			}
		}
		sh.mu.Unlock()
		return false, errWaited
	}
}

// send makes the script call for the waiters ws of batch b, the first of them being the
// caller (bounded by its deadline), delivers the results to the others, and hands the next
// call to the first of the requests that wait; when none waits, the batch ends.
func (r *remote) send(ctx context.Context, b *batch, ws []*waiter) {
	err := errNotSent // until the call answers
	defer func() {
		// Whatever happened (a recovered panic included), every waiter gets an answer and
		// the batch goes on or ends.
		for i, w := range ws {
			if err != nil {
				w.ok, w.err = false, err
			}
			if i > 0 {
				w.ch <- false
			}
		}
		sh := b.shard
		sh.mu.Lock()
		if len(b.pending) == 0 {
			if b.inflight--; b.inflight == 0 {
				delete(sh.m, b.key)
			}
			sh.mu.Unlock()
			return
		}
		// The next call takes this one's place in flight.
		next := b.pending[:min(len(b.pending), maxBatch)]
		b.pending = append([]*waiter(nil), b.pending[len(next):]...)
		for _, w := range next {
			w.taken = true
		}
		next[0].lead = next
		sh.mu.Unlock()
		next[0].ch <- true
	}()
	r.calls.Add(1)
	timeout := max(time.Until(ws[0].deadline), time.Millisecond)
	_, err = r.Call(context.WithoutCancel(ctx), timeout, "edge_rate_limit.valkey", func(ctx context.Context, c valkey.Client) error {
		return decideBatch(ctx, c, ws)
	})
}

// decideBatch sends one script call for the waiters ws, whose checks have the same keys.
func decideBatch(ctx context.Context, c valkey.Client, ws []*waiter) error {
	rs := c.Do(ctx, buildDecide(c, ws, false))
	if ve, ok := valkey.IsValkeyErr(rs.Error()); ok && ve.IsNoScript() { // nothing ran
		rs = c.Do(ctx, buildDecide(c, ws, true))
	}
	vals, err := rs.AsIntSlice()
	if err != nil {
		return err
	}
	return readDecide(vals, ws)
}

// group is the checks of one slot: checks[from:to] once sorted by slot.
type group struct{ from, to int }

// decideSlots decides a request whose keys span cluster slots (checks sorted by slot): one
// script per slot, all in one pipelined round trip, then the removal of the request's event
// from the slots that counted it if another refused it.
func decideSlots(ctx context.Context, c valkey.Client, member string, checks []remoteCheck) (bool, error) {
	var gbuf [maxLocked]group
	groups := gbuf[:0]
	from := 0
	for i := 1; i <= len(checks); i++ {
		if i == len(checks) || checks[i].Slot != checks[from].Slot {
			groups = append(groups, group{from, i})
			from = i
		}
	}
	ws := make([]waiter, len(groups))
	cmds := make([]valkey.Completed, 0, len(groups))
	for i, g := range groups {
		ws[i] = waiter{member: member, checks: checks[g.from:g.to]}
		cmds = append(cmds, buildDecide(c, []*waiter{&ws[i]}, false))
	}
	res := c.DoMulti(ctx, cmds...)
	var again []int
	for i, rs := range res {
		if ve, ok := valkey.IsValkeyErr(rs.Error()); ok && ve.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		cmds = cmds[:0]
		for _, i := range again {
			cmds = append(cmds, buildDecide(c, []*waiter{&ws[i]}, true))
		}
		for j, rs := range c.DoMulti(ctx, cmds...) {
			res[again[j]] = rs
		}
	}

	admitted := true
	var failed error
	for i := range groups {
		vals, err := res[i].AsIntSlice()
		if err == nil {
			err = readDecide(vals, []*waiter{&ws[i]})
		}
		if err != nil && failed == nil {
			failed = err
		}
		admitted = admitted && ws[i].ok
	}
	admitted = admitted && failed == nil

	// Phase 2, when the request is refused (or a group failed): remove its event from the
	// groups that counted it. A ZREM touches one key: never across slots. Should a removal
	// fail, the refused request stays counted in that zone (on the safe side) until it leaves
	// the window.
	if !admitted {
		cmds = cmds[:0]
		for i := range checks {
			if ch := &checks[i]; ch.added {
				cmds = append(cmds, c.B().Zrem().Key(ch.Key).Member(member).Build())
			}
		}
		if len(cmds) > 0 {
			c.DoMulti(ctx, cmds...)
		}
	}
	for i := range checks {
		checks[i].settle(admitted)
	}
	return admitted, failed
}

// sortBySlot sorts checks by slot, stably (a handful: insertion sort).
func sortBySlot(checks []remoteCheck) {
	for i := 1; i < len(checks); i++ {
		for j := i; j > 0 && checks[j].Slot < checks[j-1].Slot; j-- {
			checks[j], checks[j-1] = checks[j-1], checks[j]
		}
	}
}

// buildDecide builds the script's EVALSHA (or, with eval, EVAL) for the waiters ws, whose
// checks have the same keys, all in one slot: decideOneScript for one, else decideScript.
func buildDecide(c valkey.Client, ws []*waiter, eval bool) valkey.Completed {
	checks := ws[0].checks
	var kbuf [maxLocked]string
	var abuf [2 + 3*maxLocked]string
	keys, args := kbuf[:0], append(abuf[:0], strconv.Itoa(len(ws)))
	for _, w := range ws {
		args = append(args, w.member)
	}
	for i := range checks {
		ch := &checks[i]
		keys = append(keys, ch.Key)
		dry := "0"
		if ch.DryRun {
			dry = "1"
		}
		args = append(args, ch.WindowArg, ch.LimitArg, dry)
	}
	script, sha := decideScript, decideSHA
	if len(ws) == 1 {
		script, sha = decideOneScript, decideOneSHA
	}
	if eval {
		return c.B().Eval().Script(script).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	}
	return c.B().Evalsha().Sha1(sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// readDecide reads a script reply into the waiters' checks and results (ok: admitted by the
// script) and settles their decisions.
func readDecide(vals []int64, ws []*waiter) error {
	n := len(ws[0].checks)
	if len(vals) != 2*n+len(ws)*(1+n) {
		return errScriptReply
	}
	before, vals := vals[:2*n], vals[2*n:]
	for _, w := range ws {
		w.ok = vals[0] == 1
		for i := range w.checks {
			ch := &w.checks[i]
			ch.count = int(vals[1+i])
			ch.room = ch.count < ch.Limit
			ch.added = w.ok && ch.room
			ch.reset = time.Duration(before[2*i+1]) * time.Microsecond
			if before[2*i] == 0 && ch.count > 0 { // the oldest is an event of this call
				ch.reset = ch.Window
			}
			ch.settle(w.ok)
			ch.added = w.ok && ch.room // settle clears it; decideSlots needs it
		}
		vals = vals[1+n:]
	}
	return nil
}

// settle sets the check's Decision once the request is decided: admitted, or not (then any
// event its group added has been removed).
func (ch *remoteCheck) settle(admitted bool) {
	n, reset := ch.count, ch.reset
	if admitted && ch.room {
		n++
		if n == 1 {
			reset = ch.Window
		}
	}
	ch.Decision = Decision{Allowed: ch.room, Remaining: max(0, ch.Limit-n), Reset: reset}
	ch.added = false
}

// crc16tab is the table of CRC-16/XMODEM (polynomial 0x1021), the checksum of cluster slots.
var crc16tab = func() (tab [256]uint16) {
	for i := range tab {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		tab[i] = crc
	}
	return tab
}()

// keySlot is the cluster slot of a Valkey key: CRC16 of its hash tag (the text between the
// first '{' and the first '}' after it, when not empty) or else of the whole key, modulo
// 16384, as the Valkey Cluster specification defines it.
func keySlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^key[i]]
	}
	return crc & 16383
}
