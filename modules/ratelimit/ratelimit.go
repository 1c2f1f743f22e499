// Package ratelimit provides http.handlers.edge_rate_limit, the `edge_rate_limit` directive
// of MueJam Edge: named zones of exact sliding-window limits, keyed by the verified user, the
// client IP or a constant, enforced in memory on each node or shared by every node through
// Valkey, with a fallback to the local windows when Valkey is slow or down.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's options.
const (
	defaultTimeout = 25 * time.Millisecond
	defaultRetry   = time.Second
	defaultMaxKeys = 1_000_000
)

// Handler is http.handlers.edge_rate_limit. Each request goes through every zone whose
// matchers match it and whose key template renders (a key with an unset or empty
// placeholder, such as {http.auth.user.id} of an anonymous request, skips the zone); all
// of them must allow it. Zones are evaluated in order and the first one that refuses ends
// the evaluation: the request counts in the zones before it, not in those after.
//
// Each zone is an exact sliding-window log: at most Events admitted requests per key in
// any span of Window, wherever the span starts (refused requests do not count). Without
// Valkey the windows live in this node's memory; with Valkey every node shares them, one
// atomic script call per zone decision. When Valkey errs or does not answer within
// ValkeyTimeout, the decision is made at once on the local windows (which also record every
// request Valkey admitted, so they start from this node's recent history) and counted as a
// fallback; after three failures in a row a breaker stops asking Valkey for ValkeyRetry
// (doubling on repeated failures, up to 30 s), and Valkey is used again once a probe
// succeeds.
//
// A refused request gets 429 with Retry-After and an RFC 9457 problem document of type
// https://iana.org/assignments/http-problem-types#quota-exceeded. Allowed and refused
// responses carry the RateLimit-Policy and RateLimit header fields of the IETF httpapi
// draft (for example `RateLimit-Policy: "user";q=100;w=60` and `RateLimit:
// "user";r=0;t=12`), unless DisableHeaders is set. A dry-run zone decides, logs and counts
// but never refuses and adds no header.
//
// Placeholders it sets:
//
//	{http.rate_limit.zone}      the zone that refused the request, else the applied zone with the fewest remaining
//	{http.rate_limit.decision}  allowed, denied or dry_run_denied
//	{http.rate_limit.remaining} the remaining requests of that zone
//
// Windows survive `caddy reload`: they are pooled by zone name, window and max_keys.
type Handler struct {
	// Zones are the limits, evaluated in order. At least one is required.
	Zones []*Zone `json:"zones,omitempty"`

	// Valkey is the host:port of the Valkey (or Redis) server that edge nodes share; empty
	// for local mode, where each node enforces the limits on its own. Default: empty.
	Valkey string `json:"valkey,omitempty"`

	// ValkeyTimeout bounds the Valkey calls of one request; past it the request is decided
	// on the local windows. Default: 25ms.
	ValkeyTimeout caddy.Duration `json:"valkey_timeout,omitempty"`

	// ValkeyRetry is how long Valkey is left alone after it failed three calls in a row
	// (the breaker's open period, doubling on repeated failures up to 30s). Default: 1s.
	ValkeyRetry caddy.Duration `json:"valkey_retry,omitempty"`

	// FallbackShare is the number of edge nodes expected to share Valkey: while Valkey is
	// unavailable, each node admits events ÷ FallbackShare (rounded up) per window, so the
	// nodes together stay near the shared limit. 1 lets each node admit the full limit.
	// Default: 1.
	FallbackShare int `json:"fallback_share,omitempty"`

	// MaxKeys caps the keys each zone keeps in memory. When full, a new key drops idle keys
	// and then evicts the least recently active of a few sampled keys, which starts afresh.
	// Default: 1000000.
	MaxKeys int `json:"max_keys,omitempty"`

	// DisableHeaders leaves out the RateLimit-Policy and RateLimit response header fields.
	DisableHeaders bool `json:"disable_headers,omitempty"`

	timeout time.Duration
	remote  *remote
	logger  *zap.Logger
}

// Zone is one named limit.
type Zone struct {
	// Name names the zone in headers, metrics, logs and Valkey keys: letters, digits,
	// '-' and '_'. Required.
	Name string `json:"name"`

	// Key is the template of the key requests are counted by: {http.auth.user.id} for
	// the verified user, {http.vars.client_ip} for the client IP (which honours the
	// server's trusted_proxies), a constant such as "all" for one global limit, or a mix.
	// Placeholders must be under http.auth., http.vars., http.request. or http.regexp.
	// Required.
	Key string `json:"key"`

	// Events is the number of requests a key may make per window. Required, at least 1.
	Events int `json:"events"`

	// Window is the length of the sliding window. Required, positive.
	Window caddy.Duration `json:"window"`

	// MatchRaw limits the zone to the requests that match this matcher set (all of its
	// matchers). Default: every request.
	MatchRaw caddy.ModuleMap `json:"match,omitempty" caddy:"namespace=http.matchers"`

	// DryRun makes the zone decide, log and count without refusing any request.
	DryRun bool `json:"dry_run,omitempty"`

	key      template
	match    caddyhttp.MatcherSet
	state    *zoneState
	poolKey  string
	policy   string // this zone's RateLimit-Policy item
	outcomes [3]prometheus.Counter
	fallback prometheus.Counter
	valkeyS  prometheus.Observer
}

