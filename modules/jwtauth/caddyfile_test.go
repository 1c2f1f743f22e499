package jwtauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/muejam/edge/internal/adapttest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    JWT
		wantErr string
	}{
		{
			name: "everything",
			input: `jwt {
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
			want: JWT{
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
			name:  "jwks file",
			input: "jwt {\n jwks_file .run/dev-jwt/jwks.json\n}",
			want:  JWT{JWKSFile: ".run/dev-jwt/jwks.json"},
		},
		{
			name: "static keys",
			input: `jwt {
				key RS256 rsa-1 {
					public_key_file /etc/muejam/rsa.pem
				}
				key HS256 {
					secret {env.JWT_SECRET}
				}
			}`,
			want: JWT{Keys: []StaticKey{
				{ID: "rsa-1", Algorithm: "RS256", PublicKeyFile: "/etc/muejam/rsa.pem"},
				{Algorithm: "HS256", Secret: "{env.JWT_SECRET}"},
			}},
		},
		{
			name:  "zero means the default",
			input: "jwt {\n jwks_file a\n clock_skew 0\n jwks_refresh_interval 0\n jwks_min_refresh_interval 0\n jwks_timeout 0\n cache_size 0\n}",
			want:  JWT{JWKSFile: "a"},
		},
		{name: "no key source", input: "jwt {\n issuer x\n}", wantErr: "no key source: set jwks_file, jwks_url or keys, at Testfile:1"},
		{name: "two key sources", input: "jwt {\n jwks_file a\n jwks_url https://b\n}", wantErr: "more than one key source"},
		{name: "negative skew", input: "jwt {\n jwks_file a\n clock_skew -1s\n}", wantErr: `clock_skew: "-1s" is not a duration of 0 or more, at Testfile:3`},
		{name: "skew too large", input: "jwt {\n jwks_file a\n clock_skew 1h\n}", wantErr: "clock_skew 1h0m0s is outside"},
		{name: "bad duration", input: "jwt {\n jwks_file a\n clock_skew soon\n}", wantErr: "clock_skew: "},
		{name: "unknown alg", input: "jwt {\n key RS512 {\n public_key_file k.pem\n }\n}", wantErr: `unknown key algorithm "RS512" (want RS256, ES256, EdDSA or HS256), at Testfile:2`},
		{name: "none alg", input: "jwt {\n key none\n}", wantErr: `unknown key algorithm "none"`},
		{name: "HS256 without secret", input: "jwt {\n key HS256\n}", wantErr: "HS256 needs a secret"},
		{name: "unknown key option", input: "jwt {\n key HS256 {\n password x\n }\n}", wantErr: `unrecognized key option "password"`},
		{name: "unknown option", input: "jwt {\n jwks_file a\n leeway 1s\n}", wantErr: `unrecognized jwt option "leeway", at Testfile:3`},
		{name: "argument on jwt", input: "jwt foo {\n jwks_file a\n}", wantErr: "wrong argument count"},
		{name: "jwks_file without path", input: "jwt {\n jwks_file\n}", wantErr: "wrong argument count"},
		{name: "claim named id", input: "jwt {\n jwks_file a\n claim id sub\n}", wantErr: "not id"},
		{name: "claim twice", input: "jwt {\n jwks_file a\n claim role\n claim role r2\n}", wantErr: "configured twice"},
		{name: "cache size not a number", input: "jwt {\n jwks_file a\n cache_size many\n}", wantErr: "cache_size"},
		{name: "negative cache size", input: "jwt {\n jwks_file a\n cache_size -1\n}", wantErr: `cache_size: "-1" is not a whole number of at least 0, at Testfile:3`},
		{name: "allow_anonymous with argument", input: "jwt {\n jwks_file a\n allow_anonymous yes\n}", wantErr: "wrong argument count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got JWT
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
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
