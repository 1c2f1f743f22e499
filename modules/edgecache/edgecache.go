// Package edgecache provides http.handlers.edge_cache, the `edge_cache` directive of MueJam
// Edge: a shared HTTP cache with the semantics of RFC 9111 (and RFC 5861's stale
// directives, RFC 9211's Cache-Status), an in-memory L1 bounded in bytes that survives
// `caddy reload`, an optional L2 in Valkey shared by every edge node, request coalescing,
// and purges by URL or by tag that reach every node through Valkey pub/sub.
package edgecache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Header fields of the cache contract between the app server and the edge (DESIGN.md).
const (
	// HeaderTags on a response lists its purge tags, space-separated (e.g. "story:42
	// feed:new"). The edge stores them with the entry and strips the field.
	HeaderTags = "Cache-Tags"
	// HeaderPurge on any response lists tags whose entries are purged on every edge node
	// before the response is sent on. The edge strips the field.
	HeaderPurge = "Cache-Purge"
	// HeaderStatus is RFC 9211's Cache-Status field the edge adds to responses.
	HeaderStatus = "Cache-Status"
)

// cacheID is this cache's identifier in Cache-Status.
const cacheID = "muejam-edge"

// Defaults of the handler's options.
const (
	defaultName         = "default"
	defaultL1Bytes      = 256 << 20
	defaultMaxBody      = 1 << 20
	defaultMaxTTL       = 24 * time.Hour
	defaultKeepStale    = 5 * time.Minute
	defaultCoalesceWait = 5 * time.Second
	defaultTimeout      = 20 * time.Millisecond
	defaultRetry        = time.Second
	defaultQueue        = 1024
	defaultPurgeTimeout = 250 * time.Millisecond
)

