package pii

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// Bounds of the result cache: slots (a power of two) and the lengths of the strings kept.
// Shorter strings cost less to scan than to hash; longer ones are rarely repeated.
const (
	cacheSlots = 1024
	minCached  = 8
	maxCached  = 256
)

// resultCache remembers what scrub made of strings that the detectors looked at closely,
// so that a value seen again (a user agent, an Accept or Cache-Control header, a
// protocol, a URI, a client's address) costs a hash and a comparison instead of a scan,
// and a masked address no allocation. It is direct-mapped by the hash of the string and
// compares whole strings, so that a collision only costs a miss and never gives a string
// another's result. A string is admitted on its second sighting in a row of its slot (the
// first records its hash only), so that values that never repeat, such as request IDs,
// cost no allocation. It is safe for concurrent use.
type resultCache struct {
	seed    maphash.Seed
	seen    [cacheSlots]atomic.Uint64
	results [cacheSlots]atomic.Pointer[result]
}

// result is what scrub made of the string in: out, having replaced values of the kinds
// (in order; none when in is clean, and then out is not used).
type result struct {
	in, out string
	kinds   []Kind
}

// cacheable reports whether the cache keeps a string of n bytes with triggers acc: one
// long enough and one that prefilter looks at closely.
func cacheable(acc uint8, n int) bool {
	return minCached <= n && n <= maxCached && wordScanned(acc, n)
}

// hash returns the hash of str that get and add take.
func (c *resultCache) hash(str string) uint64 { return maphash.String(c.seed, str) }

// get returns the result of str, of hash h, or nil.
func (c *resultCache) get(str string, h uint64) *result {
	if r := c.results[h&(cacheSlots-1)].Load(); r != nil && r.in == str {
		return r
	}
	return nil
}

// add records that str, of hash h, scrubs to out, replacing the matches ms: its slot
// keeps the result if it saw the same hash last, and else remembers the hash.
func (c *resultCache) add(str string, h uint64, out string, ms []match) {
	i := h & (cacheSlots - 1)
	if c.seen[i].Load() != h {
		c.seen[i].Store(h)
		return
	}
	r := &result{in: strings.Clone(str), out: out}
	for _, m := range ms {
		r.kinds = append(r.kinds, m.kind)
	}
	c.results[i].Store(r)
}
