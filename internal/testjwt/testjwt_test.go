package testjwt

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestTokensVerify checks both kinds of token with go-jose: the signature verifies with the
// secret or the published JWKS, and the claims are the ones given, empty ones left out.
func TestTokensVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	want := jwt.Expected{Subject: "alice", Issuer: "idp", AnyAudience: jwt.Audience{"muejam-edge"}, Time: now}
	key := NewEdDSAKey("k1")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(key.JWKS(), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "k1" || !set.Keys[0].Valid() {
		t.Fatalf("JWKS %s: %v", key.JWKS(), err)
	}
	for _, c := range []struct {
		name   string
		token  string
		alg    jose.SignatureAlgorithm
		verify any
	}{
		{"HS256", HS256("0123456789abcdef0123456789abcdef", Valid("alice", "idp", "muejam-edge", now, time.Hour)), jose.HS256, []byte("0123456789abcdef0123456789abcdef")},
		{"EdDSA", key.Sign(Valid("alice", "idp", "muejam-edge", now, time.Hour)), jose.EdDSA, set.Keys[0].Public().Key},
	} {
		tok, err := jwt.ParseSigned(c.token, []jose.SignatureAlgorithm{c.alg})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var claims jwt.Claims
		if err := tok.Claims(c.verify, &claims); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := claims.ValidateWithLeeway(want, 0); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if claims.NotBefore.Time() != now || claims.Expiry.Time() != now.Add(time.Hour) {
			t.Errorf("%s: nbf %v, exp %v", c.name, claims.NotBefore.Time(), claims.Expiry.Time())
		}
	}

	tok, err := jwt.ParseSigned(HS256("0123456789abcdef0123456789abcdef", Claims{Subject: "bob"}), []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&payload); err != nil || len(payload) != 1 || payload["sub"] != "bob" {
		t.Errorf("a token of only a subject has claims %v (%v), want sub alone", payload, err)
	}
}