// Handler is http.handlers.edge_cache. It answers GET and HEAD requests from its store
// when RFC 9111 allows, forwards the rest, and stores what may be stored:
//
//   - targeted cache control (RFC 9213): the first of TargetedFields with a valid value
//     replaces Cache-Control and Expires; Expires, Date and Age are parsed strictly (an
//     invalid Expires or Age makes a response stale);
//   - freshness from s-maxage, max-age or Expires (heuristic freshness only when
//     HeuristicFraction is set); Age computed as in §4.2.3; request directives max-age,
//     min-fresh, max-stale, no-cache (and Pragma: no-cache) and only-if-cached (504 when
//     nothing usable is stored);
//   - not stored: no-store, private, Vary: *, responses to requests with Authorization
//     unless public, s-maxage or must-revalidate allow it (§3.5), Set-Cookie responses unless
//     StoreSetCookie, and bodies above MaxBodyBytes (which stream through unbuffered);
//   - incomplete responses (§3.3, §3.4): a 206 with one byte range of a known length and a
//     strong ETag is stored in L1 (only) as an incomplete entry, which answers GETs for
//     ranges inside its parts and nothing else; later 206s of the same ETag are combined
//     with it (the newer header wins) until it is complete and becomes a 200; at most 16
//     disjoint parts and MaxBodyBytes of them. Multipart and unknown-length 206s, and
//     those with a weak or no ETag, are not stored;
//   - stale entries are revalidated with If-None-Match / If-Modified-Since and a 304 merges
//     its header into the entry (§4.3.4); no-cache entries are revalidated on every use;
//     must-revalidate, proxy-revalidate and s-maxage entries are never served stale;
//   - stale-while-revalidate serves the stale entry at once and revalidates in the
//     background; stale-if-error serves it when the upstream fails (an error, or a 500, 502,
//     503 or 504 — including the circuit breaker's short-circuit 503);
//   - an unsafe request (POST, PUT, PATCH, DELETE, ...) answered with a 2xx invalidates its
//     URL and the same-host Location and Content-Location URLs (§4.4), on every node — only
//     when it reached the app with an identity (InvalidateWhen, InvalidateMatchRaw) and only
//     those URLs that are cached (or being fetched), so anonymous clients cannot evict pages;
//   - the Cache-Status field (RFC 9211) says what happened: hit, fwd=miss|stale|request|
//     bypass|method, fwd-status, ttl, stored, collapsed, detail.
//
// Responses name purge tags in Cache-Tags; a Cache-Purge field on any response purges its
// tags on every node before the response goes on (both fields are stripped). POST
// /edge/cache/purge on the admin endpoint purges by tag or URL.
//
// Concurrent misses of one variant make one upstream request; the others wait (up to
// CoalesceTimeout) and get its response if it could be stored, else go upstream themselves.
//
// With Valkey, entries are also written to L2 (asynchronously, through a bounded queue) and
// read from it on an L1 miss with a short timeout behind a circuit breaker: a slow or dead
// Valkey costs one timeout, then nothing, and the cache serves from L1 alone until Valkey
// answers again.
type Handler struct {
	// Name names the cache: handlers with the same name and settings share one store (and
	// its L1 survives reloads); the name also namespaces the Valkey keys and purge channel
	// and labels the metrics. Letters, digits, '-' and '_'. Default: "default".
	Name string `json:"name,omitempty"`

	// L1MaxBytes bounds the memory L1's entries take (approximately: bodies, header fields
	// and bookkeeping). Default: 256 MiB.
	L1MaxBytes int64 `json:"l1_max_bytes,omitempty"`

	// MaxBodyBytes is the largest body stored; larger responses stream through unbuffered.
	// Default: 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`

	// MaxTTL caps how long an entry is kept, whatever its freshness. Default: 24h.
	MaxTTL caddy.Duration `json:"max_ttl,omitempty"`

	// KeepStale is how long a stale entry with a validator (ETag or Last-Modified) is kept
	// beyond its stale windows, so that it can be revalidated with a 304 instead of fetched
	// again. Default: 5m.
	KeepStale caddy.Duration `json:"keep_stale,omitempty"`

	// HeuristicFraction, when positive, gives responses without explicit freshness a
	// lifetime of this fraction of the time since their Last-Modified (RFC 9111 §4.2.2
	// suggests 0.1). Default: 0, off.
	HeuristicFraction float64 `json:"heuristic_fraction,omitempty"`

	// TargetedFields are the targeted cache-control fields (RFC 9213) this cache obeys, in
	// order: the first one a response carries with a valid Structured Field Dictionary value
	// replaces its Cache-Control and Expires for this cache (an invalid one is ignored). The
	// fields are passed on to clients unchanged (RFC 9213 §3 lets a cache remove them; this
	// one does not). Default: ["CDN-Cache-Control"].
	TargetedFields []string `json:"targeted_fields,omitempty"`

	// StoreSetCookie lets responses with Set-Cookie be stored (and their cookies replayed
	// to every client). Default: false.
	StoreSetCookie bool `json:"store_set_cookie,omitempty"`

	// Key configures the primary cache key.
	Key *KeyConfig `json:"key,omitempty"`

	// CoalesceTimeout bounds how long a request waits for a concurrent request of the same
	// variant before going upstream itself. Default: 5s.
	CoalesceTimeout caddy.Duration `json:"coalesce_timeout,omitempty"`

	// BypassRaw are matcher sets; a request matching any of them skips the lookup (its
	// response is still stored when it may be). Use it for read-your-writes: requests that
	// carry a fresh token must see the origin. Default: none.
	BypassRaw []caddy.ModuleMap `json:"bypass,omitempty" caddy:"namespace=http.matchers"`

	// Valkey is the Valkey (or Redis) server or cluster that edge nodes share for L2 and
	// purges; absent for L1 only. A plain "host:port" string is accepted. Default: absent.
	Valkey *valkeyconn.Config `json:"valkey,omitempty"`

	// ValkeyTimeout bounds an L2 read. Default: 20ms.
	ValkeyTimeout caddy.Duration `json:"valkey_timeout,omitempty"`

	// ValkeyRetry is how long Valkey is left alone after three failed calls in a row (the
	// breaker's open period, doubling on repeated failures up to 30s). Default: 1s.
	ValkeyRetry caddy.Duration `json:"valkey_retry,omitempty"`

	// WriteQueue is the number of L2 writes that may wait; more are dropped. Default: 1024.
	WriteQueue int `json:"write_queue,omitempty"`

	// PurgeTimeout bounds how long a response carrying Cache-Purge (or an admin purge)
	// waits for Valkey to delete the entries and tell the other nodes. Default: 250ms.
	PurgeTimeout caddy.Duration `json:"purge_timeout,omitempty"`

	// PurgeSettle is how long after a purge responses carrying a purged tag are still not
	// stored (they are served, marked not stored). An origin that reads from database
	// replicas can answer a request that follows the purging write with data from a replica
	// that has not replayed it yet; stored, that answer would bring the purged content back
	// for its whole freshness lifetime. Set it to the replication lag the origin tolerates
	// in practice (the app server's replicas are typically milliseconds behind). Default: 0.
	PurgeSettle caddy.Duration `json:"purge_settle,omitempty"`

	// InvalidateWhen is a placeholder that identifies who sent a request: an unsafe request
	// invalidates URLs (RFC 9111 §4.4) only when it is not empty (or a set of
	// InvalidateMatchRaw matches), so an anonymous client cannot evict cached pages. "off"
	// leaves the matcher sets alone. Default: "{http.auth.user.id}".
	InvalidateWhen string `json:"invalidate_when,omitempty"`

	// InvalidateMatchRaw are matcher sets; an unsafe request matching any of them may
	// invalidate URLs like one with an identity. Default: none.
	InvalidateMatchRaw []caddy.ModuleMap `json:"invalidate_match,omitempty" caddy:"namespace=http.matchers"`

	// MaxPurgeRecords bounds the purge records a node keeps (and their memory: this many
	// times 128 bytes of tags). Beyond it the oldest tenth is dropped, and every entry
	// requested before the newest dropped record is invalid (so that dropping a record
	// never brings purged content back). Default: 100000.
	MaxPurgeRecords int `json:"max_purge_records,omitempty"`

	keyer      *keyer
	bypass     caddyhttp.MatcherSets
	invalidate caddyhttp.MatcherSets
	store      *store
	cfg        storeConfig
	logger     *zap.Logger
}

