package jwtauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// The algorithms a key can be pinned to.
const (
	AlgRS256 = string(jose.RS256)
	AlgES256 = string(jose.ES256)
	AlgEdDSA = string(jose.EdDSA)
	AlgHS256 = string(jose.HS256)
)

// supportedAlgs is the allow-list handed to the JWS parser: anything else, "none" included,
// is refused before a key is looked at.
var supportedAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.HS256}

// minHMACSecret is the shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the
// hash output size).
const minHMACSecret = 32

// maxJWKSBytes bounds a JWKS document read from a file or URL.
const maxJWKSBytes = 1 << 20

// verificationKey is one key pinned to exactly one algorithm: a token whose header names
// another algorithm is never checked against it, which rules out algorithm confusion (an
// RSA public key used as an HMAC secret).
type verificationKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (HS256)
}

// keySet is an immutable set of verification keys. A refresh that changes the keys makes a
// new keySet, which also invalidates the verified-token cache entries of the old one.
type keySet struct {
	keys []verificationKey
	raw  []byte // the JWKS document the set was parsed from, if any
}

// candidates returns the keys a token with this kid and alg may be verified with, and
// whether the set holds the kid at all (pinned to any algorithm).
func (s *keySet) candidates(kid string, alg jose.SignatureAlgorithm) (keys []verificationKey, kidKnown bool) {
	for _, k := range s.keys {
		if kid != "" && k.id != kid {
			continue
		}
		kidKnown = true
		if k.alg == alg {
			keys = append(keys, k)
		}
	}
	return keys, kidKnown
}

// pinKey returns the algorithm a JWK is pinned to and the public key material to verify
// with. A JWK without "alg" is pinned by its type (RSA → RS256, EC P-256 → ES256, Ed25519 →
// EdDSA); a symmetric JWK must say "alg": "HS256", since guessing HMAC is how confusion
// attacks start.
func pinKey(k jose.JSONWebKey) (jose.SignatureAlgorithm, any, error) {
	want := func(alg jose.SignatureAlgorithm) (jose.SignatureAlgorithm, error) {
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			return "", fmt.Errorf("key type %T cannot be used with alg %q", k.Key, k.Algorithm)
		}
		return alg, nil
	}
	var pub any
	switch key := k.Key.(type) {
	case *rsa.PrivateKey:
		pub = &key.PublicKey
	case *ecdsa.PrivateKey:
		pub = &key.PublicKey
	case ed25519.PrivateKey:
		pub = key.Public()
	default:
		pub = key
	}
	switch key := pub.(type) {
	case *rsa.PublicKey:
		alg, err := want(jose.RS256)
		return alg, key, err
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("EC key on curve %s: only P-256 (ES256) is supported", key.Curve.Params().Name)
		}
		alg, err := want(jose.ES256)
		return alg, key, err
	case ed25519.PublicKey:
		alg, err := want(jose.EdDSA)
		return alg, key, err
	case []byte:
		if k.Algorithm != AlgHS256 {
			return "", nil, fmt.Errorf("symmetric key must declare alg HS256, has %q", k.Algorithm)
		}
		if len(key) < minHMACSecret {
			return "", nil, fmt.Errorf("HS256 key is %d bytes, need at least %d", len(key), minHMACSecret)
		}
		return jose.HS256, key, nil
	}
	return "", nil, fmt.Errorf("unsupported key type %T", pub)
}

// parseJWKS parses a JWKS document (RFC 7517). Keys that are not for signatures or of an
// unsupported type are skipped; a document without one usable key is an error.
func parseJWKS(raw []byte) (*keySet, error) {
	var doc jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parsing JWKS: %w", err)
	}
	set := &keySet{raw: raw}
	var skipped []error
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		alg, key, err := pinKey(k)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, k.KeyID, err))
			continue
		}
		set.keys = append(set.keys, verificationKey{id: k.KeyID, alg: alg, key: key})
	}
	if len(set.keys) == 0 {
		return nil, fmt.Errorf("JWKS has no usable signing key: %w", errors.Join(skipped...))
	}
	return set, nil
}