// The outcomes of a zone decision, as metric label values.
const (
	outcomeAllowed = iota
	outcomeDenied
	outcomeDryRunDenied
)

var outcomeNames = [...]string{"allowed", "denied", "dry_run_denied"}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_rate_limit",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, loads the zones' matchers, takes the zones' windows (and the
// Valkey connection) from the pools, and registers the metrics.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.ValkeyTimeout == 0 {
		h.ValkeyTimeout = caddy.Duration(defaultTimeout)
	}
	if h.ValkeyRetry == 0 {
		h.ValkeyRetry = caddy.Duration(defaultRetry)
	}
	if h.FallbackShare == 0 {
		h.FallbackShare = 1
	}
	if h.MaxKeys == 0 {
		h.MaxKeys = defaultMaxKeys
	}
	h.timeout = time.Duration(h.ValkeyTimeout)
	if err := h.Validate(); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	for _, z := range h.Zones {
		if z.MatchRaw != nil {
			mods, err := ctx.LoadModule(z, "MatchRaw")
			if err != nil {
				return fmt.Errorf("zone %s: loading matchers: %v", z.Name, err)
			}
			var sets caddyhttp.MatcherSets
			if err := sets.FromInterface([]map[string]any{mods.(map[string]any)}); err != nil {
				return fmt.Errorf("zone %s: %v", z.Name, err)
			}
			z.match = sets[0]
		}
		for i, name := range outcomeNames {
			z.outcomes[i] = decisions.WithLabelValues(z.Name, name)
		}
		z.fallback = fallbacks.WithLabelValues(z.Name)
		z.valkeyS = valkeySeconds.WithLabelValues(z.Name)
		z.policy = strconv.Quote(z.Name) + ";q=" + strconv.Itoa(z.Events) + ";w=" + strconv.Itoa(ceilSeconds(time.Duration(z.Window)))
		z.poolKey = fmt.Sprintf("%s|%s|%d", z.Name, time.Duration(z.Window), h.MaxKeys)
		st, err := takeZone(z.poolKey, time.Duration(z.Window), h.MaxKeys)
		if err != nil {
			return err
		}
		z.state = st
		st.info.Store(&ZoneInfo{Name: z.Name, Key: z.Key, Events: z.Events, Window: time.Duration(z.Window).String(),
			DryRun: z.DryRun, Valkey: h.Valkey})
	}
	if h.Valkey != "" {
		r, err := takeRemote(h.Valkey, time.Duration(h.ValkeyRetry), h.logger)
		if err != nil {
			return err
		}
		h.remote = r
		for _, z := range h.Zones {
			z.state.remote.Store(r)
		}
	}
	return nil
}

// zoneName is what a zone's name may contain.
var zoneName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if len(h.Zones) == 0 {
		return errors.New("at least one zone is required")
	}
	seen := map[string]bool{}
	for _, z := range h.Zones {
		if err := z.validate(); err != nil {
			return err
		}
		if seen[z.Name] {
			return fmt.Errorf("zone %s defined twice", z.Name)
		}
		seen[z.Name] = true
	}
	switch {
	case h.ValkeyTimeout < 0:
		return errors.New("valkey timeout must not be negative")
	case h.ValkeyRetry < 0:
		return errors.New("valkey retry must not be negative")
	case h.FallbackShare < 0:
		return errors.New("fallback share must not be negative")
	case h.MaxKeys < 0:
		return errors.New("max keys must not be negative")
	}
	return nil
}

// validate checks one zone and compiles its key template.
func (z *Zone) validate() error {
	if !zoneName.MatchString(z.Name) {
		return fmt.Errorf("zone name %q: want letters, digits, '-' and '_'", z.Name)
	}
	if z.Events < 1 {
		return fmt.Errorf("zone %s: events must be at least 1", z.Name)
	}
	if z.Window <= 0 {
		return fmt.Errorf("zone %s: window must be positive", z.Name)
	}
	t, err := parseTemplate(z.Key)
	if err != nil {
		return fmt.Errorf("zone %s: %v", z.Name, err)
	}
	z.key = t
	return nil
}

// Cleanup releases the zones' windows and the Valkey connection.
func (h *Handler) Cleanup() error {
	for _, z := range h.Zones {
		if z.state != nil {
			_, _ = zones.Delete(z.poolKey)
		}
	}
	if h.remote != nil {
		_, _ = remotes.Delete(remoteKey(h.Valkey, time.Duration(h.ValkeyRetry)))
	}
	return nil
}