// KeyConfig configures the primary cache key.
type KeyConfig struct {
	// Parts are what the key is made of, in order: method, scheme, host, path, query.
	// Default: method host path query.
	Parts []string `json:"parts,omitempty"`
	// Query is how the query enters the key: sort (parameters sorted by name), keep (as
	// sent) or ignore (left out). Default: sort.
	Query string `json:"query,omitempty"`
	// IgnoreParams are query parameters left out of the key (e.g. utm_source).
	IgnoreParams []string `json:"ignore_params,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_cache",
		New: func() caddy.Module { return new(Handler) },
	}
}

var cacheName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Provision sets defaults, validates, loads the bypass matchers, takes the store from the
// pool and registers the metrics.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	setDefault(&h.Name, defaultName)
	setDefault(&h.L1MaxBytes, defaultL1Bytes)
	setDefault(&h.MaxBodyBytes, defaultMaxBody)
	setDefault(&h.MaxTTL, caddy.Duration(defaultMaxTTL))
	setDefault(&h.KeepStale, caddy.Duration(defaultKeepStale))
	setDefault(&h.CoalesceTimeout, caddy.Duration(defaultCoalesceWait))
	setDefault(&h.ValkeyTimeout, caddy.Duration(defaultTimeout))
	setDefault(&h.ValkeyRetry, caddy.Duration(defaultRetry))
	setDefault(&h.WriteQueue, defaultQueue)
	setDefault(&h.PurgeTimeout, caddy.Duration(defaultPurgeTimeout))
	if len(h.TargetedFields) == 0 {
		h.TargetedFields = defaultTargeted
	}
	setDefault(&h.InvalidateWhen, defaultInvalidateWhen)
	setDefault(&h.MaxPurgeRecords, defaultMaxPurges)
	if err := h.Validate(); err != nil {
		return err
	}
	if h.BypassRaw != nil {
		mods, err := ctx.LoadModule(h, "BypassRaw")
		if err != nil {
			return fmt.Errorf("loading bypass matchers: %v", err)
		}
		if err := h.bypass.FromInterface(mods); err != nil {
			return err
		}
	}
	if h.InvalidateMatchRaw != nil {
		mods, err := ctx.LoadModule(h, "InvalidateMatchRaw")
		if err != nil {
			return fmt.Errorf("loading invalidate matchers: %v", err)
		}
		if err := h.invalidate.FromInterface(mods); err != nil {
			return err
		}
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := panics.Register(ctx.GetMetricsRegistry(), panicSites...); err != nil {
		return err
	}
	initSeries(h.Name, h.Valkey.Configured())
	var vc valkeyconn.Config
	if h.Valkey.Configured() {
		vc = h.Valkey.Replace(cfgarg.Placeholders)
	}
	h.cfg = storeConfig{
		name:      h.Name,
		maxBytes:  uint64(h.L1MaxBytes),
		maxTTL:    time.Duration(h.MaxTTL),
		valkey:    vc,
		timeout:   time.Duration(h.ValkeyTimeout),
		retry:     time.Duration(h.ValkeyRetry),
		queue:     h.WriteQueue,
		purgeWait: time.Duration(h.PurgeTimeout),
		settle:    time.Duration(h.PurgeSettle),
		heuristic: h.HeuristicFraction,
		targeted:  strings.Join(h.TargetedFields, ","),
		maxPurges: h.MaxPurgeRecords,
	}
	s, err := takeStore(h.cfg, h.logger)
	if err != nil {
		return err
	}
	h.store = s
	handlersMu.Lock()
	liveHandlers[h] = struct{}{}
	handlersMu.Unlock()
	return nil
}

// liveHandlers are the provisioned handlers, which the admin purge acts through.
var (
	handlersMu   sync.Mutex
	liveHandlers = map[*Handler]struct{}{}
)

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate checks the configuration (also before defaults are set, for `caddy adapt`).
func (h *Handler) Validate() error {
	if h.Name != "" && !cacheName.MatchString(h.Name) {
		return fmt.Errorf("cache name %q: want letters, digits, '-' and '_'", h.Name)
	}
	switch {
	case h.L1MaxBytes < 0:
		return errors.New("l1_max_bytes must not be negative")
	case h.MaxBodyBytes < 0:
		return errors.New("max_body_bytes must not be negative")
	case h.L1MaxBytes > 0 && h.MaxBodyBytes > h.L1MaxBytes:
		return errors.New("max_body_bytes must not exceed l1_max_bytes")
	case h.MaxTTL < 0, h.KeepStale < 0, h.CoalesceTimeout < 0, h.ValkeyTimeout < 0, h.ValkeyRetry < 0, h.PurgeTimeout < 0, h.PurgeSettle < 0:
		return errors.New("durations must not be negative")
	case h.HeuristicFraction < 0 || h.HeuristicFraction > 1:
		return errors.New("heuristic_fraction must be between 0 and 1")
	case h.WriteQueue < 0:
		return errors.New("write_queue must not be negative")
	case h.MaxPurgeRecords < 0:
		return errors.New("max_purge_records must not be negative")
	case h.InvalidateWhen != "" && h.InvalidateWhen != invalidateOff && !strings.Contains(h.InvalidateWhen, "{"):
		return fmt.Errorf("invalidate_when %q: want a placeholder such as {http.auth.user.id}, or off", h.InvalidateWhen)
	}
	var kc KeyConfig
	if h.Key != nil {
		kc = *h.Key
	}
	k, err := newKeyer(kc.Parts, kc.Query, kc.IgnoreParams)
	if err != nil {
		return fmt.Errorf("key: %v", err)
	}
	h.keyer = k
	return nil
}

// Cleanup releases the store.
func (h *Handler) Cleanup() error {
	handlersMu.Lock()
	delete(liveHandlers, h)
	handlersMu.Unlock()
	if h.store != nil {
		_, _ = stores.Delete(h.cfg.poolKey())
	}
	return nil
}

// ServeHTTP answers the request from the cache or forwards it. A panic while it does (here
// or in the handlers after this one) is logged, counted in muejam_edge_panics_total and
// answered with a 500 problem document (see afterPanic).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	if r.Header.Get("Upgrade") != "" { // a protocol switch, not a response to store
		return next.ServeHTTP(w, r)
	}
	defer func() {
		if err != nil {
			err = afterPanic(w, err)
		}
	}()
	defer panics.Recover(h.logger, whereServe, &err)
	return h.serve(w, r, next)
}

// problemPanic is the body of the 500 that answers a request whose handling panicked (RFC
// 9457).
var problemPanic = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500,` +
	`"detail":"The edge failed on this request; it has been logged."}` + "\n")

