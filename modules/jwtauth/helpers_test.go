package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testKey is a signing key of one algorithm with its public half.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any // what go-jose signs with
	pub  any // what the verifier checks with
}

var (
	rsaOnce sync.Once
	rsaKeys [2]*rsa.PrivateKey
)

// rsaKey returns one of two RSA keys generated once per test binary (generation is slow
// under -race).
func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for n := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[n] = k
		}
	})
	return rsaKeys[i]
}

// newTestKey makes a key for alg; variant picks one of two distinct keys per algorithm.
func newTestKey(t testing.TB, alg jose.SignatureAlgorithm, kid string, variant int) testKey {
	t.Helper()
	k := testKey{kid: kid, alg: alg}
	switch alg {
	case jose.RS256:
		priv := rsaKey(t, variant)
		k.priv, k.pub = priv, &priv.PublicKey
	case jose.ES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.priv, k.pub = priv, &priv.PublicKey
	case jose.EdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.priv, k.pub = priv, pub
	case jose.HS256:
		// A printable secret, as one set in an environment variable is (random bytes may hold
		// a NUL, which no environment can carry).
		raw := make([]byte, 32)
		rand.Read(raw)
		secret := []byte(hex.EncodeToString(raw))
		k.priv, k.pub = secret, secret
	default:
		t.Fatalf("no test key for %s", alg)
	}
	return k
}

func (k testKey) verificationKey() verificationKey {
	return verificationKey{id: k.kid, alg: k.alg, key: k.pub}
}

// jwk is the public JWK of k, as an identity provider would publish it.
func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// jwks renders a JWKS document of keys.
func jwks(t testing.TB, keys ...testKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sign makes a compact JWS of claims with k, naming k.kid in the header when set.
func sign(t testing.TB, k testKey, claims map[string]any) string {
	t.Helper()
	return signWith(t, k.alg, k.priv, k.kid, claims)
}

func signWith(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// testNow is the instant the fixed-time tests run at.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// claimsAt returns valid claims for user at now, issued by "https://id.test" for
// "muejam-edge", valid for an hour; extra entries are added or, when nil, removed.
func claimsAt(now time.Time, user string, extra map[string]any) map[string]any {
	c := map[string]any{
		"sub": user,
		"iss": "https://id.test",
		"aud": "muejam-edge",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// writePublicKeyPEM writes k's public key as a PEM PUBLIC KEY file and returns its path.
func writePublicKeyPEM(t testing.TB, k testKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), string(k.alg)+".pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
