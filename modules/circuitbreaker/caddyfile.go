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
//		failure_status       <code|class>...          # default 502 503 504; e.g. 5xx 429
//		probe <path> {                                # e.g. /v1/health; no probes by default
//			upstreams <host:port|http(s) URL>...      # required here
//			interval  <duration>                      # default 250ms
//			timeout   <duration>                      # default 1s
//			status    <code|class>...                 # healthy answers; default 2xx
//		}
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
			if err := h.Policy.unmarshalOption(d, false); err != nil {
				return err
			}
		}
	}
	return h.Policy.check(d, false)
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens, inside reverse_proxy.
// Syntax:
//
//	transport circuit_breaker {
//		<the options of the circuit_breaker directive but key and max_breakers>
//		probe <path> {
//			<the probe options of the circuit_breaker directive but upstreams>
//		}
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
		if err := t.Policy.unmarshalOption(d, true); err != nil {
			return err
		}
	}
	return t.Policy.check(d, true)
}

// unmarshalOption parses the policy option d is on. ownUpstream: see Policy.validate.
func (p *Policy) unmarshalOption(d *caddyfile.Dispenser, ownUpstream bool) error {
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
		p.FailureStatus, err = statusArgs(d)
	case "probe":
		if p.Probe != nil {
			return d.Err("probe: given twice")
		}
		p.Probe, err = unmarshalProbe(d, ownUpstream)
	default:
		return d.Errf("unrecognized circuit_breaker option %q", d.Val())
	}
	return err
}

// unmarshalProbe parses a probe option and its block, reporting a value that does not fit
// at its own line.
func unmarshalProbe(d *caddyfile.Dispenser, ownUpstream bool) (*Probe, error) {
	pr := new(Probe)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	pr.Path = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	if !strings.HasPrefix(pr.Path, "/") {
		return nil, d.Errf("probe: path %q does not start with /", pr.Path)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "upstreams":
			if ownUpstream {
				return nil, d.Err("probe upstreams: the transport probes the upstream of each breaker; leave them out")
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			for _, a := range args {
				if _, err := probeBase(a); err != nil {
					return nil, d.Errf("probe: %v", err)
				}
			}
			pr.Upstreams = append(pr.Upstreams, args...)
		case "interval":
			pr.Interval, err = cfgarg.Duration(d)
		case "timeout":
			pr.Timeout, err = cfgarg.Duration(d)
		case "status":
			pr.Status, err = statusArgs(d)
		default:
			return nil, d.Errf("unrecognized probe option %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	if !ownUpstream && len(pr.Upstreams) == 0 {
		return nil, d.Err("probe: upstreams are required (the addresses of the health endpoint)")
	}
	return pr, nil
}

// statusArgs parses the arguments of a status list option: codes (100-599) or classes
// (1xx-5xx, or 1-5).
func statusArgs(d *caddyfile.Dispenser) ([]int, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	codes := make([]int, 0, len(args))
	for _, arg := range args {
		code, err := strconv.Atoi(strings.TrimSuffix(strings.ToLower(arg), "xx"))
		if err != nil || !validStatus(code) {
			return nil, d.Errf("%s: %q is not a status code (100-599) or class (1xx-5xx)", opt, arg)
		}
		codes = append(codes, code)
	}
	return codes, nil
}

// check reports a policy whose options do not fit together, at the current token.
func (p *Policy) check(d *caddyfile.Dispenser, ownUpstream bool) error {
	if err := p.validate(ownUpstream); err != nil {
		return d.Errf("circuit_breaker: %v", err)
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Transport)(nil)
)