// afterPanic answers a request whose handling ended in err, when err is a recovered panic
// (panics.Recover); it returns other errors as they are. When no response has started, it
// writes a 500 with a problem document (Caddy answers a handler's error with an empty body
// unless the site has handle_errors) and the request is done. Once a response has started
// (every response this handler sends has Cache-Status set before its header goes out), it
// cannot become a 500, and ending it normally would pass a truncated body for a whole one:
// the response is aborted (http.ErrAbortHandler), as reverse_proxy aborts a response whose
// upstream fails mid-body; that abort, coming from a handler after this one, goes on as it is.
func afterPanic(w http.ResponseWriter, err error) error {
	var p *panics.Error
	switch {
	case err == http.ErrAbortHandler:
		panic(http.ErrAbortHandler)
	case !errors.As(err, &p):
		return err
	case w.Header().Get(HeaderStatus) != "":
		panic(http.ErrAbortHandler)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(problemPanic)))
	hdr.Set(HeaderStatus, cacheID+"; detail=panic")
	w.WriteHeader(http.StatusInternalServerError)
	_, werr := w.Write(problemPanic)
	return werr
}

// serve is ServeHTTP without its recovery: it looks the request up, decides what the stored
// entry is good for (decide) and acts on that.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return h.serveOther(w, r, next)
	}
	now := time.Now()
	primary := h.keyer.key(r)
	if len(h.bypass) > 0 {
		ok, err := h.bypass.AnyMatchWithError(r)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		if ok {
			lookups.WithLabelValues(h.Name, outcomeBypass).Inc()
			return h.forward(w, r, next, primary, nil, "fwd=bypass")
		}
	}
	e, names, fromL2 := h.lookup(r, primary, now)
	d := decide(e, r, now)
	switch d.act {
	case actMiss:
		return h.miss(w, r, next, primary, names)
	case actOnlyIfCached:
		lookups.WithLabelValues(h.Name, outcomeMiss).Inc()
		w.Header().Set(HeaderStatus, cacheID+"; detail=only-if-cached")
		return caddyhttp.Error(http.StatusGatewayTimeout, errors.New("only-if-cached: nothing stored answers without the origin"))
	case actFresh:
		lookups.WithLabelValues(h.Name, outcomeHit).Inc()
		detail := ""
		if fromL2 {
			detail = "l2"
		}
		return serveEntry(w, r, e, d.age, d.hitStatus(detail))
	case actStale:
		lookups.WithLabelValues(h.Name, outcomeStale).Inc()
		return serveEntry(w, r, e, d.age, d.hitStatus("max-stale"))
	case actStaleRevalidate:
		lookups.WithLabelValues(h.Name, outcomeStale).Inc()
		h.revalidateInBackground(r, next, primary, e)
		return serveEntry(w, r, e, d.age, d.hitStatus("stale-while-revalidate"))
	}
	if d.requested && !h.hasIdentity(r) {
		return h.revalidateShared(w, r, next, primary, e, d.staleIfError, d.fwd())
	}
	return h.revalidate(w, r, next, primary, e, d.staleIfError, d.fwd())
}

