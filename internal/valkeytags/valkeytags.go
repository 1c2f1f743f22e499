// Package valkeytags is the Valkey side of tag-based invalidation shared by the edge's L2
// (modules/edgecache) and the app server's cache manager (appserver/cache): Lua scripts run
// by EVALSHA with an EVAL fallback, the scripts that tag an entry (Tag) and purge a tag
// (Purge), and the fan-out of purges between the processes sharing a Valkey, with their
// acknowledgements (Bus).
//
// Each package keeps its own keys; both use the same layout for a tag, whose two keys share
// the tag's hash tag, so that one script touches one cluster slot:
//
//	{t:<tag>}:m   the keys of the entries carrying the tag, as long-lived as its longest entry
//	{t:<tag>}:p   when the tag was last purged (µs, Valkey's clock)
package valkeytags

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Keys returns a tag's member set and purge record under prefix: "<prefix>{t:<tag>}:m" and
// "<prefix>{t:<tag>}:p", which share the tag's slot (a tag holding '}' only moves the slot:
// both keys still share it).
func Keys(prefix, tag string) []string {
	base := prefix + "{t:" + tag + "}:"
	return []string{base + "m", base + "p"}
}

// Script is a Lua script run with EVALSHA, and with EVAL where the node does not know it
// (NOSCRIPT: a node restarted, or a replica just promoted). valkey-go's Lua.ExecMulti is not
// used: it loads the script on every node the client knows before each run, and fails when
// one of them (a dead primary not yet forgotten) does not answer.
type Script struct{ src, sha string }

// NewScript returns the script of Lua source src.
func NewScript(src string) Script {
	sum := sha1.Sum([]byte(src))
	return Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Run runs the script once for each of runs, pipelined; each run's keys are in one slot,
// different runs may be in different slots (valkey-go sends each to its slot's node).
func (s Script) Run(ctx context.Context, c valkey.Client, runs ...valkey.LuaExec) []valkey.ValkeyResult {
	cmds := make(valkey.Commands, len(runs))
	for i, r := range runs {
		cmds[i] = c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(r.Keys))).Key(r.Keys...).Arg(r.Args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	var again valkey.Commands
	var at []int
	for i, r := range res {
		if e, ok := valkey.IsValkeyErr(r.Error()); ok && e.IsNoScript() {
			again = append(again, c.B().Eval().Script(s.src).Numkeys(int64(len(runs[i].Keys))).Key(runs[i].Keys...).Arg(runs[i].Args...).Build())
			at = append(at, i)
		}
	}
	if len(again) > 0 {
		for j, r := range c.DoMulti(ctx, again...) {
			res[at[j]] = r
		}
	}
	return res
}

// TagEntry adds an entry to a tag's member set, keeping the set as long as the entry, and
// returns how long ago (µs, by the server's clock) the tag was last purged, -1 if not within
// the purge record's life. One slot: the tag's.
//
//	KEYS[1] member set, KEYS[2] purge record (Keys)
//	ARGV[1] entry key, ARGV[2] retention ms
var TagEntry = NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
	redis.call('PEXPIRE', KEYS[1], ttl)
end
local p = redis.call('GET', KEYS[2])
if not p then
	return -1
end
local t = redis.call('TIME')
return math.max(0, tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(p))
`)

// PurgeTag records a tag's purge (now, by the server's clock, never earlier than the last
// one) and pops its member set: it returns the keys of the entries carrying the tag and
// deletes the set. One slot: the tag's.
//
//	KEYS[1] member set, KEYS[2] purge record (Keys)
//	ARGV[1] the purge record's retention ms
var PurgeTag = NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], string.format('%d', math.max(now, last)), 'PX', ARGV[1])
local m = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return m
`)

// Purge purges tags (their keys under prefix, see Keys) and publishes the purge: per tag,
// PurgeTag in the tag's slot records the purge (kept retention) and pops the tag's member
// set; then the members, which live in many slots, are deleted by single-key DELs in one
// pipeline (valkey-go sends each to its slot's node), with publish (an SPUBLISH) beside them.
// A member whose DEL fails goes back into its tag's set, so that purging the tag again
// deletes it. The message goes out even when some tag's shard failed: the receivers' own
// records then honour the purge while Valkey may not.
//
// It returns the number of receivers SPUBLISH reported, -1 when publishing failed, and the
// errors met.
func Purge(ctx context.Context, c valkey.Client, prefix string, tags []string, retention time.Duration, publish valkey.Completed) (receivers int64, err error) {
	var errs []error
	ms := strconv.FormatInt(max(1, retention.Milliseconds()), 10)
	runs := make([]valkey.LuaExec, len(tags))
	for i, t := range tags {
		runs[i] = valkey.LuaExec{Keys: Keys(prefix, t), Args: []string{ms}}
	}
	popped := make([][]string, len(tags)) // each tag's members
	var cmds valkey.Commands
	var members []string // the key each DEL of cmds deletes
	seen := map[string]bool{}
	for i, r := range PurgeTag.Run(ctx, c, runs...) {
		m, err := r.AsStrSlice()
		if err != nil {
			errs = append(errs, fmt.Errorf("tag %s: %w", tags[i], err))
			continue
		}
		popped[i] = m
		for _, k := range m {
			if !seen[k] {
				seen[k] = true
				members = append(members, k)
				cmds = append(cmds, c.B().Del().Key(k).Build())
			}
		}
	}
	cmds = append(cmds, publish)
	res := c.DoMulti(ctx, cmds...)
	if receivers, err = res[len(res)-1].AsInt64(); err != nil {
		receivers = -1
		errs = append(errs, fmt.Errorf("publishing: %w", err))
	}
	failed := map[string]bool{}
	var delErr error
	for i, k := range members {
		if err := res[i].Error(); err != nil {
			failed[k] = true
			delErr = err
		}
	}
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("deleting %d of %d entries: %w", len(failed), len(members), delErr),
			restoreMembers(ctx, c, prefix, tags, popped, failed, retention))
	}
	return receivers, errors.Join(errs...)
}

