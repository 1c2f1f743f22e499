// Package cfgarg parses the one argument of a Caddyfile option (`name <value>`) for the edge
// modules, with errors that name the option and carry the file and line.
package cfgarg

import (
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/muejam/edge/internal/valkeyconn"
)

// one returns the option's name and its single argument.
func one(d *caddyfile.Dispenser) (opt, val string, err error) {
	opt = d.Val()
	if !d.NextArg() {
		return opt, "", d.ArgErr()
	}
	val = d.Val()
	if d.NextArg() {
		return opt, "", d.ArgErr()
	}
	return opt, val, nil
}

// Int parses a whole number of at least lowest.
func Int(d *caddyfile.Dispenser, lowest int) (int, error) {
	opt, val, err := one(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(val)
	if err != nil || n < lowest {
		return 0, d.Errf("%s: %q is not a whole number of at least %d", opt, val, lowest)
	}
	return n, nil
}

// Ratio parses a number in (0, 1] or a percentage in (0%, 100%].
func Ratio(d *caddyfile.Dispenser) (float64, error) {
	opt, val, err := one(d)
	if err != nil {
		return 0, err
	}
	num, scale := val, 1.0
	if s, ok := strings.CutSuffix(val, "%"); ok {
		num, scale = s, 100
	}
	r, err := strconv.ParseFloat(num, 64)
	r /= scale
	if err != nil || !(r > 0 && r <= 1) {
		return 0, d.Errf("%s: %q is not a ratio in (0, 1] or a percentage in (0%%, 100%%]", opt, val)
	}
	return r, nil
}

// Duration parses a positive duration (Caddy's syntax: 250ms, 1h30m, 2d).
func Duration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	return duration(d, 1, "a positive duration")
}

// DurationOrZero parses a duration of 0 or more, for options whose 0 means their default.
func DurationOrZero(d *caddyfile.Dispenser) (caddy.Duration, error) {
	return duration(d, 0, "a duration of 0 or more")
}

// duration parses a duration of at least lowest; what names that range in the error.
func duration(d *caddyfile.Dispenser, lowest time.Duration, what string) (caddy.Duration, error) {
	opt, val, err := one(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(val)
	if err != nil || dur < lowest {
		return 0, d.Errf("%s: %q is not %s", opt, val, what)
	}
	return caddy.Duration(dur), nil
}

// Size parses a positive size in bytes: 1048576, 512KiB, 256MiB, 1GB.
func Size(d *caddyfile.Dispenser) (int64, error) {
	opt, val, err := one(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(val)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, d.Errf("%s: %q is not a positive size (e.g. 64MiB)", opt, val)
	}
	return int64(n), nil
}

// Valkey reads a `valkey` option of an edge module, the dispenser on its name:
//
//	valkey <address...>
//	valkey <address...> {
//		cluster  [on|off]          # require a cluster (default: discovered from the server)
//		username <user>
//		password <password>        # a placeholder: {env.VALKEY_PASSWORD}, {file./run/secrets/valkey}
//		tls      [on|off|<ca_file>] # TLS, verifying with the CA file or the system's roots
//		tls_server_name <name>     # the name in the server's certificate (default: the host)
//	}
//
// An address argument may hold several, comma-separated, as environment variables give
// them: `valkey {$VALKEY_ADDR}` with VALKEY_ADDR=10.0.0.1:6379,10.0.0.2:6379. An empty list
// (`valkey ""`, an unset variable) means no Valkey.
func Valkey(d *caddyfile.Dispenser) (valkeyconn.Config, error) {
	var c valkeyconn.Config
	for d.NextArg() {
		c.Addresses = append(c.Addresses, valkeyconn.SplitAddresses(d.Val())...)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "cluster":
			c.Cluster = true
			if d.NextArg() {
				on, ok := valkeyconn.ParseSwitch(d.Val())
				if !ok {
					return c, d.Errf("cluster: %q is not on or off", d.Val())
				}
				c.Cluster = on
			}
		case "username", "password", "tls_server_name":
			if !d.NextArg() {
				return c, d.ArgErr()
			}
			switch opt {
			case "username":
				c.Username = d.Val()
			case "password":
				c.Password = d.Val()
			default:
				if c.TLS == nil {
					c.TLS = &valkeyconn.TLS{}
				}
				c.TLS.ServerName = d.Val()
			}
		case "tls":
			on, ca := true, ""
			if d.NextArg() {
				if sw, ok := valkeyconn.ParseSwitch(d.Val()); ok && d.Val() != "" {
					on = sw
				} else {
					ca = d.Val()
				}
			}
			switch {
			case !on:
				c.TLS = nil
			case c.TLS == nil:
				c.TLS = &valkeyconn.TLS{CAFile: ca}
			default:
				c.TLS.CAFile = ca
			}
		default:
			return c, d.Errf("valkey: unrecognized option %q", opt)
		}
		if d.NextArg() {
			return c, d.ArgErr()
		}
	}
	if len(c.Addresses) == 0 && (c.Cluster || c.TLS != nil || c.Username != "" || c.Password != "") {
		return c, d.Err("valkey: options given but no address")
	}
	if len(c.Addresses) > 0 {
		if err := c.Validate(); err != nil {
			return c, d.Err(err.Error())
		}
	}
	return c, nil
}

// Placeholders replaces the placeholders Caddy knows outside a request ({env.*}, {file.*})
// in s, leaving unknown ones empty: for secrets given as placeholders, such as a Valkey
// password (valkeyconn.Config.Replace).
func Placeholders(s string) string { return caddy.NewReplacer().ReplaceKnown(s, "") }