// lookup returns the entry stored for r under primary in L1, else in L2 (which then refills
// L1), unless it has been purged or is of no more use at now; names are the Vary'd fields L1
// knows for primary, and fromL2 says the entry came from L2.
func (h *Handler) lookup(r *http.Request, primary string, now time.Time) (e *entry, names []string, fromL2 bool) {
	e, names = h.store.lookupL1(primary, r.Header)
	if e == nil && h.store.l2 != nil {
		if e = h.store.l2.get(r.Context(), primary, names, r.Header); e != nil {
			fromL2 = true
			h.setTTL(e, now)
			if e.ttl > 0 {
				h.store.putL1(primary, e)
			}
		}
	}
	if e != nil && (h.store.purged(e) || e.ttl <= 0) {
		return nil, names, false
	}
	return e, names, fromL2
}

// setTTL sets how long e is kept from now.
func (h *Handler) setTTL(e *entry, now time.Time) { e.ttl = h.retention(e, now) }

// retention is how long e is of use from now.
func (h *Handler) retention(e *entry, now time.Time) time.Duration {
	return e.retention(now, time.Duration(h.KeepStale), time.Duration(h.MaxTTL))
}

// serveOther forwards a request of another method. It consumes Cache-Purge like every
// response and, when the method is unsafe, the request has an identity and the response is a
// 2xx, invalidates the target URL and the same-host Location and Content-Location URLs
// everywhere (RFC 9111 §4.4) — those that are cached (see invalidations).
func (h *Handler) serveOther(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	safe := r.Method == http.MethodOptions || r.Method == http.MethodTrace
	mayInvalidate := !safe && h.mayInvalidate(r)
	rec := newRecorder(w, 0)
	rec.onHeader = func(status int, hdr http.Header) bool {
		_, tags := takeTags(hdr)
		if mayInvalidate && status >= 200 && status < 300 {
			tags = append(tags, h.invalidations(r, hdr)...)
		}
		h.purge(r.Context(), tags)
		hdr.Set(HeaderStatus, cacheID+"; fwd=method")
		return true
	}
	err := next.ServeHTTP(rec, r)
	rec.finish(err)
	return err
}

