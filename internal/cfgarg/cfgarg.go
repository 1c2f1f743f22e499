// Package cfgarg parses the one argument of a Caddyfile option (`name <value>`) for the edge
// modules, with errors that name the option and carry the file and line.
package cfgarg

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
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
	opt, val, err := one(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(val)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: %q is not a positive duration", opt, val)
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
