package edgecache

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/valkeyconn"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("edge_cache", parseCaddyfile)
	// After request_header (so a header set from the verified identity can be Vary'd on)
	// and before encode (so compressed responses are stored once per coding and hits are
	// not compressed again), hence before circuit_breaker and reverse_proxy: a
	// short-circuited upstream can be answered from a stale entry.
	httpcaddyfile.RegisterDirectiveOrder("edge_cache", httpcaddyfile.Before, "encode")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Handler)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_cache [<name>] {
//		l1_max_size      <size>        # L1 memory budget, default 256MiB
//		max_body_size    <size>        # largest body stored, default 1MiB
//		max_ttl          <duration>    # cap on any entry's life, default 24h
//		keep_stale       <duration>    # keep stale entries with validators this long, default 5m
//		heuristic        <ratio>       # heuristic freshness fraction (e.g. 0.1), default off
//		store_set_cookie               # store responses that set cookies
//		targeted_fields  <field>...    # RFC 9213 fields obeyed over Cache-Control, default CDN-Cache-Control
//		key {
//			parts         <part>...     # of method scheme host path query, default method host path query
//			query         sort|keep|ignore  # default sort
//			ignore_params <name>...     # query parameters left out of the key
//		}
//		coalesce_timeout <duration>    # how long a miss waits for a concurrent one, default 5s
//		bypass {                       # repeatable: requests matching any set skip the lookup
//			<matchers>
//		}
//		valkey <host:port...> {        # L2 and purge fan-out shared by edge nodes (default: L1
//			cluster [on|off]           # only); see cfgarg.Valkey for cluster,
//		}                              # tls, username, password
//		valkey_timeout   <duration>    # L2 read timeout, default 20ms
//		valkey_retry     <duration>    # breaker open period after 3 failures, default 1s
//		write_queue      <n>           # pending L2 writes before dropping, default 1024
//		purge_timeout    <duration>    # how long a purge waits for Valkey, default 250ms
//		purge_settle     <duration>    # after a purge, do not store its tags' responses this long, default 0
//		max_purge_records <n>          # purge records kept (oldest dropped beyond), default 100000
//		invalidate_when  <placeholder>|off  # unsafe requests invalidate URLs only when it is not
//		                               # empty, default {http.auth.user.id}
//		invalidate_match {             # repeatable: unsafe requests matching any set may invalidate
//			<matchers>
//		}
//	}
//
// Values are validated as they are parsed, so `caddy adapt` and `caddy validate` report a
// bad one with its file and line.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		h.Name = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "l1_max_size":
			h.L1MaxBytes, err = cfgarg.Size(d)
		case "max_body_size":
			h.MaxBodyBytes, err = cfgarg.Size(d)
		case "max_ttl":
			h.MaxTTL, err = cfgarg.Duration(d)
		case "keep_stale":
			h.KeepStale, err = cfgarg.Duration(d)
		case "heuristic":
			h.HeuristicFraction, err = cfgarg.Ratio(d)
		case "store_set_cookie":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.StoreSetCookie = true
		case "targeted_fields":
			h.TargetedFields = d.RemainingArgs()
			if len(h.TargetedFields) == 0 {
				return d.ArgErr()
			}
		case "key":
			err = h.unmarshalKey(d)
		case "coalesce_timeout":
			h.CoalesceTimeout, err = cfgarg.Duration(d)
		case "bypass":
			if d.NextArg() {
				return d.ArgErr()
			}
			set, perr := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
			if perr != nil {
				return perr
			}
			h.BypassRaw = append(h.BypassRaw, set)
		case "valkey":
			var cfg valkeyconn.Config
			if cfg, err = cfgarg.Valkey(d); err == nil && cfg.Configured() {
				h.Valkey = &cfg
			}
		case "valkey_timeout":
			h.ValkeyTimeout, err = cfgarg.Duration(d)
		case "valkey_retry":
			h.ValkeyRetry, err = cfgarg.Duration(d)
		case "write_queue":
			h.WriteQueue, err = cfgarg.Int(d, 1)
		case "purge_timeout":
			h.PurgeTimeout, err = cfgarg.Duration(d)
		case "purge_settle":
			h.PurgeSettle, err = cfgarg.Duration(d)
		case "max_purge_records":
			h.MaxPurgeRecords, err = cfgarg.Int(d, 1)
		case "invalidate_when":
			if !d.AllArgs(&h.InvalidateWhen) {
				return d.ArgErr()
			}
		case "invalidate_match":
			if d.NextArg() {
				return d.ArgErr()
			}
			set, perr := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
			if perr != nil {
				return perr
			}
			h.InvalidateMatchRaw = append(h.InvalidateMatchRaw, set)
		default:
			return d.Errf("unrecognized edge_cache option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if err := h.Validate(); err != nil {
		return d.Errf("edge_cache: %v", err)
	}
	return nil
}

// unmarshalKey parses `key { ... }`.
func (h *Handler) unmarshalKey(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	k := new(KeyConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "parts":
			k.Parts = d.RemainingArgs()
			if len(k.Parts) == 0 {
				return d.ArgErr()
			}
		case "query":
			if !d.AllArgs(&k.Query) {
				return d.ArgErr()
			}
		case "ignore_params":
			k.IgnoreParams = d.RemainingArgs()
			if len(k.IgnoreParams) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized key option %q", d.Val())
		}
		if _, err := newKeyer(k.Parts, k.Query, k.IgnoreParams); err != nil {
			return d.Errf("key: %v", err)
		}
	}
	h.Key = k
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
