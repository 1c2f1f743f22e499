package jwtauth

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/muejam/edge/internal/cfgarg"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("authentication", parseAuthentication)
	httpcaddyfile.RegisterDirectiveOrder("authentication", httpcaddyfile.After, "basic_auth")
}

// parseAuthentication sets up Caddy's authentication handler (http.handlers.authentication)
// from Caddyfile tokens; Caddy itself has no directive for it. Syntax:
//
//	authentication [<matcher>] {
//	    <provider> [...] {
//	        ...
//	    }
//	    ...
//	}
//
// Each <provider> is the name of a module in http.authentication.providers (jwt, http_basic,
// ...) that can be configured from a Caddyfile, followed by its own syntax. The directive is
// ordered right after basic_auth, so it works outside route blocks too.
func parseAuthentication(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next() // consume directive name
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	auth := caddyauth.Authentication{ProvidersRaw: caddy.ModuleMap{}}
	for nesting := h.Nesting(); h.NextBlock(nesting); {
		name := h.Val()
		if _, dup := auth.ProvidersRaw[name]; dup {
			return nil, h.Errf("authentication provider %s configured twice", name)
		}
		unm, err := caddyfile.UnmarshalModule(h.Dispenser, "http.authentication.providers."+name)
		if err != nil {
			return nil, err
		}
		auth.ProvidersRaw[name] = caddyconfig.JSON(unm, nil)
	}
	if len(auth.ProvidersRaw) == 0 {
		return nil, h.Err("authentication needs at least one provider block, e.g. jwt { ... }")
	}
	return auth, nil
}

// UnmarshalCaddyfile sets up the jwt provider from Caddyfile tokens. Syntax:
//
//	jwt {
//	    # key source: exactly one of jwks_file, jwks_url or one or more key blocks
//	    jwks_file <path>
//	    jwks_url  <url>
//	    key <RS256|ES256|EdDSA> [<kid>] {
//	        public_key_file <path>
//	    }
//	    key HS256 [<kid>] {
//	        secret <secret>              # write {env.NAME} or {file./path}
//	    }
//
//	    issuer   <iss>...                # accepted iss values (default: any)
//	    audience <aud>...                # accepted aud values, one must match (default: any)
//	    clock_skew <duration>            # 0..5m (default: 30s)
//	    claim <name> [<claim>]           # {http.auth.user.<name>} from <claim> (default: <name>)
//	    allow_anonymous                  # no Authorization header → through, empty user id
//	    realm <realm>                    # realm of the WWW-Authenticate challenge
//
//	    jwks_refresh_interval     <duration>  # background reload (default: 1h)
//	    jwks_min_refresh_interval <duration>  # least time between unknown-kid reloads (default: 30s)
//	    jwks_timeout              <duration>  # one jwks_url fetch (default: 5s)
//	    cache_size <n>                        # verified tokens remembered (default: 10000)
//	    disable_cache
//	}
//
// The configuration is validated as it is parsed, so `caddy adapt` and `caddy validate`
// report a bad value with its file and line.
func (j *JWT) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume provider name
	file, line := d.File(), d.Line()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "jwks_file":
			if !d.AllArgs(&j.JWKSFile) {
				return d.ArgErr()
			}
		case "jwks_url":
			if !d.AllArgs(&j.JWKSURL) {
				return d.ArgErr()
			}
		case "key":
			var k StaticKey
			if k, err = unmarshalKey(d); err == nil {
				j.Keys = append(j.Keys, k)
			}
		case "issuer":
			err = moreArgs(d, &j.Issuers)
		case "audience":
			err = moreArgs(d, &j.Audiences)
		case "clock_skew":
			j.ClockSkew, err = cfgarg.DurationOrZero(d)
		case "jwks_refresh_interval":
			j.JWKSRefreshInterval, err = cfgarg.DurationOrZero(d)
		case "jwks_min_refresh_interval":
			j.JWKSMinRefreshInterval, err = cfgarg.DurationOrZero(d)
		case "jwks_timeout":
			j.JWKSTimeout, err = cfgarg.DurationOrZero(d)
		case "claim":
			err = j.unmarshalClaim(d)
		case "allow_anonymous":
			if d.NextArg() {
				return d.ArgErr()
			}
			j.AllowAnonymous = true
		case "realm":
			if !d.AllArgs(&j.Realm) {
				return d.ArgErr()
			}
		case "cache_size":
			j.CacheSize, err = cfgarg.Int(d, 0)
		case "disable_cache":
			if d.NextArg() {
				return d.ArgErr()
			}
			j.DisableCache = true
		default:
			return d.Errf("unrecognized jwt option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if err := j.Validate(); err != nil {
		return fmt.Errorf("jwt: %w, at %s:%d", err, file, line)
	}
	return nil
}

// moreArgs appends the option's arguments, at least one, to list.
func moreArgs(d *caddyfile.Dispenser, list *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*list = append(*list, args...)
	return nil
}

// unmarshalClaim parses `claim <name> [<claim>]`.
func (j *JWT) unmarshalClaim(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	if _, dup := j.Claims[args[0]]; dup {
		return d.Errf("claim placeholder %s configured twice", args[0])
	}
	if j.Claims == nil {
		j.Claims = map[string]string{}
	}
	j.Claims[args[0]] = args[len(args)-1]
	return nil
}

// unmarshalKey parses `key <alg> [<kid>] { public_key_file <path> | secret <secret> }`.
func unmarshalKey(d *caddyfile.Dispenser) (StaticKey, error) {
	var k StaticKey
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return k, d.ArgErr()
	}
	k.Algorithm = args[0]
	if len(args) == 2 {
		k.ID = args[1]
	}
	switch k.Algorithm {
	case AlgRS256, AlgES256, AlgEdDSA, AlgHS256:
	default:
		return k, d.Errf("unknown key algorithm %q (want RS256, ES256, EdDSA or HS256)", k.Algorithm)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "public_key_file":
			if !d.AllArgs(&k.PublicKeyFile) {
				return k, d.ArgErr()
			}
		case "secret":
			if !d.AllArgs(&k.Secret) {
				return k, d.ArgErr()
			}
		default:
			return k, d.Errf("unrecognized key option %q", opt)
		}
	}
	return k, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*JWT)(nil)
