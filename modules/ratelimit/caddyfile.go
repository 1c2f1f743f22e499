package ratelimit

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/valkeyconn"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("edge_rate_limit", parseCaddyfile)
	// After authentication (which jwtauth orders after basic_auth) and forward_auth, so
	// that {http.auth.user.id} is set; before everything that does work for the request.
	// Caddy only orders relative to its standard directives, hence forward_auth.
	httpcaddyfile.RegisterDirectiveOrder("edge_rate_limit", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	rl := new(Handler)
	err := rl.UnmarshalCaddyfile(h.Dispenser)
	return rl, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_rate_limit {
//		zone <name> {
//			key    <template>      # {http.auth.user.id}, {http.vars.client_ip}, a constant, ...
//			events <n>             # at least 1
//			window <duration>      # positive
//			match {                # optional: the zone applies only to matching requests
//				<matchers>
//			}
//			dry_run                # decide, log and count, never refuse
//		}
//		...                        # more zones; all must allow
//
//		exempt {                   # requests the limiter lets through untouched (repeatable:
//			<matchers>             # any block matching exempts): health checks, probes
//		}
//		ipv4_prefix <bits>         # {http.rate_limit.client_prefix} of IPv4 clients (default 32)
//		ipv6_prefix <bits>         # {http.rate_limit.client_prefix} of IPv6 clients (default 64)
//
//		valkey <host:port...> {    # share the windows between nodes (default: local); see
//			cluster [on|off]       # cfgarg.Valkey for cluster, tls, username,
//		}                          # password
//		valkey_timeout <duration>  # default 25ms
//		valkey_retry   <duration>  # breaker open period, default 1s
//		fallback_share <nodes>     # while Valkey is down each node admits events/nodes (default 1)
//		max_keys       <n>         # keys per zone in memory (default 1000000)
//		disable_headers            # no RateLimit-Policy / RateLimit header fields
//	}
//
// Zones are validated as they are parsed, so `caddy adapt` and `caddy validate` report a
// bad value with its file and line.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "zone":
			err = h.unmarshalZone(d)
		case "valkey":
			var cfg valkeyconn.Config
			if cfg, err = cfgarg.Valkey(d); err == nil && cfg.Configured() {
				h.Valkey = &cfg
			}
		case "valkey_timeout":
			h.ValkeyTimeout, err = cfgarg.Duration(d)
		case "valkey_retry":
			h.ValkeyRetry, err = cfgarg.Duration(d)
		case "fallback_share":
			h.FallbackShare, err = cfgarg.Int(d, 0)
		case "max_keys":
			h.MaxKeys, err = cfgarg.Int(d, 0)
		case "exempt":
			if d.NextArg() {
				return d.ArgErr()
			}
			var set caddy.ModuleMap
			if set, err = caddyhttp.ParseCaddyfileNestedMatcherSet(d); err == nil {
				if len(set) == 0 {
					return d.Err("exempt needs at least one matcher")
				}
				h.ExemptRaw = append(h.ExemptRaw, set)
			}
		case "ipv4_prefix", "ipv6_prefix":
			opt, most, field := d.Val(), 32, &h.IPv4Prefix
			if opt == "ipv6_prefix" {
				most, field = 128, &h.IPv6Prefix
			}
			if *field, err = cfgarg.Int(d, 1); err == nil && *field > most {
				return d.Errf("%s: %d is more bits than an address has (%d)", opt, *field, most)
			}
		case "disable_headers":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.DisableHeaders = true
		default:
			return d.Errf("unrecognized edge_rate_limit option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if len(h.Zones) == 0 {
		return d.Err("edge_rate_limit needs at least one zone")
	}
	return nil
}

// unmarshalZone parses `zone <name> { ... }`.
func (h *Handler) unmarshalZone(d *caddyfile.Dispenser) error {
	z := new(Zone)
	if !d.NextArg() {
		return d.ArgErr()
	}
	z.Name = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for _, other := range h.Zones {
		if other.Name == z.Name {
			return d.Errf("zone %s defined twice", z.Name)
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "key":
			if !d.AllArgs(&z.Key) {
				return d.ArgErr()
			}
			if _, err := parseTemplate(z.Key); err != nil {
				return d.Errf("zone %s: %v", z.Name, err)
			}
		case "events":
			z.Events, err = cfgarg.Int(d, 1)
		case "window":
			z.Window, err = cfgarg.Duration(d)
		case "match":
			if d.NextArg() {
				return d.ArgErr()
			}
			z.MatchRaw, err = caddyhttp.ParseCaddyfileNestedMatcherSet(d)
		case "dry_run":
			if d.NextArg() {
				return d.ArgErr()
			}
			z.DryRun = true
		default:
			return d.Errf("unrecognized zone option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if err := z.validate(); err != nil {
		return d.Errf("%v", err)
	}
	h.Zones = append(h.Zones, z)
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