// takeTags strips Cache-Tags and Cache-Purge from a response header and returns the tags
// of each.
func takeTags(hdr http.Header) (tags, purge []string) {
	for _, v := range hdr.Values(HeaderTags) {
		tags = append(tags, strings.Fields(v)...)
	}
	for _, v := range hdr.Values(HeaderPurge) {
		purge = append(purge, strings.Fields(v)...)
	}
	hdr.Del(HeaderTags)
	hdr.Del(HeaderPurge)
	return tags, purge
}

// purge purges tags on this node at once and, with Valkey, in L2 and on every other node,
// waiting up to PurgeTimeout.
func (h *Handler) purge(ctx context.Context, tags []string) {
	if len(tags) == 0 {
		return
	}
	h.store.purge(ctx, tags, "response")
}

// miss forwards a request nothing usable is stored for, coalescing it with concurrent
// misses of the same variant.
func (h *Handler) miss(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, primary string, names []string) error {
	// Conditional requests and HEAD go upstream as they are: their answers are not
	// complete responses to share.
	if r.Method == http.MethodHead || r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" ||
		r.Header.Get("Range") != "" {
		lookups.WithLabelValues(h.Name, outcomeMiss).Inc()
		return h.forward(w, r, next, primary, nil, "fwd=miss")
	}
	fkey := l1Key(primary, secondaryKey(names, r.Header))
	f, leader := h.store.join(fkey)
	if leader {
		// A flight of this variant may have landed between the lookup and the join: what
		// it stored answers this request too, as it answered the flight's waiters.
		if e, _ := h.store.lookupL1(primary, r.Header); e != nil && !h.store.purged(e) {
			if d := decide(e, r, time.Now()); d.act == actFresh {
				h.store.land(f, e)
				lookups.WithLabelValues(h.Name, outcomeHit).Inc()
				return serveEntry(w, r, e, d.age, d.hitStatus(""))
			}
		}
		lookups.WithLabelValues(h.Name, outcomeMiss).Inc()
		return h.forward(w, r, next, primary, f, "fwd=miss")
	}
	t := time.NewTimer(time.Duration(h.CoalesceTimeout))
	defer t.Stop()
	select {
	case <-f.done:
		if f.e != nil && f.e.parts == nil && (len(f.e.vary) == 0 || f.e.secondary == secondaryKey(f.e.vary, r.Header)) {
			lookups.WithLabelValues(h.Name, outcomeCoalesced).Inc()
			return serveEntry(w, r, f.e, f.e.age(time.Now()), cacheID+"; hit; collapsed")
		}
	case <-t.C:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	lookups.WithLabelValues(h.Name, outcomeMiss).Inc()
	return h.forward(w, r, next, primary, nil, "fwd=miss")
}

// forward sends the request upstream, streams the response to the client and stores it
// when it may. f, when not nil, is the flight to land with the result.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, primary string, f *flight, fwd string) error {
	var stored *entry
	if f != nil {
		defer func() { h.store.land(f, stored) }()
	}
	requestTime := time.Now()
	rec := newRecorder(w, h.MaxBodyBytes)
	rec.onHeader = func(status int, hdr http.Header) bool {
		h.consumeTags(r.Context(), rec, hdr)
		h.passOn(rec, r, primary, requestTime, status, hdr, fwd)
		return true
	}
	err := next.ServeHTTP(rec, r)
	rec.finish(err)
	if err != nil || !rec.complete() {
		return err
	}
	stored = h.save(primary, r, rec, requestTime)
	return nil
}

