package edgecache

import (
	"net/http"
	"slices"
	"strings"
)

// Incomplete responses (RFC 9111 §3.3, §3.4). A 206 with one byte range of a representation
// of known length and a strong ETag is stored as an incomplete entry of its variant: status
// 206, the stored parts and the complete length, the response's header without
// Content-Range and Content-Length. It answers (while fresh) a GET for one range inside a
// part, and nothing else: any other request goes upstream as it is. Each later 206, of the
// same ETag and length, is combined with it: the bytes join the parts (merged where they
// overlap or touch, so the parts stay one sorted list of disjoint intervals), the header
// fields of the newer response replace those of the same name (§3.4), and its times make
// the entry fresh. When the parts cover the whole representation, the entry becomes a
// complete 200. A 206 with another ETag or length replaces the entry (no mixing of
// representations), as a 200 does. Incomplete entries stay in L1 (an L2 entry holds a
// complete response); they weigh their parts' bytes like any entry.

// part is a stored byte range of a representation: data from offset start.
type part struct {
	start int64
	data  []byte
}

// end is the offset just past p.
func (p part) end() int64 { return p.start + int64(len(p.data)) }

// maxParts bounds the disjoint parts an incomplete entry holds: a 206 that would make more
// replaces the entry instead (as one whose parts would exceed MaxBodyBytes does).
const maxParts = 16

// partOverhead approximates the memory a part takes beyond its bytes.
const partOverhead = 48

// contentRange is a single byte range of a 206: first and last byte, of length bytes.
type contentRange struct{ first, last, length int64 }

// parseContentRange parses a Content-Range field value of the form "bytes first-last/length"
// (RFC 9110 §14.4) with a known complete length and first <= last < length. The
// unsatisfied-range form ("bytes */length"), an unknown length ("*") and other units are
// not accepted.
func parseContentRange(s string) (contentRange, bool) {
	unit, resp, ok := strings.Cut(strings.Trim(s, " \t"), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return contentRange{}, false
	}
	incl, complete, ok := strings.Cut(resp, "/")
	if !ok {
		return contentRange{}, false
	}
	first, last, ok := strings.Cut(incl, "-")
	if !ok {
		return contentRange{}, false
	}
	var cr contentRange
	var err error
	if cr.first, err = parseDigits(first); err != nil {
		return contentRange{}, false
	}
	if cr.last, err = parseDigits(last); err != nil {
		return contentRange{}, false
	}
	if cr.length, err = parseDigits(complete); err != nil || cr.first > cr.last || cr.last >= cr.length {
		return contentRange{}, false
	}
	return cr, true
}

// storablePartial returns the range of a 206 the cache may store (§3.3): one Content-Range
// field line with a known complete length, one strong ETag, and a body that is not
// multipart/byteranges.
func storablePartial(hdr http.Header) (contentRange, bool) {
	crs, etags := hdr["Content-Range"], hdr["Etag"]
	if len(crs) != 1 || len(etags) != 1 || !strongETag(etags[0]) ||
		strings.HasPrefix(strings.ToLower(strings.TrimSpace(hdr.Get("Content-Type"))), "multipart/byteranges") {
		return contentRange{}, false
	}
	return parseContentRange(crs[0])
}

// fullLength is the length of the representation e holds all or part of.
func (e *entry) fullLength() int64 {
	if e.parts != nil {
		return e.length
	}
	return int64(len(e.body))
}

// ranged reports whether e holds all or part of a representation whose ranges it can
// serve: a 200, or an incomplete entry.
func (e *entry) ranged() bool { return e.status == http.StatusOK || e.parts != nil }

// slice returns the bytes first through last of e's representation, when e holds them.
func (e *entry) slice(first, last int64) ([]byte, bool) {
	if e.parts == nil {
		return e.body[first : last+1], true
	}
	for _, p := range e.parts {
		if p.start <= first && last < p.end() {
			return p.data[first-p.start : last+1-p.start], true
		}
	}
	return nil, false
}

// answers reports whether incomplete entry e can answer r: a GET whose one byte range lies
// in a stored part, or whose range set no byte of the representation satisfies (a 416).
func (e *entry) answers(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	first, last, o := requestedRange(r, e)
	switch o {
	case rangeNone:
		return true
	case rangeOne:
		_, ok := e.slice(first, last)
		return ok
	}
	return false
}

// setParts makes e hold parts of a representation of length bytes: a complete 200 when they
// cover it, else an incomplete 206.
func (e *entry) setParts(parts []part, length int64) {
	if len(parts) == 1 && parts[0].start == 0 && int64(len(parts[0].data)) == length {
		e.status, e.body, e.parts, e.length = http.StatusOK, parts[0].data, nil, 0
		return
	}
	e.status, e.body, e.parts, e.length = http.StatusPartialContent, nil, parts, length
}

// combinePartial turns e, a storable 206 of range cr just received for primary, into the
// entry to store: combined with the stored entry of its variant when that holds the same
// representation (§3.4), else on its own.
func (h *Handler) combinePartial(primary string, e *entry, cr contentRange) *entry {
	delete(e.header, "Content-Range")
	delete(e.header, "Content-Length")
	p := part{start: cr.first, data: e.body}
	old := h.store.variant(primary, e)
	if old == nil || !old.ranged() || old.fullLength() != cr.length || old.etag != e.header.Get("Etag") ||
		!slices.Equal(old.vary, e.vary) || old.secondary != e.secondary || h.store.purged(old) {
		e.setParts([]part{p}, cr.length)
		return e
	}
	stored := old.parts
	if stored == nil {
		stored = []part{{data: old.body}}
	}
	parts := insertPart(stored, p)
	total := int64(0)
	for _, q := range parts {
		total += int64(len(q.data))
	}
	if len(parts) > maxParts || total > h.MaxBodyBytes {
		e.setParts([]part{p}, cr.length)
		return e
	}
	hdr := old.header.Clone()
	for k, v := range e.header {
		hdr[k] = v
	}
	delete(hdr, "Content-Length")
	e.header = hdr
	e.setParts(parts, cr.length)
	return e
}

// insertPart returns parts (sorted, disjoint, not adjacent) with p added: p and the parts it
// overlaps or touches become one part (p's bytes win where they overlap). parts is not
// modified.
func insertPart(parts []part, p part) []part {
	i := 0
	for i < len(parts) && parts[i].end() < p.start {
		i++
	}
	j := i
	lo, hi := p.start, p.end()
	for j < len(parts) && parts[j].start <= hi {
		lo, hi = min(lo, parts[j].start), max(hi, parts[j].end())
		j++
	}
	if j > i {
		data := make([]byte, hi-lo)
		for _, q := range parts[i:j] {
			copy(data[q.start-lo:], q.data)
		}
		copy(data[p.start-lo:], p.data)
		p = part{start: lo, data: data}
	}
	out := make([]part, 0, len(parts)-(j-i)+1)
	out = append(out, parts[:i]...)
	out = append(out, p)
	return append(out, parts[j:]...)
}
