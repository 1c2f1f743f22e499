package readyourwrites

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/muejam/edge/internal/cfgarg"
)

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	read_your_writes [<key>...] {
//		key     <key>...    # more keys (a rotation's previous key)
//		ttl     <duration>  # default 30s, the app server's READ_YOUR_WRITES_TTL
//		dev_key             # no key set: the public development key (dev Caddyfiles only)
//	}
//
// Give the keys as placeholders ({env.READ_YOUR_WRITES_KEY}), never as {$VAR}, which would
// write them into the adapted config. A key is required unless dev_key is given.
func (m *Match) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() { // the matcher's name; once per occurrence in the matcher set
		m.Keys = append(m.Keys, d.RemainingArgs()...)
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch opt := d.Val(); opt {
			case "key":
				args := d.RemainingArgs()
				if len(args) == 0 {
					return d.ArgErr()
				}
				m.Keys = append(m.Keys, args...)
			case "ttl":
				ttl, err := cfgarg.Duration(d)
				if err != nil {
					return err
				}
				m.TTL = ttl
			case "dev_key":
				if d.NextArg() {
					return d.ArgErr()
				}
				m.DevKey = true
			default:
				return d.Errf("read_your_writes: unrecognized option %q", opt)
			}
		}
	}
	if len(m.Keys) == 0 && !m.DevKey {
		return d.Err("read_your_writes: a key is required (or dev_key)")
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Match)(nil)