// consumeTags takes the Cache-Tags of an upstream response for storing and purges its
// Cache-Purge tags, stripping both from the header.
func (h *Handler) consumeTags(ctx context.Context, rec *recorder, hdr http.Header) {
	var purge []string
	rec.tags, purge = takeTags(hdr)
	h.purge(ctx, purge)
}

// passOn decides whether an upstream response to req (a GET, the only method stored) is
// kept, and sets its Cache-Status: why it was forwarded, the upstream's status and
// "stored" when it will be.
func (h *Handler) passOn(rec *recorder, req *http.Request, primary string, requestTime time.Time, status int, hdr http.Header, fwd string) {
	st := cacheID + "; " + fwd + "; fwd-status=" + strconv.Itoa(status)
	if req.Method == http.MethodGet && h.storable(req, status, hdr) &&
		!h.store.purgedSince(append(rec.tags, keyTag(primary)), requestTime) {
		rec.storing = true
		st += "; stored"
	}
	hdr.Set(HeaderStatus, st)
}

// storable reports whether a response to r may be stored (RFC 9111 §3), judging by its
// status and header.
func (h *Handler) storable(r *http.Request, status int, hdr http.Header) bool {
	switch {
	case status == http.StatusPartialContent:
		if _, ok := storablePartial(hdr); !ok {
			return false
		}
	case status < 200 || status == http.StatusNotModified || hdr.Get("Content-Range") != "":
		return false
	}
	resp, _ := responseDirectives(hdr, h.TargetedFields)
	req := parseDirectives(r.Header)
	if resp.noStore || req.noStore || resp.private {
		return false
	}
	if _, star := varyNames(hdr); star {
		return false
	}
	if r.Header.Get("Authorization") != "" && !resp.public && !resp.mustRevalidate && resp.sMaxAge < 0 {
		return false
	}
	if !h.StoreSetCookie && hdr.Get("Set-Cookie") != "" {
		return false
	}
	// It must be of use for a while: fresh, servable stale, or revalidatable.
	now := time.Now()
	e := &entry{status: status, header: hdr, requestTime: now, responseTime: now}
	e.derive(h.HeuristicFraction, h.TargetedFields...)
	return h.retention(e, now) > 0
}

