package circuitbreaker

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/cfgarg"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("circuit_breaker", parseCaddyfile)
	// Early enough to guard handle/route blocks and reverse_proxy, late enough for rewrites,
	// auth and a response cache (which must sit in front to serve stale on a short-circuit).
	httpcaddyfile.RegisterDirectiveOrder("circuit_breaker", httpcaddyfile.Before, "invoke")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	cb := new(Handler)
	err := cb.UnmarshalCaddyfile(h.Dispenser)
	return cb, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	circuit_breaker [<key>] {
//		key                  <placeholder template>   # default {http.request.host}
//		max_breakers         <n>                      # default 100
//		consecutive_failures <n>
//		failure_ratio        <ratio|percent>          # 0.5 or 50%
//		slow_ratio           <ratio|percent>
//		slow_threshold       <duration>
//		min_requests         <n>                      # default 10
//		window               <duration>               # default 10s
//		open_duration        <duration>               # default 10s
//		max_open_duration    <duration>               # doubling cap; default open_duration
//		half_open_probes     <n>                      # default 1
//		failure_status       <code|class>...          # default every 5xx but 501; e.g. 5xx 429
//	}
//
// Without a trip condition, a breaker opens after 5 consecutive failures.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		h.Key = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key":
			if !d.AllArgs(&h.Key) {
				return d.ArgErr()
			}
		case "max_breakers":
			n, err := cfgarg.Int(d, 1)
			if err != nil {
				return err
			}
			h.MaxBreakers = n
		default:
			if err := h.Policy.unmarshalOption(d); err != nil {
				return err
			}
		}
	}
	return h.Policy.check(d)
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens, inside reverse_proxy.
// Syntax:
//
//	transport circuit_breaker {
//		<the options of the circuit_breaker directive but key and max_breakers>
//		http {
//			<the options of transport http>
//		}
//	}
func (t *Transport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // transport name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() == "http" {
			if err := t.HTTPTransport.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return err
			}
			continue
		}
		if err := t.Policy.unmarshalOption(d); err != nil {
			return err
		}
	}
	return t.Policy.check(d)
}

// unmarshalOption parses the policy option d is on.
func (p *Policy) unmarshalOption(d *caddyfile.Dispenser) error {
	var err error
	switch d.Val() {
	case "consecutive_failures":
		p.ConsecutiveFailures, err = cfgarg.Int(d, 1)
	case "failure_ratio":
		p.FailureRatio, err = cfgarg.Ratio(d)
	case "slow_ratio":
		p.SlowRatio, err = cfgarg.Ratio(d)
	case "slow_threshold":
		p.SlowThreshold, err = cfgarg.Duration(d)
	case "min_requests":
		p.MinRequests, err = cfgarg.Int(d, 1)
	case "window":
		p.Window, err = cfgarg.Duration(d)
	case "open_duration":
		p.OpenDuration, err = cfgarg.Duration(d)
	case "max_open_duration":
		p.MaxOpenDuration, err = cfgarg.Duration(d)
	case "half_open_probes":
		p.HalfOpenProbes, err = cfgarg.Int(d, 1)
	case "failure_status":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		for _, arg := range args {
			code, err := strconv.Atoi(strings.TrimSuffix(strings.ToLower(arg), "xx"))
			if err != nil || !(code >= 1 && code <= 5 || code >= 100 && code <= 599) {
				return d.Errf("failure_status: %q is not a status code (100-599) or class (1xx-5xx)", arg)
			}
			p.FailureStatus = append(p.FailureStatus, code)
		}
	default:
		return d.Errf("unrecognized circuit_breaker option %q", d.Val())
	}
	return err
}

// check reports a policy whose options do not fit together, at the current token.
func (p *Policy) check(d *caddyfile.Dispenser) error {
	if err := p.validate(); err != nil {
		return d.Errf("circuit_breaker: %v", err)
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Transport)(nil)
)
