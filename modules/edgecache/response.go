package edgecache

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/panics"
)

// recorder is the ResponseWriter the upstream writes to. When the header is written,
// onHeader decides whether the response goes on to the client (streamed as it arrives) or
// is held back (a 304 to merge, a failure to replace with a stale entry); while storing, it
// also keeps the body, up to maxBody, after which it stops keeping and only streams.
type recorder struct {
	w        http.ResponseWriter
	header   http.Header
	onHeader func(status int, hdr http.Header) (pass bool)
	maxBody  int64

	status      int
	wroteHeader bool
	pass        bool
	storing     bool // set by onHeader; cleared when the body outgrows maxBody
	discardBody bool // a HEAD answered from a GET: the client gets no body
	body        []byte
	tags        []string // the response's Cache-Tags
}

func newRecorder(w http.ResponseWriter, maxBody int64) *recorder {
	return &recorder{w: w, header: make(http.Header), maxBody: maxBody}
}

// Header returns the upstream's header, which reaches the client when it is written.
func (r *recorder) Header() http.Header { return r.header }

// WriteHeader decides where the response goes. Informational responses go straight on.
func (r *recorder) WriteHeader(status int) {
	if r.wroteHeader {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		copyHeader(r.w.Header(), r.header)
		r.w.WriteHeader(status)
		return
	}
	r.wroteHeader, r.status = true, status
	r.pass = r.onHeader(status, r.header)
	if r.storing {
		if cl, err := strconv.ParseInt(r.header.Get("Content-Length"), 10, 64); err == nil && cl > r.maxBody {
			r.storing = false
		}
	}
	if r.pass {
		copyHeader(r.w.Header(), r.header)
		r.w.WriteHeader(status)
	}
}

// Write streams b to the client (when the response goes there) and keeps it while storing.
func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if r.storing {
		if int64(len(r.body)+len(b)) > r.maxBody {
			r.storing, r.body = false, nil
		} else {
			r.body = append(r.body, b...)
		}
	}
	if r.pass && !r.discardBody {
		return r.w.Write(b)
	}
	return len(b), nil
}

// Flush flushes what the client has been sent so far.
func (r *recorder) Flush() {
	if r.pass {
		_ = http.NewResponseController(r.w).Flush()
	}
}

// finish completes a response the upstream ended without writing anything (an implicit
// 200 with no body), unless it failed.
func (r *recorder) finish(err error) {
	if err == nil && !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
}

// complete reports whether the whole response was kept for storing.
func (r *recorder) complete() bool {
	if !r.storing {
		return false
	}
	if cl, err := strconv.ParseInt(r.header.Get("Content-Length"), 10, 64); err == nil && cl != int64(len(r.body)) {
		return false // cut short
	}
	return true
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// hopByHop are the fields that describe a connection, not a response, and are never stored
// (RFC 9111 §3.1, RFC 9110 §7.6.1), with Cache-Status, which each response gets anew. The
// fields Connection names and every Proxy-* field go too (stripHopByHop).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", HeaderStatus}

// stripHopByHop deletes from hdr, a copy about to be stored, the hop-by-hop fields: those of
// hopByHop, those the Connection field lines name, and any Proxy-* field.
func stripHopByHop(hdr http.Header) {
	for _, v := range hdr.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				hdr.Del(name)
			}
		}
	}
	for _, f := range hopByHop {
		delete(hdr, f)
	}
	for k := range hdr {
		if strings.HasPrefix(k, "Proxy-") {
			delete(hdr, k)
		}
	}
}

// save stores the response rec recorded for r, when it is complete and may be kept for a
// while, and returns the entry (nil when not stored). A 206 is combined with the stored
// parts of its representation (combinePartial).
func (h *Handler) save(primary string, r *http.Request, rec *recorder, requestTime time.Time) *entry {
	if !rec.complete() {
		return nil
	}
	now := time.Now()
	hdr := rec.header.Clone()
	stripHopByHop(hdr)
	names, _ := varyNames(hdr)
	e := &entry{
		status:       rec.status,
		header:       hdr,
		body:         rec.body,
		tags:         append(rec.tags, keyTag(primary)),
		requestTime:  requestTime,
		responseTime: now,
		vary:         names,
		secondary:    secondaryKey(names, r.Header),
	}
	if rec.status == http.StatusPartialContent {
		cr, ok := storablePartial(hdr)
		if !ok || int64(len(rec.body)) != cr.last-cr.first+1 {
			return nil
		}
		e = h.combinePartial(primary, e, cr)
	}
	e.derive(h.HeuristicFraction, h.TargetedFields...)
	h.setTTL(e, now)
	if e.ttl <= 0 {
		return nil
	}
	h.store.put(primary, e)
	return e
}

