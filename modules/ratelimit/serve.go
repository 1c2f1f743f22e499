package ratelimit

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
)

// clientPrefixPlaceholder is the key placeholder of the client's address prefix.
const clientPrefixPlaceholder = "http.rate_limit.client_prefix"

// applied is a zone that applies to a request: the request's key in it and, once decided,
// the zone's decision.
type applied struct {
	z   *Zone
	key string
	d   Decision
}

// ServeHTTP decides the request in every zone that applies and passes it on when all the
// enforcing ones allow it; else it answers 429. A panic of the limiter's own work is
// recovered, logged, counted (muejam_edge_panics_total{where="edge_rate_limit.serve"}) and
// answered with a 500 problem document; panics of the handlers after it are theirs.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	pass, err := h.limit(w, r)
	if !pass {
		return err
	}
	return next.ServeHTTP(w, r)
}

// limit decides the request. pass is true when the request goes on to the next handler;
// otherwise limit has answered it (429, or 500 after a panic) or err says why not.
func (h *Handler) limit(w http.ResponseWriter, r *http.Request) (pass bool, err error) {
	wrote := false
	defer func() {
		if _, ok := err.(*panics.Error); ok {
			pass = false
			if !wrote {
				err = writeProblem(w, http.StatusInternalServerError, "Internal Server Error",
					"The rate limiter failed on this request.", "")
			}
		}
	}()
	defer panics.Recover(h.logger, "edge_rate_limit.serve", &err)

	if len(h.exempt) > 0 {
		ok, err := h.exempt.AnyMatchWithError(r)
		if err != nil {
			return false, caddyhttp.Error(http.StatusInternalServerError, err)
		}
		if ok {
			return true, nil
		}
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var prefix string
	get := func(name string) (string, bool) {
		if name == clientPrefixPlaceholder {
			if prefix == "" {
				prefix = clientPrefix(clientIP(r), h.IPv4Prefix, h.IPv6Prefix)
				if prefix != "" {
					repl.Set(clientPrefixPlaceholder, prefix)
				}
			}
			return prefix, prefix != ""
		}
		v, ok := repl.Get(name)
		return caddy.ToString(v), ok
	}
	var buf [maxLocked]applied
	zs := buf[:0]
	for _, z := range h.Zones {
		if z.match != nil {
			ok, err := z.match.MatchWithError(r)
			if err != nil {
				return false, caddyhttp.Error(http.StatusInternalServerError, err)
			}
			if !ok {
				continue
			}
		}
		if key, ok := z.key.render(get); ok {
			zs = append(zs, applied{z: z, key: key})
		}
	}
	if len(zs) == 0 {
		return true, nil
	}
	admitted := h.decide(r.Context(), zs, time.Now())

	var (
		policyBuf, stateBuf [128]byte // room for a few zones' header items without allocating
		policies, states    = policyBuf[:0], stateBuf[:0]
		shown               *Zone
		shownDecision       = outcomeNames[outcomeAllowed]
		shownRemaining      = math.MaxInt
		refusedBy           []string
		retryAfter          time.Duration
	)
	for i := range zs {
		z, d := zs[i].z, zs[i].d
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
			refusedBy = append(refusedBy, z.Name)
			retryAfter = max(retryAfter, d.Reset)
		}
		if z.DryRun {
			continue
		}
		if !h.DisableHeaders {
			policies, states = z.appendHeaders(policies, states, d)
		}
		if d.Allowed && d.Remaining < shownRemaining {
			shown, shownDecision, shownRemaining = z, outcomeNames[outcomeAllowed], d.Remaining
		}
	}
	if !admitted {
		if len(refusedBy) == 0 { // cannot happen: a refused request has a zone without room
			refusedBy = append(refusedBy, zs[0].z.Name)
		}
		repl.Set("http.rate_limit.zone", refusedBy[0])
		repl.Set("http.rate_limit.decision", outcomeNames[outcomeDenied])
		repl.Set("http.rate_limit.remaining", 0)
		setHeaders(w, policies, states)
		wrote = true
		return false, writeDenied(w, refusedBy, retryAfter)
	}
	if shown != nil {
		repl.Set("http.rate_limit.zone", shown.Name)
		repl.Set("http.rate_limit.decision", shownDecision)
		repl.Set("http.rate_limit.remaining", shownRemaining)
	}
	setHeaders(w, policies, states)
	return true, nil
}

