// Package readyourwrites provides http.matchers.read_your_writes, the `read_your_writes`
// request matcher of MueJam Edge: it matches a request that carries a valid read-your-writes
// token, so that edge_cache lets exactly those requests skip its lookup.
//
// After a write the app server hands the client a token (the X-Read-Your-Writes response
// header and the cookie ryw) saying which commit its reads must see; the client sends it
// back on its next reads for a few seconds. A cached answer computed before the write is no
// answer for it, so the edge bypasses its cache for such a request. But a bypass is a trip
// to the origin: were any token enough (any X-Read-Your-Writes header, any Cookie containing
// "ryw="), anyone could send every request past the cache. The token is signed
// (HMAC-SHA256, internal/rywtoken, the same code as the app server's) and this matcher
// verifies it with the app server's key (READ_YOUR_WRITES_KEY) before it matches: the
// header X-Read-Your-Writes, else the cookie named exactly ryw (parsed as a cookie, not
// searched for), signed with one of Keys, not older than TTL (the app server's
// READ_YOUR_WRITES_TTL) nor issued more than a minute in the future. Anything else does not
// match, and each token seen is counted in muejam_edge_read_your_writes_total by outcome
// (valid, invalid, expired, future).
//
// Caddyfile, inside edge_cache:
//
//	bypass {
//		read_your_writes {env.READ_YOUR_WRITES_KEY} {env.READ_YOUR_WRITES_KEY_PREVIOUS}
//	}
//
// JSON: {"read_your_writes": {"keys": ["{env.READ_YOUR_WRITES_KEY}"], "ttl": "30s"}}.
package readyourwrites

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/promreg"
	"github.com/muejam/edge/internal/rywtoken"
)

func init() {
	caddy.RegisterModule(Match{})
}

// DefaultTTL is the default of Match.TTL: the app server's default READ_YOUR_WRITES_TTL.
const DefaultTTL = 30 * time.Second

// Match is http.matchers.read_your_writes.
type Match struct {
	// Keys verify the tokens: the app server's READ_YOUR_WRITES_KEY, and during a rotation
	// its READ_YOUR_WRITES_KEY_PREVIOUS. Give them as placeholders ({env.READ_YOUR_WRITES_KEY},
	// {file./run/secrets/ryw}), replaced when the config loads; a key that is empty after
	// replacement is ignored, and each other must be at least 32 bytes. Required, unless
	// DevKey.
	Keys []string `json:"keys,omitempty"`

	// TTL is how long after its issue a token is honoured: the app server's
	// READ_YOUR_WRITES_TTL. Default: 30s.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// DevKey, when every key is empty, verifies with the public key of the development
	// stack (rywtoken.DevKey), which the app server signs with when its READ_YOUR_WRITES_KEY
	// is unset. For the dev Caddyfiles only: with it anyone can make a valid token.
	DevKey bool `json:"dev_key,omitempty"`

	keys *rywtoken.Keys
}

// CaddyModule returns the Caddy module information.
func (Match) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.read_your_writes",
		New: func() caddy.Module { return new(Match) },
	}
}

// outcomes counts the tokens the matcher saw, by rywtoken.Outcome.
var outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "muejam_edge_read_your_writes_total",
	Help: "Read-your-writes tokens seen by read_your_writes, by outcome: valid (matched: the cache is bypassed), invalid (forged, malformed or signed with a retired key), expired, future (issued ahead of this clock); all but valid do not match.",
}, []string{"outcome"})

// Provision replaces the keys' placeholders and registers the metric.
func (m *Match) Provision(ctx caddy.Context) error {
	if m.TTL == 0 {
		m.TTL = caddy.Duration(DefaultTTL)
	}
	var keys []string
	for _, k := range m.Keys {
		if v := cfgarg.Placeholders(k); v != "" {
			keys = append(keys, v)
		}
	}
	switch {
	case len(keys) > 0:
	case m.DevKey:
		ctx.Logger().Warn("read_your_writes: no key, verifying with the public development key (dev_key): anyone can bypass the cache")
		keys = []string{rywtoken.DevKey}
	case len(m.Keys) == 0:
		return errors.New("read_your_writes: a key is required")
	default:
		return errors.New("read_your_writes: every key is empty after replacing placeholders (is READ_YOUR_WRITES_KEY set?)")
	}
	var err error
	if m.keys, err = rywtoken.NewKeys(keys[0], keys[1:]...); err != nil {
		return fmt.Errorf("read_your_writes: %v", err)
	}
	for _, o := range rywtoken.Outcomes {
		outcomes.WithLabelValues(o.String())
	}
	return promreg.Register(ctx.GetMetricsRegistry(), outcomes)
}

// Validate checks the configuration.
func (m *Match) Validate() error {
	if m.TTL < 0 {
		return errors.New("read_your_writes: ttl must be positive")
	}
	return nil
}

// MatchWithError reports whether r carries a valid token, counting the token it carries.
func (m *Match) MatchWithError(r *http.Request) (bool, error) {
	_, out := m.keys.FromRequest(r, time.Duration(m.TTL), time.Now())
	if out == rywtoken.Absent {
		return false, nil
	}
	outcomes.WithLabelValues(out.String()).Inc()
	return out == rywtoken.Valid, nil
}

// Interface guards.
var (
	_ caddy.Provisioner                 = (*Match)(nil)
	_ caddy.Validator                   = (*Match)(nil)
	_ caddyhttp.RequestMatcherWithError = (*Match)(nil)
)
