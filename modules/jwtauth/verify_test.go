package jwtauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var allAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.HS256}

func staticVerifier(keys ...testKey) *verifier {
	set := &keySet{}
	for _, k := range keys {
		set.keys = append(set.keys, k.verificationKey())
	}
	return &verifier{keys: staticKeys{set: set}, skew: 30 * time.Second}
}

func TestVerifyEveryAlgorithm(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(string(alg), func(t *testing.T) {
			key := newTestKey(t, alg, "k1", 0)
			other := newTestKey(t, alg, "k1", 1) // same kid and alg, different key
			v := staticVerifier(key)

			p, err := v.verify(context.Background(), sign(t, key, claimsAt(testNow, "alice", nil)), testNow)
			if err != nil || p.id != "alice" {
				t.Fatalf("valid %s token: principal %+v, err %v", alg, p, err)
			}
			_, err = v.verify(context.Background(), sign(t, other, claimsAt(testNow, "mallory", nil)), testNow)
			if !errors.Is(err, errSignature) {
				t.Errorf("%s token signed by another key: err %v, want %v", alg, err, errSignature)
			}
			// Without a kid the key is found by algorithm.
			noKid := key
			noKid.kid = ""
			if p, err := v.verify(context.Background(), sign(t, noKid, claimsAt(testNow, "bob", nil)), testNow); err != nil || p.id != "bob" {
				t.Errorf("%s token without kid: principal %+v, err %v", alg, p, err)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	key := newTestKey(t, jose.ES256, "k1", 0)
	now := testNow
	cases := []struct {
		name   string
		extra  map[string]any
		skew   time.Duration
		issuer []string
		aud    []string
		want   error
	}{
		{name: "valid", want: nil},
		{name: "expired beyond skew", extra: map[string]any{"exp": now.Add(-31 * time.Second).Unix()}, skew: 30 * time.Second, want: errExpired},
		{name: "expired within skew", extra: map[string]any{"exp": now.Add(-29 * time.Second).Unix()}, skew: 30 * time.Second, want: nil},
		{name: "expired, no skew", extra: map[string]any{"exp": now.Add(-time.Second).Unix()}, skew: 0, want: errExpired},
		{name: "fractional exp", extra: map[string]any{"exp": float64(now.Unix()) + 0.5}, want: nil},
		{name: "no exp", extra: map[string]any{"exp": nil}, want: errNoExpiry},
		{name: "nbf ahead beyond skew", extra: map[string]any{"nbf": now.Add(31 * time.Second).Unix()}, skew: 30 * time.Second, want: errNotYetValid},
		{name: "nbf ahead within skew", extra: map[string]any{"nbf": now.Add(29 * time.Second).Unix()}, skew: 30 * time.Second, want: nil},
		{name: "nbf passed", extra: map[string]any{"nbf": now.Add(-time.Minute).Unix()}, want: nil},
		{name: "issuer accepted", issuer: []string{"https://other", "https://id.test"}, want: nil},
		{name: "issuer refused", issuer: []string{"https://other"}, want: errIssuer},
		{name: "no issuer when one is required", extra: map[string]any{"iss": nil}, issuer: []string{"https://id.test"}, want: errIssuer},
		{name: "audience accepted", aud: []string{"muejam-edge"}, want: nil},
		{name: "audience among several", extra: map[string]any{"aud": []string{"x", "muejam-edge"}}, aud: []string{"muejam-edge"}, want: nil},
		{name: "audience refused", extra: map[string]any{"aud": []string{"x", "y"}}, aud: []string{"muejam-edge"}, want: errAudience},
		{name: "no audience when one is required", extra: map[string]any{"aud": nil}, aud: []string{"muejam-edge"}, want: errAudience},
		{name: "no subject", extra: map[string]any{"sub": nil}, want: errNoSubject},
		{name: "exp of the wrong type", extra: map[string]any{"exp": "tomorrow"}, want: errClaims},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := staticVerifier(key)
			v.skew, v.issuers, v.audiences = tc.skew, tc.issuer, tc.aud
			_, err := v.verify(context.Background(), sign(t, key, claimsAt(now, "alice", tc.extra)), now)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyExposesClaims(t *testing.T) {
	key := newTestKey(t, jose.EdDSA, "k1", 0)
	v := staticVerifier(key)
	v.claims = map[string]string{"role": "role", "scopes": "scp", "tier": "https://muejam.test/tier", "absent": "nope"}
	tok := sign(t, key, claimsAt(testNow, "alice", map[string]any{
		"role": "author", "scp": []string{"read", "write"}, "https://muejam.test/tier": 3,
	}))
	p, err := v.verify(context.Background(), tok, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"role": "author", "scopes": `["read","write"]`, "tier": "3"}
	if fmt.Sprint(p.metadata) != fmt.Sprint(want) {
		t.Errorf("metadata %v, want %v", p.metadata, want)
	}
}

// An HS256 token "signed" with the RSA public key as the HMAC secret is the classic
// algorithm-confusion attack; the RSA key is pinned to RS256 and must never act as a secret.
func TestAlgorithmConfusionIsRefused(t *testing.T) {
	rsaKey := newTestKey(t, jose.RS256, "rsa-1", 0)
	der, err := x509.MarshalPKIXPublicKey(rsaKey.pub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwk, err := json.Marshal(rsaKey.jwk())
	if err != nil {
		t.Fatal(err)
	}
	// The JWKS publishes the RSA key without "alg": it is pinned to RS256 by its type.
	noAlg := rsaKey.jwk()
	noAlg.Algorithm = ""
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{noAlg}})
	if err != nil {
		t.Fatal(err)
	}
	fromJWKS, err := parseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	verifiers := map[string]*verifier{
		"static": staticVerifier(rsaKey),
		"jwks":   {keys: staticKeys{set: fromJWKS}},
	}
	for vname, v := range verifiers {
		for sname, secret := range map[string][]byte{"pem": pemBytes, "der": der, "jwk": jwk} {
			for _, kid := range []string{"rsa-1", ""} {
				tok := signWith(t, jose.HS256, secret, kid, claimsAt(testNow, "mallory", nil))
				if _, err := v.verify(context.Background(), tok, testNow); !errors.Is(err, errAlgorithm) {
					t.Errorf("%s keys, HS256 with the RSA public key (%s) as secret, kid %q: err %v, want %v", vname, sname, kid, err, errAlgorithm)
				}
			}
		}
	}
	// The genuine RS256 token still passes, so the refusals above are about the algorithm.
	if _, err := verifiers["jwks"].verify(context.Background(), sign(t, rsaKey, claimsAt(testNow, "alice", nil)), testNow); err != nil {
		t.Errorf("genuine RS256 token: %v", err)
	}
}

func TestUnsignedTokensAreRefused(t *testing.T) {
	key := newTestKey(t, jose.HS256, "k1", 0)
	v := staticVerifier(key)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	payload, _ := json.Marshal(claimsAt(testNow, "mallory", nil))
	valid := sign(t, key, claimsAt(testNow, "alice", nil))
	for name, tok := range map[string]string{
		"none":               b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(string(payload)) + ".",
		"None with kid":      b64(`{"alg":"None","kid":"k1"}`) + "." + b64(string(payload)) + ".",
		"none, sig kept":     b64(`{"alg":"none","kid":"k1"}`) + "." + b64(string(payload)) + "." + valid[len(valid)-43:],
		"HS512":              signWith(t, jose.HS512, append(key.priv.([]byte), key.priv.([]byte)...), "k1", claimsAt(testNow, "mallory", nil)),
		"garbage":            "not.a.token",
		"two segments":       b64(`{"alg":"HS256"}`) + "." + b64(string(payload)),
		"payload swapped":    valid[:len(valid)-44] + "x" + valid[len(valid)-43:],
		"JSON serialization": `{"payload":"` + b64(string(payload)) + `","signatures":[]}`,
	} {
		if _, err := v.verify(context.Background(), tok, testNow); err == nil {
			t.Errorf("%s: token accepted", name)
		}
	}
}

func TestUnknownKeyID(t *testing.T) {
	key := newTestKey(t, jose.EdDSA, "k1", 0)
	stranger := newTestKey(t, jose.EdDSA, "k9", 1)
	_, err := staticVerifier(key).verify(context.Background(), sign(t, stranger, claimsAt(testNow, "alice", nil)), testNow)
	if !errors.Is(err, errUnknownKey) {
		t.Errorf("err %v, want %v", err, errUnknownKey)
	}
}

func TestDescribeCarriesOnlyFixedTexts(t *testing.T) {
	err := fmt.Errorf("%w: attacker-controlled \"detail\"", errMalformed)
	if got := describe(err); got != errMalformed.Error() {
		t.Errorf("describe = %q", got)
	}
	if got := describe(errors.New("other")); got != "invalid token" {
		t.Errorf("describe(other) = %q", got)
	}
}

func TestTokenCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := newTestKey(t, jose.ES256, "k1", 0)
		v := staticVerifier(key)
		v.cache = newTokenCache(2)
		tok := sign(t, key, claimsAt(time.Now(), "alice", map[string]any{"exp": time.Now().Add(time.Minute).Unix()}))
		if _, err := v.verify(context.Background(), tok, time.Now()); err != nil {
			t.Fatal(err)
		}
		if v.cache.len() != 1 {
			t.Fatalf("cache holds %d tokens after one verification", v.cache.len())
		}
		// A hit needs the very same key set: swap in a set without the key and the cached
		// token is checked again, and refused.
		v.keys = staticKeys{set: &keySet{}}
		if _, err := v.verify(context.Background(), tok, time.Now()); !errors.Is(err, errUnknownKey) {
			t.Errorf("cached token after its key went away: err %v", err)
		}
		v = staticVerifier(key)
		v.cache = newTokenCache(2)
		if _, err := v.verify(context.Background(), tok, time.Now()); err != nil {
			t.Fatal(err)
		}
		// Cached or not, the token expires at exp + skew.
		time.Sleep(time.Minute + v.skew)
		if _, err := v.verify(context.Background(), tok, time.Now()); err != nil {
			t.Errorf("at exp+skew exactly the token is still valid: %v", err)
		}
		time.Sleep(time.Second)
		if _, err := v.verify(context.Background(), tok, time.Now()); !errors.Is(err, errExpired) {
			t.Errorf("cached token past exp+skew: err %v, want %v", err, errExpired)
		}
		// The cache is bounded.
		for i := range 5 {
			tok := sign(t, key, claimsAt(time.Now(), fmt.Sprint("user", i), nil))
			if _, err := v.verify(context.Background(), tok, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if n := v.cache.len(); n != 2 {
			t.Errorf("cache of size 2 holds %d tokens", n)
		}
	})
}
