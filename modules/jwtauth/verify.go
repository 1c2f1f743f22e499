package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Why a token was refused. Their texts are what clients read in error_description and in
// the problem body, so they carry nothing taken from the token itself.
var (
	errMalformed   = errors.New("malformed token or algorithm not accepted")
	errAlgorithm   = errors.New("token algorithm does not match its key")
	errUnknownKey  = errors.New("unknown signing key")
	errSignature   = errors.New("invalid token signature")
	errClaims      = errors.New("malformed token claims")
	errNoExpiry    = errors.New("token has no expiry")
	errExpired     = errors.New("token expired")
	errNotYetValid = errors.New("token not yet valid")
	errIssuer      = errors.New("token issuer not accepted")
	errAudience    = errors.New("token audience not accepted")
	errNoSubject   = errors.New("token has no subject")

	tokenErrorKinds = []error{errMalformed, errAlgorithm, errUnknownKey, errSignature, errClaims,
		errNoExpiry, errExpired, errNotYetValid, errIssuer, errAudience, errNoSubject}
)

// describe returns the client-facing description of a verification error.
func describe(err error) string {
	for _, kind := range tokenErrorKinds {
		if errors.Is(err, kind) {
			return kind.Error()
		}
	}
	return "invalid token"
}

// principal is who a verified token speaks for.
type principal struct {
	id       string            // the sub claim
	metadata map[string]string // exposed claims, by placeholder name; read-only once built
}

// verifier checks bearer tokens: signature against a key pinned to the token's algorithm,
// then exp (required), nbf, iss and aud with a bounded clock skew.
type verifier struct {
	keys      keySource
	issuers   []string          // accepted iss values; empty accepts any
	audiences []string          // accepted aud values, any one suffices; empty accepts any
	skew      time.Duration     // allowed clock difference for exp and nbf
	claims    map[string]string // placeholder name → claim name
	cache     *tokenCache       // nil when disabled
}

// verify checks raw at time now and returns its principal, or an error wrapping one of the
// err* kinds above.
func (v *verifier) verify(ctx context.Context, raw string, now time.Time) (principal, error) {
	set := v.keys.current()
	if v.cache != nil {
		if p, ok := v.cache.get(raw, set, now); ok {
			return p, nil
		}
	}
	obj, err := jose.ParseSignedCompact(raw, supportedAlgs)
	if err != nil {
		return principal{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if len(obj.Signatures) != 1 {
		return principal{}, errMalformed
	}
	hdr := obj.Signatures[0].Header
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	keys, kidKnown := set.candidates(hdr.KeyID, alg)
	if !kidKnown { // a kid the set lacks, or an empty set: the keys may have changed
		set = v.keys.refresh(ctx)
		keys, kidKnown = set.candidates(hdr.KeyID, alg)
	}
	switch {
	case !kidKnown:
		return principal{}, errUnknownKey
	case len(keys) == 0:
		return principal{}, errAlgorithm
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = obj.Verify(k.key); err == nil {
			break
		}
	}
	if err != nil {
		return principal{}, fmt.Errorf("%w: %v", errSignature, err)
	}
	p, expiry, err := v.checkClaims(payload, now)
	if err != nil {
		return principal{}, err
	}
	if v.cache != nil {
		v.cache.put(raw, p, set, expiry)
	}
	return p, nil
}

// checkClaims validates the registered claims of a verified payload and builds the
// principal; expiry is the last instant the token is accepted (exp plus skew).
func (v *verifier) checkClaims(payload []byte, now time.Time) (p principal, expiry time.Time, err error) {
	var c jwt.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return p, expiry, fmt.Errorf("%w: %v", errClaims, err)
	}
	if c.Expiry == nil {
		return p, expiry, errNoExpiry
	}
	expiry = c.Expiry.Time().Add(v.skew)
	if now.After(expiry) {
		return p, expiry, errExpired
	}
	if c.NotBefore != nil && now.Add(v.skew).Before(c.NotBefore.Time()) {
		return p, expiry, errNotYetValid
	}
	if len(v.issuers) > 0 && !slices.Contains(v.issuers, c.Issuer) {
		return p, expiry, errIssuer
	}
	if len(v.audiences) > 0 && !slices.ContainsFunc(v.audiences, c.Audience.Contains) {
		return p, expiry, errAudience
	}
	if c.Subject == "" {
		return p, expiry, errNoSubject
	}
	p.id = c.Subject
	if len(v.claims) > 0 {
		var all map[string]json.RawMessage
		if err := json.Unmarshal(payload, &all); err != nil {
			return p, expiry, fmt.Errorf("%w: %v", errClaims, err)
		}
		p.metadata = make(map[string]string, len(v.claims))
		for name, claim := range v.claims {
			if val, ok := all[claim]; ok {
				p.metadata[name] = claimString(val)
			}
		}
	}
	return p, expiry, nil
}

// claimString renders a claim for a placeholder: a JSON string as its text, anything else
// (number, boolean, array, object) as compact JSON.
func claimString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// tokenCache remembers tokens that verified, so a client that sends the same token again
// skips the signature check. An entry is used only until the token's exp (plus skew) and
// only while the key set it was verified with is still current. Size is bounded: when full,
// an arbitrary entry is evicted.
type tokenCache struct {
	max     int
	mu      sync.RWMutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	p      principal
	keys   *keySet
	expiry time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[string]cacheEntry)}
}

func (c *tokenCache) get(raw string, keys *keySet, now time.Time) (principal, bool) {
	c.mu.RLock()
	e, ok := c.entries[raw]
	c.mu.RUnlock()
	if !ok || e.keys != keys || now.After(e.expiry) {
		return principal{}, false
	}
	return e.p, true
}

func (c *tokenCache) put(raw string, p principal, keys *keySet, expiry time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[raw]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[raw] = cacheEntry{p: p, keys: keys, expiry: expiry}
}
