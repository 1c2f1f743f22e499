package jwtauth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/muejam/edge/internal/adapttest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	adapttest.Unmarshal(t, []adapttest.UnmarshalCase[JWT]{
		{
			Name: "everything",
			Input: `jwt {
				jwks_url https://id.muejam.test/.well-known/jwks.json
				issuer https://id.muejam.test https://id2.muejam.test
				audience muejam-edge
				clock_skew 45s
				claim role
				claim tier https://muejam.test/tier
				allow_anonymous
				realm muejam
				jwks_refresh_interval 15m
				jwks_min_refresh_interval 10s
				jwks_timeout 2s
				cache_size 500
				disable_cache
			}`,
			Want: JWT{
				JWKSURL:                "https://id.muejam.test/.well-known/jwks.json",
				Issuers:                []string{"https://id.muejam.test", "https://id2.muejam.test"},
				Audiences:              []string{"muejam-edge"},
				ClockSkew:              caddy.Duration(45 * time.Second),
				Claims:                 map[string]string{"role": "role", "tier": "https://muejam.test/tier"},
				AllowAnonymous:         true,
				Realm:                  "muejam",
				JWKSRefreshInterval:    caddy.Duration(15 * time.Minute),
				JWKSMinRefreshInterval: caddy.Duration(10 * time.Second),
				JWKSTimeout:            caddy.Duration(2 * time.Second),
				CacheSize:              500,
				DisableCache:           true,
			},
		},
		{
			Name:  "jwks file",
			Input: "jwt {\n jwks_file .run/dev-jwt/jwks.json\n}",
			Want:  JWT{JWKSFile: ".run/dev-jwt/jwks.json"},
		},
		{
			Name: "static keys",
			Input: `jwt {
				key RS256 rsa-1 {
					public_key_file /etc/muejam/rsa.pem
				}
				key HS256 {
					secret {env.JWT_SECRET}
				}
			}`,
			Want: JWT{Keys: []StaticKey{
				{ID: "rsa-1", Algorithm: "RS256", PublicKeyFile: "/etc/muejam/rsa.pem"},
				{Algorithm: "HS256", Secret: "{env.JWT_SECRET}"},
			}},
		},
		{
			Name:  "zero means the default",
			Input: "jwt {\n jwks_file a\n clock_skew 0\n jwks_refresh_interval 0\n jwks_min_refresh_interval 0\n jwks_timeout 0\n cache_size 0\n}",
			Want:  JWT{JWKSFile: "a"},
		},
		{Name: "no key source", Input: "jwt {\n issuer x\n}", WantErr: "no key source: set jwks_file, jwks_url or keys, at Testfile:1"},
		{Name: "two key sources", Input: "jwt {\n jwks_file a\n jwks_url https://b\n}", WantErr: "more than one key source"},
		{Name: "negative skew", Input: "jwt {\n jwks_file a\n clock_skew -1s\n}", WantErr: `clock_skew: "-1s" is not a duration of 0 or more, at Testfile:3`},
		{Name: "skew too large", Input: "jwt {\n jwks_file a\n clock_skew 1h\n}", WantErr: "clock_skew 1h0m0s is outside"},
		{Name: "bad duration", Input: "jwt {\n jwks_file a\n clock_skew soon\n}", WantErr: "clock_skew: "},
		{Name: "unknown alg", Input: "jwt {\n key RS512 {\n public_key_file k.pem\n }\n}", WantErr: `unknown key algorithm "RS512" (want RS256, ES256, EdDSA or HS256), at Testfile:2`},
		{Name: "none alg", Input: "jwt {\n key none\n}", WantErr: `unknown key algorithm "none"`},
		{Name: "HS256 without secret", Input: "jwt {\n key HS256\n}", WantErr: "HS256 needs a secret"},
		{Name: "unknown key option", Input: "jwt {\n key HS256 {\n password x\n }\n}", WantErr: `unrecognized key option "password"`},
		{Name: "unknown option", Input: "jwt {\n jwks_file a\n leeway 1s\n}", WantErr: `unrecognized jwt option "leeway", at Testfile:3`},
		{Name: "argument on jwt", Input: "jwt foo {\n jwks_file a\n}", WantErr: "wrong argument count"},
		{Name: "jwks_file without path", Input: "jwt {\n jwks_file\n}", WantErr: "wrong argument count"},
		{Name: "claim named id", Input: "jwt {\n jwks_file a\n claim id sub\n}", WantErr: "not id"},
		{Name: "claim twice", Input: "jwt {\n jwks_file a\n claim role\n claim role r2\n}", WantErr: "configured twice"},
		{Name: "cache size not a number", Input: "jwt {\n jwks_file a\n cache_size many\n}", WantErr: "cache_size"},
		{Name: "negative cache size", Input: "jwt {\n jwks_file a\n cache_size -1\n}", WantErr: `cache_size: "-1" is not a whole number of at least 0, at Testfile:3`},
		{Name: "allow_anonymous with argument", Input: "jwt {\n jwks_file a\n allow_anonymous yes\n}", WantErr: "wrong argument count"},
	})
}

// adapt runs the Caddyfile adapter on body as the file "Caddyfile".
func adapt(body string) ([]byte, error) {
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, _, err := adapter.Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	return out, err
}

func TestAuthenticationDirective(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		wantErr string
	}{
		{name: "outside route", body: ":9180 {\n\tauthentication {\n\t\tjwt {\n\t\t\tjwks_file a\n\t\t}\n\t}\n\trespond ok\n}"},
		{name: "with matcher", body: ":9180 {\n\tauthentication /private/* {\n\t\tjwt {\n\t\t\tjwks_file a\n\t\t}\n\t}\n}"},
		{name: "no provider", body: ":9180 {\n\tauthentication\n}", wantErr: "at least one provider block, e.g. jwt { ... }, at Caddyfile:2"},
		{name: "provider twice", body: ":9180 {\n\tauthentication {\n\t\tjwt {\n\t\t\tjwks_file a\n\t\t}\n\t\tjwt {\n\t\t\tjwks_file b\n\t\t}\n\t}\n}", wantErr: "jwt configured twice, at Caddyfile:6"},
		{name: "unknown provider", body: ":9180 {\n\tauthentication {\n\t\tsaml\n\t}\n}", wantErr: "http.authentication.providers.saml"},
		{name: "bad skew reports its line", body: ":9180 {\n\tauthentication {\n\t\tjwt {\n\t\t\tjwks_file a\n\t\t\tclock_skew -5s\n\t\t}\n\t}\n}", wantErr: "at Caddyfile:5"},
		{name: "invalid jwt reports its line", body: ":9180 {\n\tauthentication {\n\t\tjwt {\n\t\t\tjwks_file a\n\t\t\tclock_skew 1h\n\t\t}\n\t}\n}", wantErr: "outside 0..5m0s, at Caddyfile:3"},
		{name: "unknown alg reports its line", body: ":9180 {\n\tauthentication {\n\t\tjwt {\n\n\t\t\tkey PS256 {\n\t\t\t}\n\t\t}\n\t}\n}", wantErr: "at Caddyfile:5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := adapt(tc.body)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Apps struct {
					HTTP struct {
						Servers map[string]struct {
							Routes []json.RawMessage `json:"routes"`
						} `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), `"handler":"authentication","providers":{"jwt":{"jwks_file":"a"}}`) {
				t.Errorf("adapted JSON lacks the authentication handler:\n%s", out)
			}
		})
	}
}

// TestCaddyfileAdapt compares the JSON of each testdata/adapt/*.caddyfiletest.
func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t) }
