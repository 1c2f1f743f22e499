package piiscrub

import (
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/muejam/edge/internal/pii"
)

// UnmarshalCaddyfile sets up the encoder from Caddyfile tokens. Syntax:
//
//	pii_scrub {
//	    wrap <encoder> [{
//	        <encoder options>
//	    }]
//	    modes {
//	        <kind> redact|mask|pseudonym|off
//	    }
//	    pseudonym_key <key>
//	    params  <name...>
//	    headers <name...>
//	    fields  <name...>
//	}
//
// Write the key as {env.PII_KEY}: it is resolved at provisioning, not in the adapted JSON.
func (e *Encoder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume encoder name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "wrap" {
			if err := e.Options.unmarshalOption(d, "pii_scrub"); err != nil {
				return err
			}
			continue
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		name := d.Val()
		unm, err := caddyfile.UnmarshalModule(d, "caddy.logging.encoders."+name)
		if err != nil {
			return err
		}
		enc, ok := unm.(zapcore.Encoder)
		if !ok {
			return d.Errf("module caddy.logging.encoders.%s (%T) is not a log encoder", name, unm)
		}
		e.WrappedRaw = caddyconfig.JSONModuleObject(enc, "format", name, nil)
	}
	return nil
}

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens. Syntax:
//
//	pii [{
//	    modes {
//	        <kind> redact|mask|pseudonym|off
//	    }
//	    pseudonym_key <key>
//	    params  <name...>
//	    headers <name...>
//	    fields  <name...>
//	}]
func (f *Filter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume filter name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := f.Options.unmarshalOption(d, "pii"); err != nil {
			return err
		}
	}
	return nil
}

// modeNames are the modes a kind can take.
var modeNames = map[string]bool{"redact": true, "mask": true, "pseudonym": true, "off": true}

// kindNames are the kinds of personal data.
var kindNames = func() map[string]bool {
	m := make(map[string]bool)
	for _, k := range pii.Kinds() {
		m[k.String()] = true
	}
	return m
}()

// unmarshalOption parses the option at the dispenser's cursor.
func (o *Options) unmarshalOption(d *caddyfile.Dispenser, module string) error {
	switch opt := d.Val(); opt {
	case "modes":
		if d.NextArg() {
			return d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			kind := d.Val()
			var mode string
			if !d.AllArgs(&mode) {
				return d.ArgErr()
			}
			if !kindNames[kind] {
				return d.Errf("unknown kind %q", kind)
			}
			if !modeNames[mode] {
				return d.Errf("unknown mode %q for %s: want redact, mask, pseudonym or off", mode, kind)
			}
			if _, dup := o.Modes[kind]; dup {
				return d.Errf("mode of %s set twice", kind)
			}
			if o.Modes == nil {
				o.Modes = make(map[string]string)
			}
			o.Modes[kind] = mode
		}
	case "pseudonym_key":
		if !d.AllArgs(&o.PseudonymKey) {
			return d.ArgErr()
		}
	case "params", "headers", "fields":
		names := d.RemainingArgs()
		if len(names) == 0 {
			return d.ArgErr()
		}
		switch opt {
		case "params":
			o.Params = append(o.Params, names...)
		case "headers":
			o.Headers = append(o.Headers, names...)
		default:
			o.Fields = append(o.Fields, names...)
		}
	default:
		return d.Errf("unrecognized %s option %q", module, opt)
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Encoder)(nil)
	_ caddyfile.Unmarshaler = (*Filter)(nil)
)