// revalidate asks the upstream whether stored entry e is still good (conditionally when it
// has validators), serves the answer, and falls back to e when the upstream fails and
// staleIfError allows it.
func (h *Handler) revalidate(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, primary string, e *entry, staleIfError bool, fwd string) error {
	up := r
	if r.Method == http.MethodHead || e.etag != "" || e.lastMod != "" {
		up = r.Clone(r.Context())
		up.Method = http.MethodGet
		up.Header.Del("If-None-Match")
		up.Header.Del("If-Modified-Since")
		up.Header.Del("If-Match")
		up.Header.Del("If-Unmodified-Since")
		up.Header.Del("If-Range")
		up.Header.Del("Range")
		if e.etag != "" {
			up.Header.Set("If-None-Match", e.etag)
		}
		if e.lastMod != "" {
			up.Header.Set("If-Modified-Since", e.lastMod)
		}
	}
	requestTime := time.Now()
	rec := newRecorder(w, h.MaxBodyBytes)
	var outcome string
	rec.onHeader = func(status int, hdr http.Header) bool {
		h.consumeTags(r.Context(), rec, hdr)
		switch {
		case status == http.StatusNotModified && up != r:
			outcome = "revalidated" // merged and served below
			return false
		case staleIfError && upstreamFailed(status):
			outcome = "stale"
			return false
		}
		h.passOn(rec, up, primary, requestTime, status, hdr, fwd)
		if up != r && r.Method == http.MethodHead {
			rec.discardBody = true
		}
		return true
	}
	err := next.ServeHTTP(rec, up)
	rec.finish(err)
	now := time.Now()
	switch {
	case outcome == "revalidated":
		merged := e.merge(rec.header, rec.tags, requestTime, now, h.HeuristicFraction, h.StoreSetCookie, h.TargetedFields...)
		h.setTTL(merged, now)
		h.store.put(primary, merged)
		lookups.WithLabelValues(h.Name, outcomeRevalidated).Inc()
		if sc := rec.header["Set-Cookie"]; len(sc) > 0 && !h.StoreSetCookie {
			w.Header()["Set-Cookie"] = sc // for this client only: merge left it out of the entry
		}
		return serveEntry(w, r, merged, merged.age(now), cacheID+"; "+fwd+"; fwd-status=304; stored")
	case outcome == "stale" || (err != nil && !rec.wroteHeader && staleIfError):
		lookups.WithLabelValues(h.Name, outcomeStale).Inc()
		status := http.StatusBadGateway
		if rec.status != 0 {
			status = rec.status
		} else if he, ok := err.(caddyhttp.HandlerError); ok && he.StatusCode != 0 {
			status = he.StatusCode
		}
		h.logger.Debug("serving stale entry: upstream failed", zap.Int("upstream_status", status), zap.Error(err))
		return serveEntry(w, r, e, e.age(now), cacheID+"; fwd=stale; fwd-status="+strconv.Itoa(status)+"; detail=stale-if-error")
	}
	lookups.WithLabelValues(h.Name, outcomeMiss).Inc()
	if err != nil || !rec.complete() {
		return err
	}
	h.save(primary, up, rec, requestTime)
	return nil
}

// upstreamFailed reports whether a status means the upstream could not answer properly.
func upstreamFailed(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
