package viewerfilter

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/cfgarg"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("viewer_filter", parseCaddyfile)
	// After request_header (which runs after authentication and sets the identity field):
	// the verified user is known, and the field replaces whatever the client sent.
	httpcaddyfile.RegisterDirectiveOrder("viewer_filter", httpcaddyfile.After, "request_header")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	v := new(Handler)
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	viewer_filter {
//		valkey <host:port...> {   # required: the Valkey the app server keeps the set in
//			cluster [on|off]
//			password <secret>
//			tls [on|off|<ca file>]
//		}
//		header <field>            # default X-Viewer-Filter
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "valkey":
			cfg, err := cfgarg.Valkey(d)
			if err != nil {
				return err
			}
			h.Valkey = &cfg
		case "header":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Header = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("viewer_filter: unrecognized option %q", opt)
		}
	}
	if !h.Valkey.Configured() {
		return d.Err("viewer_filter: a valkey address is required")
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