// decide decides the request in the zones of zs, setting their decisions, and returns
// whether it is admitted: on Valkey when configured and available, else on the local
// windows (with Valkey configured, at events ÷ fallback_share, counted as fallbacks).
func (h *Handler) decide(ctx context.Context, zs []applied, now time.Time) bool {
	if h.remote == nil {
		return decideLocal(zs, now, 1)
	}
	if admitted, err := h.decideRemote(ctx, zs, now); err == nil {
		return admitted
	} else if c := h.logger.Check(zap.DebugLevel, "rate limit decided locally: valkey unavailable"); c != nil {
		c.Write(zap.Error(err))
	}
	for i := range zs {
		zs[i].z.fallback.Inc()
	}
	return decideLocal(zs, now, h.FallbackShare)
}

// decideLocal decides the request on the zones' local windows, each zone's limit divided by
// share (rounded up): all zones at once, so that a refused request is counted in none.
func decideLocal(zs []applied, now time.Time, share int) bool {
	var buf [maxLocked]Check
	checks := buf[:0]
	for _, a := range zs {
		checks = append(checks, Check{Windows: a.z.state.windows, Key: a.key,
			Limit: (a.z.Events + share - 1) / share, DryRun: a.z.DryRun})
	}
	admitted := AllowAll(checks, now)
	for i := range zs {
		zs[i].d = checks[i].Decision
	}
	return admitted
}

// decideRemote decides the request on Valkey. When Valkey admits it, it is recorded in the
// local windows of each zone that counted it too, so that a fallback starts from this node's
// recent history.
func (h *Handler) decideRemote(ctx context.Context, zs []applied, now time.Time) (bool, error) {
	checks := make([]remoteCheck, 0, len(zs)) // kept by a batch: on the heap anyway
	for i, a := range zs {
		z := a.z
		checks = append(checks, remoteCheck{Key: valkeyKey(z.Name, a.key), Index: i,
			Window: time.Duration(z.Window), WindowArg: z.windowArg, LimitArg: z.limitArg,
			Limit: z.Events, DryRun: z.DryRun})
	}
	admitted, took, err := h.remote.decideAll(ctx, h.timeout, checks)
	if took > 0 {
		for _, a := range zs {
			a.z.valkeyS.Observe(took.Seconds())
		}
	}
	if err != nil {
		return false, err
	}
	for i := range checks {
		zs[checks[i].Index].d = checks[i].Decision
	}
	if admitted {
		for _, a := range zs {
			if a.d.Allowed {
				a.z.state.windows.Record(a.key, a.z.Events, now)
			}
		}
	}
	return admitted, nil
}

// clientIP is the client's address as Caddy determined it ({http.vars.client_ip}, which
// honours the server's trusted_proxies and client_ip_headers), else the peer's.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// clientPrefix is the key of a client address: the network of its first v4 (IPv4) or v6
// (IPv6) bits in CIDR notation, such as 203.0.113.7/32 or 2001:db8:1:2::/64. An IPv4
// address mapped into IPv6 counts as IPv4; a zone (fe80::1%eth0) and a port are dropped. Text
// that is no address is returned as it is.
func clientPrefix(ip string, v4, v6 int) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		ap, err := netip.ParseAddrPort(ip)
		if err != nil {
			return strings.TrimSpace(ip)
		}
		addr = ap.Addr()
	}
	addr = addr.Unmap().WithZone("")
	bits := v6
	if addr.Is4() {
		bits = v4
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return ip
	}
	return p.String()
}