// merge returns a copy of e updated by a 304 response's header (RFC 9111 §3.2, §4.3.4):
// its fields replace the stored ones, except those describing the body, and its times make
// the entry fresh again. tags, when the 304 named any, replace the entry's Cache-Tags.
// Hop-by-hop fields are not merged, nor Set-Cookie unless storeSetCookie (a cookie set for
// the client that revalidated must not be replayed to every client).
func (e *entry) merge(hdr http.Header, tags []string, requestTime, responseTime time.Time, heuristic float64, storeSetCookie bool, targeted ...string) *entry {
	n := &entry{
		status:       e.status,
		header:       e.header.Clone(),
		body:         e.body,
		tags:         e.tags,
		requestTime:  requestTime,
		responseTime: responseTime,
		vary:         e.vary,
		secondary:    e.secondary,
	}
	fresh := hdr.Clone()
	stripHopByHop(fresh)
	if !storeSetCookie {
		delete(fresh, "Set-Cookie")
	}
	for k, v := range fresh {
		switch k {
		case "Content-Length", "Content-Range", "Content-Encoding", "Content-Type":
			continue
		}
		n.header[k] = v
	}
	if len(tags) > 0 {
		n.tags = append(tags, e.tags[len(e.tags)-1]) // the key's own tag stays last
	}
	n.derive(heuristic, targeted...)
	return n
}

// serveEntry answers r from e: the stored status, header and body with Age and
// Cache-Status, or 304 when r's own conditional matches e, a 206 or 416 for a GET with
// Range (serveRange), and no body for HEAD. An incomplete entry answers only what
// e.answers(r) says it can.
func serveEntry(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration, cacheStatus string) error {
	hdr := w.Header()
	// One backing array for every value: handlers after this one may edit the values in
	// place, and the entry is shared with concurrent requests.
	n := 0
	for _, vs := range e.header {
		n += len(vs)
	}
	vals := make([]string, 0, n+3)
	for k, vs := range e.header {
		start := len(vals)
		vals = append(vals, vs...)
		hdr[k] = vals[start:len(vals):len(vals)]
	}
	vals = append(vals, strconv.FormatInt(int64(age/time.Second), 10), cacheStatus, strconv.Itoa(len(e.body)))
	hdr["Age"] = vals[n : n+1 : n+1]
	hdr[HeaderStatus] = vals[n+1 : n+2 : n+2]
	status := e.status
	if e.ranged() && notModified(r, e) {
		status = http.StatusNotModified
		delete(hdr, "Content-Length")
	} else {
		hdr["Content-Length"] = vals[n+2 : n+3 : n+3]
		if e.ranged() && r.Header["Range"] != nil && r.Method == http.MethodGet {
			if done, err := serveRange(w, r, e, hdr); done {
				return err
			}
		}
		if e.parts != nil {
			return errIncomplete
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || status == http.StatusNotModified || len(e.body) == 0 {
		return nil
	}
	_, err := w.Write(e.body)
	return err
}

// errIncomplete is the error of a request an incomplete entry was asked to answer but
// cannot (the caller checks entry.answers first).
var errIncomplete = errors.New("edge_cache: incomplete entry cannot answer the request")

// notModified evaluates r's If-None-Match, or else If-Modified-Since, against e (RFC 9110
// §13.1.2, §13.1.3; weak comparison for If-None-Match).
func notModified(r *http.Request, e *entry) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if e.etag == "" {
			return false
		}
		for tag := range strings.SplitSeq(inm, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == strings.TrimPrefix(e.etag, "W/") {
				return true
			}
		}
		return false
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" || e.lastMod == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	lm, err2 := http.ParseTime(e.lastMod)
	return err == nil && err2 == nil && !lm.After(since)
}

// revalidateInBackground revalidates e for a stale-while-revalidate hit without making the
// client wait: once per variant at a time, on a copy of the request detached from the
// client's connection.
func (h *Handler) revalidateInBackground(r *http.Request, next caddyhttp.Handler, primary string, e *entry) {
	f, leader := h.store.join("revalidate\n" + l1Key(primary, e.secondary))
	if !leader {
		return
	}
	bg := detach(r)
	go func() {
		defer h.store.land(f, nil)
		// A panic here has no client to answer: it is logged and counted; reverse_proxy's
		// abort of a response whose upstream failed mid-body just ends the revalidation.
		defer panics.Recover(h.logger, whereRevalidate, nil)
		_ = h.revalidate(discard{}, bg, next, primary, e, false, "fwd=stale")
	}()
}

// detach returns a copy of r that outlives it: not cancelled with the client's request,
// with its own copy of the request variables and its own replacer, so the background work
// shares no mutable state with the request still being logged. The replacer knows the
// request's http.* placeholders and the authenticated user of the original.
func detach(r *http.Request) *http.Request {
	ctx := context.WithoutCancel(r.Context())
	vars := map[string]any{}
	if old, ok := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		for k, v := range old {
			vars[k] = v
		}
	}
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, vars)
	bg := r.Clone(ctx)
	bg.Method = http.MethodGet
	bg.Body = http.NoBody
	// NewTestReplacer is caddyhttp's exported way to build a request's replacer (with the
	// http.request.* placeholders) outside the server; it sets it in bg's context.
	repl := caddyhttp.NewTestReplacer(bg)
	if old, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		for _, k := range []string{"http.auth.user.id"} {
			if v, ok := old.Get(k); ok {
				repl.Set(k, v)
			}
		}
	}
	return bg
}

// discard is the client of a background revalidation: nobody.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
