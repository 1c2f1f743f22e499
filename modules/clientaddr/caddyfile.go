package clientaddr

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("client_address", parseCaddyfile)
	// First of all (after tracing): the maps, variables, limits and logs that follow see
	// the viewer's address.
	httpcaddyfile.RegisterDirectiveOrder("client_address", httpcaddyfile.Before, "map")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Handler)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	client_address {
//		secret        <value>...   # required; a placeholder: {env.CDN_ORIGIN_SECRET}
//		secret_header <field>      # default X-Origin-Verify
//		viewer_header <field>      # default CloudFront-Viewer-Address
//		require                    # refuse (403) requests without the secret...
//		exempt {                   # ...but those matching (repeatable), e.g. health checks
//			<matchers>
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "secret":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Secrets = append(h.Secrets, args...)
		case "secret_header", "viewer_header":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if opt == "secret_header" {
				h.SecretHeader = d.Val()
			} else {
				h.ViewerHeader = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "require":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Require = true
		case "exempt":
			if d.NextArg() {
				return d.ArgErr()
			}
			set, err := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
			if err != nil {
				return err
			}
			h.ExemptRaw = append(h.ExemptRaw, set)
		default:
			return d.Errf("client_address: unrecognized option %q", opt)
		}
	}
	if len(h.Secrets) == 0 {
		return d.Err("client_address: a secret is required")
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
