// Package testjwt mints the JWTs that tests and the bench harness present to the edge's jwt
// authentication provider (modules/jwtauth): HS256 tokens signed with a shared secret, and
// EdDSA tokens of an identity provider whose JWKS the edge is given. It is not a _test.go
// helper so that scripts/bench, a command, can use it too.
package testjwt

import (
	"crypto/ed25519"
	"encoding/json"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Claims are the registered claims of a token, times in Unix seconds; empty ones are left
// out of the token.
type Claims struct {
	Subject   string `json:"sub,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	Audience  string `json:"aud,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	NotBefore int64  `json:"nbf,omitempty"`
	Expiry    int64  `json:"exp,omitempty"`
}

// Valid returns the claims of a token for subject sub from issuer iss ("" for none) to
// audience aud, issued and valid at now, expiring ttl later (a negative ttl: already expired).
func Valid(sub, iss, aud string, now time.Time, ttl time.Duration) Claims {
	return Claims{Subject: sub, Issuer: iss, Audience: aud, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(ttl).Unix()}
}

// HS256 returns the token of c signed with HMAC-SHA256 under secret, which must be at least
// 32 bytes long (RFC 7518, 3.2).
func HS256(secret string, c Claims) string {
	return sign(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}, &jose.SignerOptions{}, c)
}

// EdDSAKey is an Ed25519 signing key of an identity provider, named by its kid.
type EdDSAKey struct {
	kid  string
	priv ed25519.PrivateKey
}

// NewEdDSAKey returns a fresh random key with the given kid.
func NewEdDSAKey(kid string) *EdDSAKey {
	_, priv, _ := ed25519.GenerateKey(nil) // crypto/rand, which never fails
	return &EdDSAKey{kid: kid, priv: priv}
}

// JWKS returns the JSON Web Key Set that holds the key's public half, as the identity
// provider serves it and the edge's jwks_url or jwks_file reads it.
func (k *EdDSAKey) JWKS() []byte {
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: k.priv.Public(), KeyID: k.kid, Use: "sig", Algorithm: string(jose.EdDSA),
	}}})
	if err != nil {
		panic("testjwt: " + err.Error()) // an Ed25519 public key always marshals
	}
	return jwks
}

// Sign returns the token of c signed with the key, its kid in the header.
func (k *EdDSAKey) Sign(c Claims) string {
	return sign(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.priv}, (&jose.SignerOptions{}).WithHeader("kid", k.kid), c)
}

// sign returns the compact JWT of c (header "typ": "JWT") signed with key. A key that
// cannot sign (an HS256 secret under 32 bytes) is the calling test's bug: sign panics.
func sign(key jose.SigningKey, opts *jose.SignerOptions, c Claims) string {
	signer, err := jose.NewSigner(key, opts.WithType("JWT"))
	if err == nil {
		var tok string
		if tok, err = jwt.Signed(signer).Claims(c).Serialize(); err == nil {
			return tok
		}
	}
	panic("testjwt: " + err.Error())
}
