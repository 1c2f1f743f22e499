// Package jwtauth provides http.authentication.providers.jwt, the identity provider of
// MueJam Edge: it verifies bearer JWTs for Caddy's authentication handler and registers the
// `authentication` Caddyfile directive that configures that handler with providers.
package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(JWT{})
}

// Defaults and bounds of the configuration.
const (
	DefaultClockSkew      = 30 * time.Second
	MaxClockSkew          = 5 * time.Minute
	DefaultJWKSRefresh    = time.Hour
	DefaultJWKSMinRefresh = 30 * time.Second
	DefaultJWKSTimeout    = 5 * time.Second
	DefaultCacheSize      = 10000
	minJWKSMinRefresh     = time.Second
)

// JWT is http.authentication.providers.jwt: it authenticates requests that carry a JSON
// Web Token as a bearer token (RFC 6750, `Authorization: Bearer <token>`) for Caddy's
// `authentication` handler.
//
// A token is accepted when its signature verifies with a configured key pinned to the
// token's algorithm (RS256, ES256, EdDSA or HS256; `none` and every other algorithm are
// refused, and a key is never used with an algorithm other than its own), it has an `exp`
// that has not passed, its `nbf` (if any) has come, both give or take ClockSkew, its `iss`
// is one of Issuers and its `aud` names one of Audiences (when those are set), and it has a
// `sub`.
//
// Keys come from exactly one source: a JWKS file, a JWKS URL, or static keys. A JWKS (file
// or URL) is reloaded every JWKSRefreshInterval and, when a token names a `kid` the loaded
// set lacks, at once, but at most once per JWKSMinRefreshInterval.
//
// On success the authentication handler sets these placeholders:
//
//	{http.auth.user.id}      the token's sub
//	{http.auth.user.<name>}  each claim listed in Claims, under its placeholder name
//
// With AllowAnonymous, a request without an Authorization header is let through with an
// empty {http.auth.user.id}; a request with a bad token is refused either way.
//
// A refused request gets 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3: no error code
// when no token was sent, `error="invalid_token"` with an `error_description` when the
// token is bad, `error="invalid_request"` when the Authorization header is not a bearer
// token), `Cache-Control: no-store` and an RFC 9457 problem body
// (`application/problem+json`). The provider writes that response itself, because Caddy's
// authentication handler only returns an error; do not also answer 401 in `handle_errors`
// on routes that use this provider.
type JWT struct {
	// JWKSFile is the path of a JWKS document (RFC 7517) with the verification keys. It
	// is read at load, on an unknown kid and every JWKSRefreshInterval. A file that cannot
	// be read at load is logged, not fatal: tokens are refused until it can be (the first
	// token retries at once), so the edge starts before `make token` creates the dev keys.
	JWKSFile string `json:"jwks_file,omitempty"`

	// JWKSURL is an https (or, for development, http) URL of a JWKS document. It is
	// fetched at load (a failure is logged, not fatal, and retried on the first token), on
	// an unknown kid and every JWKSRefreshInterval.
	JWKSURL string `json:"jwks_url,omitempty"`

	// Keys are static verification keys, each pinned to one algorithm.
	Keys []StaticKey `json:"keys,omitempty"`

	// Issuers lists the accepted values of the iss claim. Default: any issuer.
	Issuers []string `json:"issuers,omitempty"`

	// Audiences lists accepted values of the aud claim; a token must name at least one.
	// Default: any audience.
	Audiences []string `json:"audiences,omitempty"`

	// ClockSkew is how far exp and nbf may be off the edge's clock. At most 5m.
	// Default: 30s.
	ClockSkew caddy.Duration `json:"clock_skew,omitempty"`

	// Claims exposes token claims as placeholders: each key is a placeholder name
	// (lowercase letters, digits and underscores, not "id"), set as
	// {http.auth.user.<name>}, and its value the claim to read. String claims are
	// exposed as their text, other claims as compact JSON; a missing claim sets nothing.
	// Default: none.
	Claims map[string]string `json:"claims,omitempty"`

	// AllowAnonymous lets requests without an Authorization header through with an empty
	// user id, for public routes. A request with an invalid token is still refused.
	// Default: false (a token is required).
	AllowAnonymous bool `json:"allow_anonymous,omitempty"`

	// Realm is the realm parameter of the WWW-Authenticate challenge. Default: none.
	Realm string `json:"realm,omitempty"`

	// JWKSRefreshInterval is how often a JWKS file or URL is reloaded in the background.
	// Default: 1h.
	JWKSRefreshInterval caddy.Duration `json:"jwks_refresh_interval,omitempty"`

	// JWKSMinRefreshInterval is the least time between two reloads caused by tokens with
	// an unknown kid, so that a flood of such tokens costs one fetch per interval.
	// At least 1s. Default: 30s.
	JWKSMinRefreshInterval caddy.Duration `json:"jwks_min_refresh_interval,omitempty"`

	// JWKSTimeout bounds one fetch of JWKSURL. Default: 5s.
	JWKSTimeout caddy.Duration `json:"jwks_timeout,omitempty"`

	// CacheSize is how many verified tokens are remembered, so that a token sent again
	// skips the signature check until it expires or the keys change. Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// DisableCache turns the verified-token cache off. Default: false.
	DisableCache bool `json:"disable_cache,omitempty"`

	verifier *verifier
	logger   *zap.Logger
	cancel   context.CancelFunc
}