// restoreMembers puts the members whose deletion failed back into the sets of the tags they
// were popped from, kept as long as a purge record.
func restoreMembers(ctx context.Context, c valkey.Client, prefix string, tags []string, popped [][]string, failed map[string]bool, retention time.Duration) error {
	var cmds valkey.Commands
	for i, m := range popped {
		var back []string
		for _, k := range m {
			if failed[k] {
				back = append(back, k)
			}
		}
		if len(back) > 0 {
			set := Keys(prefix, tags[i])[0]
			cmds = append(cmds, c.B().Sadd().Key(set).Member(back...).Build(),
				c.B().Pexpire().Key(set).Milliseconds(max(1, retention.Milliseconds())).Build())
		}
	}
	var errs []error
	for _, r := range c.DoMulti(ctx, cmds...) {
		errs = append(errs, r.Error())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restoring the members not deleted: %w", err)
	}
	return nil
}

// Records are a process's own records of tag purges, which Tag consults and completes.
type Records struct {
	// PurgedSince reports whether one of tags was purged after since (less Settle): a value
	// obtained at since may predate the purge.
	PurgedSince func(tags []string, since time.Time) bool
	// PurgedAt returns when this process last heard of tag's purge.
	PurgedAt func(tag string) (time.Time, bool)
	// Record records that tags were purged at at (and drops their entries from memory).
	Record func(tags []string, at time.Time)
	// Settle is how long after a purge a value obtained meanwhile still counts as purged.
	Settle time.Duration
}

// Tag adds key, an entry just written with a retention of ttl and obtained at since, to the
// member sets of its tags (TagEntry, in each tag's slot), so that a purge of one of them,
// made through any process at any moment, is not undone by the write: a purge pops the
// member set in the same slot before it deletes the members. For each tag, one of the two
// runs first:
//
//   - the tag script: the entry was written before it, and the purge pops it with the set
//     and deletes it after; or
//   - the purge: the tag script sees its record, and Tag deletes the entry again when it
//     was obtained before the purge (or less than Settle after it).
//
// Until that deletion, for the time of one round trip, a process that has no record of the
// purge (just started, or resubscribing) could read the entry; processes that acknowledged
// the purge refuse it by their own record.
//
// The purge's time is measured by Valkey's clock and placed on this process's without
// comparing clocks: the tag script returns how long ago the purge was, which, taken back
// from when the script was sent and from when its answer arrived, bounds when it was. A
// process that has a record of that purge (or a later one) heard of it and judges the entry
// by its own record. One that has not deletes the entry if it may have been obtained before
// the purge (before the later bound), and records the purge (at the earlier bound) when it
// surely was. (A process misses purges only while it is not subscribed, and empties its
// memory when it subscribes again; this catches the entries still in flight then.)
func Tag(ctx context.Context, c valkey.Client, prefix, key string, tags []string, ttl time.Duration, since time.Time, r Records) error {
	ms := strconv.FormatInt(max(1, ttl.Milliseconds()), 10)
	runs := make([]valkey.LuaExec, len(tags))
	for i, t := range tags {
		runs[i] = valkey.LuaExec{Keys: Keys(prefix, t), Args: []string{key, ms}}
	}
	sent := time.Now()
	res := TagEntry.Run(ctx, c, runs...)
	answered := time.Now()
	var errs []error
	purged := false
	for i, res := range res {
		ago, err := res.AsInt64()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tag := tags[i : i+1]
		if r.PurgedSince(tag, since) {
			purged = true // by a purge this process heard of while the entry was written
			continue
		}
		if ago < 0 {
			continue
		}
		earliest := sent.Add(-time.Duration(ago) * time.Microsecond)
		if known, ok := r.PurgedAt(tag[0]); ok && !known.Before(earliest) {
			continue // this process heard of the purge, and its record lets the entry be
		}
		if latest := answered.Add(-time.Duration(ago) * time.Microsecond); since.Before(latest.Add(r.Settle)) {
			purged = true
			if since.Before(earliest.Add(r.Settle)) {
				r.Record(tag, earliest)
			}
		}
	}
	if purged {
		errs = append(errs, c.Do(ctx, c.B().Del().Key(key).Build()).Error())
	}
	return errors.Join(errs...)
}
