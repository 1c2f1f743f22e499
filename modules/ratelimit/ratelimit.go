// Package ratelimit provides http.handlers.edge_rate_limit, the `edge_rate_limit` directive
// of MueJam Edge: named zones of exact sliding-window limits, keyed by the verified user, the
// client IP or a constant, enforced in memory on each node or shared by every node through
// Valkey, with a fallback to the local windows when Valkey is slow or down.
package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/valkeyconn"
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
// placeholder, such as {http.auth.user.id} of an anonymous request, skips the zone). The
// request is decided in all of them at once, then counted: it is admitted when every
// enforcing zone allows it, and then counted in every zone that has room for it; a request
// refused by any zone consumes no quota in any zone (one client flooding its own per-address
// zone cannot use up a zone it shares with others). Requests that match Exempt skip the
// limiter altogether.
//
// Each zone is an exact sliding-window log: at most Events admitted requests per key in
// any span of Window, wherever the span starts (refused requests do not count). Without
// Valkey the windows live in this node's memory, and the zones of a request are decided
// under their windows' locks, together. With Valkey every node shares them: one atomic
// script decides all the zones of a request whose keys share a cluster slot (on one server:
// all of them, one round trip), and concurrent requests with the same keys share a script
// call (group commit); on a cluster, the groups of other slots go in the same pipelined
// round trip, and when one group refuses, a second round trip takes the request back out of
// the groups that counted it. When Valkey errs or does not answer within
// ValkeyTimeout, the decision is made at once on the local windows (which also record every
// request Valkey admitted, so they start from this node's recent history) and counted as a
// fallback; after three failures in a row a breaker stops asking Valkey for ValkeyRetry
// (doubling on repeated failures, up to 30 s), and Valkey is used again once a probe
// succeeds.
//
// A refused request gets 429 with Retry-After and an RFC 9457 problem document of type
// https://iana.org/assignments/http-problem-types#quota-exceeded naming the zones that
// refused it. Allowed and refused responses carry the RateLimit-Policy and RateLimit header
// fields of the IETF httpapi draft (for example `RateLimit-Policy: "user";q=100;w=60` and
// `RateLimit: "user";r=0;t=12`), unless DisableHeaders is set. A dry-run zone decides, logs
// and counts but never refuses, never keeps the request from being counted in the other
// zones, and adds no header.
//
// Placeholders it sets:
//
//	{http.rate_limit.zone}          the first zone that refused the request, else the applied zone with the fewest remaining
//	{http.rate_limit.decision}      allowed, denied or dry_run_denied
//	{http.rate_limit.remaining}     the remaining requests of that zone
//	{http.rate_limit.client_prefix} the client's address prefix (see IPv4Prefix), when a key used it
//
// Windows survive `caddy reload`: they are pooled by zone name, window and max_keys.
type Handler struct {
	// Zones are the limits, all decided for each request; their order is that of the
	// header items and of the refusing zones in a 429. At least one is required.
	Zones []*Zone `json:"zones,omitempty"`

	// Valkey is the Valkey (or Redis) server or cluster that edge nodes share; absent for
	// local mode, where each node enforces the limits on its own. A plain "host:port" string
	// is accepted. Default: absent.
	Valkey *valkeyconn.Config `json:"valkey,omitempty"`

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

	// ExemptRaw lists matcher sets of requests the limiter lets through untouched: no zone
	// counts or refuses them and they get no header fields. A request is exempt when it
	// matches any of the sets (all the matchers of one set). Meant for load-balancer health
	// checks and internal probes, matched by what a client cannot forge (client_ip: the
	// load balancer's own addresses, loopback), not by path alone. Default: none.
	ExemptRaw []caddy.ModuleMap `json:"exempt,omitempty" caddy:"namespace=http.matchers"`

	// IPv4Prefix is the prefix length, in bits, by which {http.rate_limit.client_prefix}
	// groups IPv4 client addresses: 32 keys each address apart. 1 to 32; default: 32.
	IPv4Prefix int `json:"ipv4_prefix,omitempty"`

	// IPv6Prefix is the prefix length, in bits, by which {http.rate_limit.client_prefix}
	// groups IPv6 client addresses: 64, the subnet one subscriber gets (who can use any of
	// its 2^64 addresses). 1 to 128; default: 64.
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`

	exempt  caddyhttp.MatcherSets
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
	// the verified user, {http.rate_limit.client_prefix} for the client's address prefix
	// (the client IP that Caddy determined, honouring the server's trusted_proxies, as a
	// /32 for IPv4 and a /64 for IPv6 by default), a constant such as "all" for one limit
	// over everyone, or a mix. Placeholders must be under http.auth., http.vars.,
	// http.request. or http.regexp., or be {http.rate_limit.client_prefix}. Required.
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

	key       template
	match     caddyhttp.MatcherSet
	state     *zoneState
	poolKey   string
	policy    string // this zone's RateLimit-Policy item
	windowArg string // the Valkey script's arguments for the zone: window in µs, events
	limitArg  string
	outcomes  [3]prometheus.Counter
	fallback  prometheus.Counter
	valkeyS   prometheus.Observer
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
	if h.IPv4Prefix == 0 {
		h.IPv4Prefix = 32
	}
	if h.IPv6Prefix == 0 {
		h.IPv6Prefix = 64
	}
	h.timeout = time.Duration(h.ValkeyTimeout)
	if err := h.Validate(); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := panics.Register(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if h.ExemptRaw != nil {
		mods, err := ctx.LoadModule(h, "ExemptRaw")
		if err != nil {
			return fmt.Errorf("loading exempt matchers: %v", err)
		}
		if err := h.exempt.FromInterface(mods); err != nil {
			return fmt.Errorf("exempt: %v", err)
		}
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
		z.windowArg = strconv.FormatInt(time.Duration(z.Window).Microseconds(), 10)
		z.limitArg = strconv.Itoa(z.Events)
		z.poolKey = fmt.Sprintf("%s|%s|%d", z.Name, time.Duration(z.Window), h.MaxKeys)
		st, err := takeZone(z.poolKey, time.Duration(z.Window), h.MaxKeys)
		if err != nil {
			return err
		}
		z.state = st
		st.info.Store(&ZoneInfo{Name: z.Name, Key: z.Key, Events: z.Events, Window: time.Duration(z.Window).String(),
			DryRun: z.DryRun, Valkey: h.valkeyName()})
	}
	if h.Valkey.Configured() {
		r, err := takeRemote(h.Valkey.Replace(cfgarg.Placeholders), time.Duration(h.ValkeyRetry), h.logger)
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

// valkeyName names the shared server or cluster in GET /edge/limits; empty in local mode.
func (h *Handler) valkeyName() string {
	if !h.Valkey.Configured() {
		return ""
	}
	return h.Valkey.String()
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
	case h.IPv4Prefix < 0 || h.IPv4Prefix > 32:
		return fmt.Errorf("ipv4_prefix %d: want 1 to 32", h.IPv4Prefix)
	case h.IPv6Prefix < 0 || h.IPv6Prefix > 128:
		return fmt.Errorf("ipv6_prefix %d: want 1 to 128", h.IPv6Prefix)
	}
	if h.Valkey.Configured() {
		return h.Valkey.Validate()
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
		_, _ = remotes.Delete(remoteKey(h.Valkey.Replace(cfgarg.Placeholders), time.Duration(h.ValkeyRetry)))
	}
	return nil
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
// and an RFC 9457 problem document naming the zones that refused it.
func writeDenied(w http.ResponseWriter, zones []string, retryAfter time.Duration) error {
	secs := max(1, ceilSeconds(retryAfter))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	var detail, violated strings.Builder
	if len(zones) == 1 {
		detail.WriteString("Request quota of zone " + zones[0])
	} else {
		detail.WriteString("Request quotas of zones " + strings.Join(zones, ", "))
	}
	fmt.Fprintf(&detail, " exceeded; retry after %d seconds.", secs)
	violated.WriteString(`,"violated-policies":[`)
	for i, z := range zones {
		if i > 0 {
			violated.WriteByte(',')
		}
		violated.WriteString(strconv.Quote(z))
	}
	violated.WriteByte(']')
	return writeProblem(w, http.StatusTooManyRequests, "Too Many Requests", detail.String(), quotaExceeded, violated.String())
}

// writeProblem answers with an RFC 9457 problem document of the status, its title and detail,
// of type typ (about:blank when empty) and with extra members (JSON text after a comma, or
// empty), never stored by caches.
func writeProblem(w http.ResponseWriter, status int, title, detail, typ string, extra ...string) error {
	if typ == "" {
		typ = "about:blank"
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	var b strings.Builder
	b.WriteString(`{"type":` + strconv.Quote(typ) + `,"title":` + strconv.Quote(title) + `,"status":` + strconv.Itoa(status))
	b.WriteString(`,"detail":` + strconv.Quote(detail))
	for _, e := range extra {
		b.WriteString(e)
	}
	b.WriteString("}\n")
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