// StaticKey is one verification key given in the configuration.
type StaticKey struct {
	// ID is the key id; a token whose header names a kid is only checked against the key
	// with that ID. Default: none (the key is tried for tokens of its algorithm).
	ID string `json:"kid,omitempty"`

	// Algorithm pins the key to one of RS256, ES256, EdDSA or HS256. Required.
	Algorithm string `json:"alg"`

	// PublicKeyFile is the path of a PEM "PUBLIC KEY" (PKIX) file, for RS256 (RSA), ES256
	// (EC P-256) or EdDSA (Ed25519).
	PublicKeyFile string `json:"public_key_file,omitempty"`

	// Secret is the HS256 secret, at least 32 bytes. Write it as a placeholder
	// ({env.JWT_SECRET} or {file./path}): it is resolved at load and so never appears in
	// the adapted JSON.
	Secret string `json:"secret,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (JWT) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.jwt",
		New: func() caddy.Module { return new(JWT) },
	}
}

// Provision fills in defaults and loads the keys.
func (j *JWT) Provision(ctx caddy.Context) error {
	j.logger = ctx.Logger()
	if j.ClockSkew == 0 {
		j.ClockSkew = caddy.Duration(DefaultClockSkew)
	}
	if j.JWKSRefreshInterval == 0 {
		j.JWKSRefreshInterval = caddy.Duration(DefaultJWKSRefresh)
	}
	if j.JWKSMinRefreshInterval == 0 {
		j.JWKSMinRefreshInterval = caddy.Duration(DefaultJWKSMinRefresh)
	}
	if j.JWKSTimeout == 0 {
		j.JWKSTimeout = caddy.Duration(DefaultJWKSTimeout)
	}
	if j.CacheSize == 0 {
		j.CacheSize = DefaultCacheSize
	}
	keys, err := j.provisionKeys(ctx)
	if err != nil {
		return err
	}
	j.verifier = &verifier{
		keys:      keys,
		issuers:   j.Issuers,
		audiences: j.Audiences,
		skew:      time.Duration(j.ClockSkew),
		claims:    j.Claims,
	}
	if !j.DisableCache && j.CacheSize > 0 {
		j.verifier.cache = newTokenCache(j.CacheSize)
	}
	return nil
}

// provisionKeys builds the key source; a JWKS source also starts its background reload,
// which stops when ctx is done or at Cleanup.
func (j *JWT) provisionKeys(ctx caddy.Context) (keySource, error) {
	var fetch func(context.Context) ([]byte, error)
	switch {
	case len(j.Keys) > 0:
		set := &keySet{}
		repl := caddy.NewReplacer()
		for i, k := range j.Keys {
			vk := verificationKey{id: k.ID, alg: jose.SignatureAlgorithm(k.Algorithm)}
			switch k.Algorithm {
			case AlgHS256:
				secret := repl.ReplaceAll(k.Secret, "")
				if len(secret) < minHMACSecret {
					return nil, fmt.Errorf("key %d: HS256 secret is %d bytes, need at least %d", i, len(secret), minHMACSecret)
				}
				vk.key = []byte(secret)
			case AlgRS256, AlgES256, AlgEdDSA:
				data, err := os.ReadFile(k.PublicKeyFile)
				if err != nil {
					return nil, fmt.Errorf("key %d: %w", i, err)
				}
				if vk.key, err = parsePublicKeyPEM(data, k.Algorithm); err != nil {
					return nil, fmt.Errorf("key %d: %s: %w", i, k.PublicKeyFile, err)
				}
			default:
				return nil, fmt.Errorf("key %d: unknown algorithm %q", i, k.Algorithm)
			}
			set.keys = append(set.keys, vk)
		}
		return staticKeys{set: set}, nil
	case j.JWKSFile != "":
		fetch = fileFetcher(j.JWKSFile)
	case j.JWKSURL != "":
		fetch = httpFetcher(&http.Client{Timeout: time.Duration(j.JWKSTimeout)}, j.JWKSURL)
	default:
		return nil, errors.New("no key source: set jwks_file, jwks_url or keys")
	}
	src := newReloadingKeys(fetch, time.Duration(j.JWKSMinRefreshInterval), func(err error) {
		j.logger.Warn("reloading JWKS", zap.Error(err))
	})
	if err := src.load(ctx); err != nil {
		// Fail closed but stay up: until the keys load, every token is refused.
		j.logger.Warn("JWKS not loaded yet; retrying on the first token", zap.Error(err))
	}
	bg, cancel := context.WithCancel(ctx)
	j.cancel = cancel
	go src.run(bg, time.Duration(j.JWKSRefreshInterval))
	return src, nil
}

var placeholderName = regexp.MustCompile(`^[a-z0-9_]+$`)

// Validate rejects configurations that cannot work.
func (j *JWT) Validate() error {
	sources := 0
	for _, set := range []bool{j.JWKSFile != "", j.JWKSURL != "", len(j.Keys) > 0} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		return errors.New("no key source: set jwks_file, jwks_url or keys")
	case sources > 1:
		return errors.New("more than one key source: set only one of jwks_file, jwks_url, keys")
	}
	if j.JWKSURL != "" && !strings.HasPrefix(j.JWKSURL, "https://") && !strings.HasPrefix(j.JWKSURL, "http://") {
		return fmt.Errorf("jwks_url %q is not an http(s) URL", j.JWKSURL)
	}
	for i, k := range j.Keys {
		switch k.Algorithm {
		case AlgHS256:
			if k.Secret == "" || k.PublicKeyFile != "" {
				return fmt.Errorf("key %d: HS256 needs a secret and no public_key_file", i)
			}
		case AlgRS256, AlgES256, AlgEdDSA:
			if k.PublicKeyFile == "" || k.Secret != "" {
				return fmt.Errorf("key %d: %s needs a public_key_file and no secret", i, k.Algorithm)
			}
		default:
			return fmt.Errorf("key %d: unknown algorithm %q (want RS256, ES256, EdDSA or HS256)", i, k.Algorithm)
		}
	}
	if j.ClockSkew < 0 || time.Duration(j.ClockSkew) > MaxClockSkew {
		return fmt.Errorf("clock_skew %s is outside 0..%s", time.Duration(j.ClockSkew), MaxClockSkew)
	}
	for name, d := range map[string]caddy.Duration{
		"jwks_refresh_interval": j.JWKSRefreshInterval,
		"jwks_timeout":          j.JWKSTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if j.JWKSMinRefreshInterval != 0 && time.Duration(j.JWKSMinRefreshInterval) < minJWKSMinRefresh {
		return fmt.Errorf("jwks_min_refresh_interval must be at least %s", minJWKSMinRefresh)
	}
	if strings.ContainsAny(j.Realm, "\"\\") {
		return errors.New("realm must not contain double quotes or backslashes")
	}
	if j.CacheSize < 0 {
		return errors.New("cache_size must not be negative")
	}
	for name, claim := range j.Claims {
		if !placeholderName.MatchString(name) || name == "id" {
			return fmt.Errorf("claim placeholder name %q must be lowercase letters, digits and underscores, and not id", name)
		}
		if claim == "" {
			return fmt.Errorf("claim placeholder %q names no claim", name)
		}
	}
	return nil
}

// Cleanup stops the background JWKS reload.
func (j *JWT) Cleanup() error {
	if j.cancel != nil {
		j.cancel()
	}
	return nil
}

// Authenticate verifies the request's bearer token. A refused request gets its 401
// challenge and problem body here; see the type's doc comment.
func (j *JWT) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		if j.AllowAnonymous {
			return caddyauth.User{}, true, nil
		}
		j.refuse(w, "", "missing bearer token")
		return caddyauth.User{}, false, nil
	}
	scheme, token, ok := strings.Cut(authz, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		j.refuse(w, "invalid_request", "authorization is not a bearer token")
		return caddyauth.User{}, false, nil
	}
	p, err := j.verifier.verify(r.Context(), token, time.Now())
	if err != nil {
		if c := j.logger.Check(zapcore.DebugLevel, "bearer token refused"); c != nil {
			c.Write(zap.Error(err))
		}
		j.refuse(w, "invalid_token", describe(err))
		return caddyauth.User{}, false, nil
	}
	return caddyauth.User{ID: p.id, Metadata: p.metadata}, true, nil
}

// problem is an RFC 9457 problem body, with the RFC 6750 error code as an extension.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Error  string `json:"error,omitempty"`
}

// refuse writes the 401 challenge. code is the RFC 6750 error code, empty when the request
// carried no credentials; desc never contains a double quote.
func (j *JWT) refuse(w http.ResponseWriter, code, desc string) {
	var params []string
	if j.Realm != "" {
		params = append(params, `realm="`+j.Realm+`"`)
	}
	if code != "" {
		params = append(params, `error="`+code+`"`, `error_description="`+desc+`"`)
	}
	challenge := "Bearer"
	if len(params) > 0 {
		challenge += " " + strings.Join(params, ", ")
	}
	body, _ := json.Marshal(problem{
		Type:   "unauthorized",
		Title:  "Unauthorized",
		Status: http.StatusUnauthorized,
		Detail: desc,
		Error:  code,
	})
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(body)
}

// Interface guards
var (
	_ caddy.Provisioner       = (*JWT)(nil)
	_ caddy.Validator         = (*JWT)(nil)
	_ caddy.CleanerUpper      = (*JWT)(nil)
	_ caddyauth.Authenticator = (*JWT)(nil)
)