// ServeHTTP decides the request in every zone that applies and refuses it with 429 when
// an enforcing zone does.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	get := func(name string) (string, bool) {
		v, ok := repl.Get(name)
		return caddy.ToString(v), ok
	}
	now := time.Now()
	ctx := r.Context()
	if h.remote != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	var (
		policyBuf, stateBuf [128]byte // room for a few zones' header items without allocating
		policies, states    = policyBuf[:0], stateBuf[:0]
		shown               *Zone
		shownDecision       = outcomeNames[outcomeAllowed]
		shownRemaining      = math.MaxInt
	)
	for _, z := range h.Zones {
		if z.match != nil {
			ok, err := z.match.MatchWithError(r)
			if err != nil {
				return caddyhttp.Error(http.StatusInternalServerError, err)
			}
			if !ok {
				continue
			}
		}
		key, ok := z.key.render(get)
		if !ok {
			continue
		}
		d := h.decide(ctx, z, key, now)
		switch {
		case d.Allowed:
			z.outcomes[outcomeAllowed].Inc()
		case z.DryRun:
			z.outcomes[outcomeDryRunDenied].Inc()
			if c := h.logger.Check(zap.InfoLevel, "rate limit exceeded (dry run)"); c != nil {
				c.Write(zap.String("zone", z.Name), zap.Duration("retry_after", d.Reset))
			}
			if shownRemaining > 0 {
				shown, shownDecision, shownRemaining = z, outcomeNames[outcomeDryRunDenied], 0
			}
			continue
		default:
			z.outcomes[outcomeDenied].Inc()
		}
		if z.DryRun {
			continue
		}
		if !h.DisableHeaders {
			policies, states = z.appendHeaders(policies, states, d)
		}
		if !d.Allowed {
			repl.Set("http.rate_limit.zone", z.Name)
			repl.Set("http.rate_limit.decision", outcomeNames[outcomeDenied])
			repl.Set("http.rate_limit.remaining", 0)
			setHeaders(w, policies, states)
			return writeDenied(w, z.Name, d.Reset)
		}
		if d.Remaining < shownRemaining {
			shown, shownDecision, shownRemaining = z, outcomeNames[outcomeAllowed], d.Remaining
		}
	}
	if shown != nil {
		repl.Set("http.rate_limit.zone", shown.Name)
		repl.Set("http.rate_limit.decision", shownDecision)
		repl.Set("http.rate_limit.remaining", shownRemaining)
	}
	setHeaders(w, policies, states)
	return next.ServeHTTP(w, r)
}

// decide decides one request of a zone's key: on Valkey when configured and available,
// else on the local windows.
func (h *Handler) decide(ctx context.Context, z *Zone, key string, now time.Time) Decision {
	if h.remote == nil {
		return z.state.windows.Allow(key, z.Events, now)
	}
	d, took, err := h.remote.decide(ctx, z.Name, key, z.Events, time.Duration(z.Window))
	if took > 0 {
		z.valkeyS.Observe(took.Seconds())
	}
	if err == nil {
		if d.Allowed {
			z.state.windows.Record(key, z.Events, now)
		}
		return d.Decision
	}
	z.fallback.Inc()
	if c := h.logger.Check(zap.DebugLevel, "rate limit decided locally: valkey unavailable"); c != nil {
		c.Write(zap.String("zone", z.Name), zap.Error(err))
	}
	return z.state.windows.Allow(key, (z.Events+h.FallbackShare-1)/h.FallbackShare, now)
}

// appendHeaders appends the zone's items to the RateLimit-Policy and RateLimit values.
func (z *Zone) appendHeaders(policies, states []byte, d Decision) ([]byte, []byte) {
	if len(policies) > 0 {
		policies = append(policies, ", "...)
		states = append(states, ", "...)
	}
	policies = append(policies, z.policy...)
	states = strconv.AppendQuote(states, z.Name)
	states = append(states, ";r="...)
	states = strconv.AppendInt(states, int64(d.Remaining), 10)
	states = append(states, ";t="...)
	states = strconv.AppendInt(states, int64(ceilSeconds(d.Reset)), 10)
	return policies, states
}

// setHeaders sets the RateLimit header fields, if there are any.
func setHeaders(w http.ResponseWriter, policies, states []byte) {
	if len(policies) == 0 {
		return
	}
	vals := []string{string(policies), string(states)}
	hdr := w.Header()
	hdr["Ratelimit-Policy"] = vals[0:1:1]
	hdr["Ratelimit"] = vals[1:2:2]
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// quotaExceeded is the problem type of a refused request, registered by the IETF httpapi
// RateLimit header fields draft.
const quotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// writeDenied answers a refused request: 429, Retry-After in whole seconds (at least 1)
// and an RFC 9457 problem document naming the zone.
func writeDenied(w http.ResponseWriter, zone string, retryAfter time.Duration) error {
	secs := max(1, ceilSeconds(retryAfter))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Retry-After", strconv.Itoa(secs))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	var b strings.Builder
	b.WriteString(`{"type":"` + quotaExceeded + `","title":"Too Many Requests","status":429,"detail":`)
	b.WriteString(strconv.Quote(fmt.Sprintf("Request quota of zone %s exceeded; retry after %d seconds.", zone, secs)))
	b.WriteString(`,"violated-policies":[` + strconv.Quote(zone) + "]}\n")
	_, err := w.Write([]byte(b.String()))
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
