package jwtauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
)

// jwksFile writes a JWKS of keys to a temporary file and returns its path.
func jwksFile(t *testing.T, keys ...testKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, jwks(t, keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthenticate(t *testing.T) {
	key := newTestKey(t, jose.EdDSA, "k1", 0)
	file := jwksFile(t, key)
	now := time.Now()
	valid := sign(t, key, claimsAt(now, "alice", map[string]any{"role": "author"}))
	expired := sign(t, key, claimsAt(now, "alice", map[string]any{"exp": now.Add(-time.Hour).Unix()}))
	wrongAud := sign(t, key, claimsAt(now, "alice", map[string]any{"aud": "elsewhere"}))

	cases := []struct {
		name      string
		anonymous bool
		authz     string
		wantUser  string
		wantOK    bool
		wantChal  string // WWW-Authenticate when refused
		wantError string // problem body "error" member
	}{
		{name: "valid", authz: "Bearer " + valid, wantUser: "alice", wantOK: true},
		{name: "scheme is case-insensitive", authz: "bearer " + valid, wantUser: "alice", wantOK: true},
		{name: "missing", wantChal: `Bearer realm="muejam"`},
		{name: "expired", authz: "Bearer " + expired, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="token expired"`, wantError: "invalid_token"},
		{name: "wrong audience", authz: "Bearer " + wrongAud, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="token audience not accepted"`, wantError: "invalid_token"},
		{name: "garbage", authz: "Bearer x.y.z", wantChal: `Bearer realm="muejam", error="invalid_token", error_description="malformed token or algorithm not accepted"`, wantError: "invalid_token"},
		{name: "basic", authz: "Basic YWxpY2U6c2VjcmV0", wantChal: `Bearer realm="muejam", error="invalid_request", error_description="authorization is not a bearer token"`, wantError: "invalid_request"},
		{name: "empty bearer", authz: "Bearer ", wantChal: `Bearer realm="muejam", error="invalid_request", error_description="authorization is not a bearer token"`, wantError: "invalid_request"},
		{name: "anonymous, no token", anonymous: true, wantUser: "", wantOK: true},
		{name: "anonymous, valid token", anonymous: true, authz: "Bearer " + valid, wantUser: "alice", wantOK: true},
		{name: "anonymous, expired token", anonymous: true, authz: "Bearer " + expired, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="token expired"`, wantError: "invalid_token"},
		{name: "anonymous, basic", anonymous: true, authz: "Basic YWxpY2U6c2VjcmV0", wantChal: `Bearer realm="muejam", error="invalid_request", error_description="authorization is not a bearer token"`, wantError: "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := provision(t, &JWT{
				JWKSFile:       file,
				Audiences:      []string{"muejam-edge"},
				Realm:          "muejam",
				Claims:         map[string]string{"role": "role"},
				AllowAnonymous: tc.anonymous,
			})
			req := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			rec := httptest.NewRecorder()
			user, ok, err := j.Authenticate(rec, req)
			if err != nil {
				t.Fatalf("Authenticate: technical error %v", err)
			}
			if ok != tc.wantOK || user.ID != tc.wantUser {
				t.Fatalf("Authenticate = %+v, %v; want %q, %v", user, ok, tc.wantUser, tc.wantOK)
			}
			if ok {
				if rec.Code != http.StatusOK || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
					t.Errorf("an accepted request got a response written: %d %v %q", rec.Code, rec.Header(), rec.Body)
				}
				if user.ID != "" && user.Metadata["role"] != "author" {
					t.Errorf("metadata %v, want role=author", user.Metadata)
				}
				return
			}
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", rec.Code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.wantChal {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.wantChal)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			var body problem
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Status != 401 || body.Title != "Unauthorized" || body.Type == "" || body.Detail == "" || body.Error != tc.wantError {
				t.Errorf("problem body %+v", body)
			}
			if tc.wantError != "" && !strings.Contains(tc.wantChal, `error_description="`+body.Detail+`"`) {
				t.Errorf("detail %q does not match the challenge %q", body.Detail, tc.wantChal)
			}
		})
	}
}

func TestStaticKeys(t *testing.T) {
	rsa := newTestKey(t, jose.RS256, "rsa", 0)
	ec := newTestKey(t, jose.ES256, "", 0)
	ed := newTestKey(t, jose.EdDSA, "ed", 0)
	hs := newTestKey(t, jose.HS256, "hs", 0)
	t.Setenv("JWTAUTH_TEST_SECRET", string(hs.priv.([]byte)))
	j := provision(t, &JWT{Keys: []StaticKey{
		{ID: "rsa", Algorithm: "RS256", PublicKeyFile: writePublicKeyPEM(t, rsa)},
		{Algorithm: "ES256", PublicKeyFile: writePublicKeyPEM(t, ec)},
		{ID: "ed", Algorithm: "EdDSA", PublicKeyFile: writePublicKeyPEM(t, ed)},
		{ID: "hs", Algorithm: "HS256", Secret: "{env.JWTAUTH_TEST_SECRET}"},
	}})
	for _, k := range []testKey{rsa, ec, ed, hs} {
		p, err := j.verifier.verify(t.Context(), sign(t, k, claimsAt(time.Now(), "alice", nil)), time.Now())
		if err != nil || p.id != "alice" {
			t.Errorf("%s: principal %+v, err %v", k.alg, p, err)
		}
	}
	// A PEM file whose key does not fit the configured algorithm is refused at load.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	bad := &JWT{Keys: []StaticKey{{Algorithm: "ES256", PublicKeyFile: writePublicKeyPEM(t, rsa)}}}
	if err := bad.Provision(ctx); err == nil {
		t.Error("an RSA public key configured as ES256 was accepted")
	}
	short := &JWT{Keys: []StaticKey{{Algorithm: "HS256", Secret: "too short"}}}
	if err := short.Provision(ctx); err == nil {
		t.Error("a 9-byte HS256 secret was accepted")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		j       JWT
		wantErr string
	}{
		{name: "jwks file", j: JWT{JWKSFile: "/etc/jwks.json"}},
		{name: "jwks url", j: JWT{JWKSURL: "https://id.test/jwks.json", ClockSkew: caddy.Duration(5 * time.Minute)}},
		{name: "static", j: JWT{Keys: []StaticKey{{Algorithm: "HS256", Secret: "{env.S}"}, {Algorithm: "EdDSA", PublicKeyFile: "k.pem"}}}},
		{name: "no key source", j: JWT{}, wantErr: "no key source"},
		{name: "two key sources", j: JWT{JWKSFile: "f", JWKSURL: "https://x"}, wantErr: "more than one key source"},
		{name: "url scheme", j: JWT{JWKSURL: "ftp://x"}, wantErr: "not an http(s) URL"},
		{name: "unknown alg", j: JWT{Keys: []StaticKey{{Algorithm: "RS512", PublicKeyFile: "k.pem"}}}, wantErr: "unknown algorithm"},
		{name: "none alg", j: JWT{Keys: []StaticKey{{Algorithm: "none"}}}, wantErr: "unknown algorithm"},
		{name: "HS256 without secret", j: JWT{Keys: []StaticKey{{Algorithm: "HS256"}}}, wantErr: "needs a secret"},
		{name: "RS256 with secret", j: JWT{Keys: []StaticKey{{Algorithm: "RS256", Secret: "x"}}}, wantErr: "needs a public_key_file"},
		{name: "negative skew", j: JWT{JWKSFile: "f", ClockSkew: caddy.Duration(-time.Second)}, wantErr: "clock_skew"},
		{name: "skew too large", j: JWT{JWKSFile: "f", ClockSkew: caddy.Duration(6 * time.Minute)}, wantErr: "clock_skew"},
		{name: "negative timeout", j: JWT{JWKSFile: "f", JWKSTimeout: caddy.Duration(-time.Second)}, wantErr: "jwks_timeout"},
		{name: "min refresh too short", j: JWT{JWKSFile: "f", JWKSMinRefreshInterval: caddy.Duration(time.Millisecond)}, wantErr: "jwks_min_refresh_interval"},
		{name: "negative cache", j: JWT{JWKSFile: "f", CacheSize: -1}, wantErr: "cache_size"},
		{name: "claim named id", j: JWT{JWKSFile: "f", Claims: map[string]string{"id": "sub"}}, wantErr: "not id"},
		{name: "claim name with dot", j: JWT{JWKSFile: "f", Claims: map[string]string{"a.b": "x"}}, wantErr: "claim placeholder name"},
		{name: "realm with quote", j: JWT{JWKSFile: "f", Realm: `a"b`}, wantErr: "realm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.j.Validate()
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// The dev flow: the edge starts before `make token` has created the key pair; the first
// token after the file appears is accepted.
func TestJWKSFileCreatedAfterLoad(t *testing.T) {
	key := newTestKey(t, jose.EdDSA, "dev", 0)
	path := filepath.Join(t.TempDir(), "jwks.json")
	j := provision(t, &JWT{JWKSFile: path})
	if err := os.WriteFile(path, jwks(t, key), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := j.verifier.verify(t.Context(), sign(t, key, claimsAt(time.Now(), "alice", nil)), time.Now())
	if err != nil || p.id != "alice" {
		t.Errorf("principal %+v, err %v", p, err)
	}
}