// parsePublicKeyPEM parses a PEM "PUBLIC KEY" (PKIX) block and checks that it fits alg.
func parsePublicKeyPEM(data []byte, alg string) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	got, key, err := pinKey(jose.JSONWebKey{Key: pub, Algorithm: alg})
	if err != nil {
		return nil, err
	}
	if string(got) != alg {
		return nil, fmt.Errorf("public key is for %s, not %s", got, alg)
	}
	return key, nil
}

// keySource yields the keys tokens are verified with.
type keySource interface {
	// current returns the key set in use; never nil.
	current() *keySet
	// refresh is called when a token names a kid the current set lacks; it may reload the
	// keys (rate-limited) and returns the set to retry with.
	refresh(ctx context.Context) *keySet
}

// staticKeys is a key source that never changes.
type staticKeys struct{ set *keySet }

func (s staticKeys) current() *keySet                { return s.set }
func (s staticKeys) refresh(context.Context) *keySet { return s.set }

// reloadingKeys is a key source backed by a JWKS document that can change: a file or a URL.
// It reloads the document when a token names an unknown kid (or when no key could be loaded
// yet), at most once per minInterval however many such tokens arrive, and every maxAge in the
// background (run). Only token-driven reloads count against the rate limit, so a key rotated
// in right after a scheduled load is still picked up by its first token.
type reloadingKeys struct {
	fetch       func(context.Context) ([]byte, error)
	minInterval time.Duration
	onError     func(error)

	set         atomic.Pointer[keySet]
	mu          sync.Mutex // serialises loads; guards lastRefresh
	lastRefresh time.Time  // of the last token-driven reload
	fetches     atomic.Int64
}

func newReloadingKeys(fetch func(context.Context) ([]byte, error), minInterval time.Duration, onError func(error)) *reloadingKeys {
	r := &reloadingKeys{fetch: fetch, minInterval: minInterval, onError: onError}
	r.set.Store(&keySet{})
	return r
}

func (r *reloadingKeys) current() *keySet { return r.set.Load() }

func (r *reloadingKeys) refresh(ctx context.Context) *keySet {
	before := r.set.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.set.Load(); cur != before {
		return cur // another request reloaded while this one waited
	}
	if !r.lastRefresh.IsZero() && time.Since(r.lastRefresh) < r.minInterval {
		return before
	}
	r.lastRefresh = time.Now()
	if err := r.loadLocked(ctx); err != nil {
		r.onError(err)
	}
	return r.set.Load()
}

// load fetches and installs the document now, regardless of the rate limit.
func (r *reloadingKeys) load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked(ctx)
}

func (r *reloadingKeys) loadLocked(ctx context.Context) error {
	r.fetches.Add(1)
	raw, err := r.fetch(ctx)
	if err != nil {
		return err
	}
	if cur := r.set.Load(); bytes.Equal(cur.raw, raw) {
		return nil // unchanged: keep the set, and the cache entries verified with it
	}
	set, err := parseJWKS(raw)
	if err != nil {
		return err
	}
	r.set.Store(set)
	return nil
}

// run reloads the document every maxAge until ctx is done.
func (r *reloadingKeys) run(ctx context.Context, maxAge time.Duration) {
	t := time.NewTicker(maxAge)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.load(ctx); err != nil && ctx.Err() == nil {
				r.onError(err)
			}
		}
	}
}

// httpFetcher returns a fetch function that GETs a JWKS document from url.
func httpFetcher(client *http.Client, url string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching JWKS: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetching JWKS from %s: status %d", url, resp.StatusCode)
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
		if err != nil {
			return nil, fmt.Errorf("reading JWKS from %s: %w", url, err)
		}
		if len(raw) > maxJWKSBytes {
			return nil, fmt.Errorf("JWKS from %s is larger than %d bytes", url, maxJWKSBytes)
		}
		return raw, nil
	}
}

// fileFetcher returns a fetch function that reads a JWKS document from a file.
func fileFetcher(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading JWKS: %w", err)
		}
		defer f.Close()
		raw, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
		if err != nil {
			return nil, fmt.Errorf("reading JWKS %s: %w", path, err)
		}
		if len(raw) > maxJWKSBytes {
			return nil, fmt.Errorf("JWKS %s is larger than %d bytes", path, maxJWKSBytes)
		}
		return raw, nil
	}
}
