package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestTokenVerifiesWithTheDevJWKS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev-jwt")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	if err := run([]string{"-dir", dir, "-user", "alice", "-ttl", "30m"}, &out, now); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "private.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private.pem: %v, mode %v", err, fi.Mode())
	}
	raw, err := os.ReadFile(filepath.Join(dir, "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() {
		t.Fatalf("jwks.json: %v, %d keys", err, len(set.Keys))
	}
	pub := set.Keys[0]
	if pub.Algorithm != "EdDSA" || pub.Use != "sig" || pub.KeyID == "" {
		t.Errorf("jwks.json key: alg %q use %q kid %q", pub.Algorithm, pub.Use, pub.KeyID)
	}

	tok, err := jwt.ParseSigned(strings.TrimSpace(out.String()), []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if kid := tok.Headers[0].KeyID; kid != pub.KeyID {
		t.Errorf("token kid %q, JWKS kid %q", kid, pub.KeyID)
	}
	var c jwt.Claims
	if err := tok.Claims(pub.Key, &c); err != nil {
		t.Fatalf("token does not verify with jwks.json: %v", err)
	}
	err = c.Validate(jwt.Expected{Subject: "alice", Issuer: "muejam-dev", AnyAudience: jwt.Audience{"muejam-edge"}, Time: now.Add(29 * time.Minute)})
	if err != nil {
		t.Errorf("claims %+v: %v", c, err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: now.Add(31 * time.Minute)}, 0); err == nil {
		t.Error("token still valid after its 30m ttl")
	}

	// A second run reuses the pair.
	out.Reset()
	if err := run([]string{"-dir", dir, "-user", "bob"}, &out, now); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(filepath.Join(dir, "jwks.json"))
	if err != nil || !bytes.Equal(again, raw) {
		t.Errorf("jwks.json changed on the second run (%v)", err)
	}
	tok, err = jwt.ParseSigned(strings.TrimSpace(out.String()), []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Claims(pub.Key, &c); err != nil || c.Subject != "bob" {
		t.Errorf("second token: sub %q, %v", c.Subject, err)
	}
}

func TestKeysOnlyAndBadFlags(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"-dir", dir}, &out, time.Now()); err != nil || out.Len() != 0 {
		t.Fatalf("without -user: %v, output %q", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "jwks.json")); err != nil {
		t.Errorf("without -user the key pair is still created: %v", err)
	}
	for _, args := range [][]string{{"-ttl", "0s", "-user", "a"}, {"-user", "a", "extra"}, {"-nope"}} {
		if err := run(append([]string{"-dir", dir}, args...), &out, time.Now()); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "private.pem"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-dir", dir, "-user", "a"}, &out, time.Now()); err == nil {
		t.Error("a corrupt private.pem was accepted")
	}
}
