package jwtauth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/muejam/edge/internal/testenv/testcaddy"
)

// recordingUpstream is the app server stand-in: it records the X-Auth-User values of every
// request that reaches it.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen [][]string // X-Auth-User values per request, in order
	role []string
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Values("X-Auth-User"))
		u.role = append(u.role, r.Header.Get("X-Auth-Role"))
		u.mu.Unlock()
		w.Write([]byte("upstream"))
	}))
	t.Cleanup(u.Close)
	return u
}

// last returns the X-Auth-User values and role of the latest request, and how many requests
// arrived in all.
func (u *recordingUpstream) last() (users []string, role string, n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil, "", 0
	}
	return u.seen[len(u.seen)-1], u.role[len(u.role)-1], len(u.seen)
}

func TestThroughCaddy(t *testing.T) {
	key := newTestKey(t, jose.ES256, "k1", 0)
	file := jwksFile(t, key)
	up := newRecordingUpstream(t)
	upstream := strings.TrimPrefix(up.URL, "http://")

	testcaddy.LoadSite(t, fmt.Sprintf(`	request_header -X-Auth-User
	route /private/* {
		authentication {
			jwt {
				jwks_file %[1]s
				issuer https://id.test
				audience muejam-edge
				realm muejam
				claim role
			}
		}
		reverse_proxy %[2]s {
			header_up X-Auth-User {http.auth.user.id}
			header_up X-Auth-Role {http.auth.user.role}
		}
	}
	route /public/* {
		authentication {
			jwt {
				jwks_file %[1]s
				allow_anonymous
			}
		}
		reverse_proxy %[2]s {
			header_up X-Auth-User {http.auth.user.id}
		}
	}
	reverse_proxy %[2]s`, file, upstream))
	client := &http.Client{Timeout: 10 * time.Second}

	now := time.Now()
	valid := sign(t, key, claimsAt(now, "alice", map[string]any{"role": "author"}))
	expired := sign(t, key, claimsAt(now, "alice", map[string]any{"exp": now.Add(-time.Hour).Unix()}))
	wrongAud := sign(t, key, claimsAt(now, "alice", map[string]any{"aud": "elsewhere"}))
	forger := newTestKey(t, jose.ES256, "k1", 1)
	forged := sign(t, forger, claimsAt(now, "alice", nil))
	stripped := strings.Join(strings.Split(valid, ".")[:2], ".") + "."
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`)) + "." + strings.Split(valid, ".")[1] + "."

	cases := []struct {
		name      string
		path      string
		token     string
		wantCode  int
		wantUsers []string // X-Auth-User values the upstream must see; nil: upstream not reached
		wantRole  string
		wantChal  string
	}{
		{name: "valid token", path: "/private/me", token: valid, wantCode: 200, wantUsers: []string{"alice"}, wantRole: "author"},
		{name: "no token", path: "/private/me", wantCode: 401, wantChal: `Bearer realm="muejam"`},
		{name: "expired token", path: "/private/me", token: expired, wantCode: 401, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="token expired"`},
		{name: "wrong audience", path: "/private/me", token: wrongAud, wantCode: 401, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="token audience not accepted"`},
		{name: "signed by another key", path: "/private/me", token: forged, wantCode: 401, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="invalid token signature"`},
		{name: "signature stripped", path: "/private/me", token: stripped, wantCode: 401, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="invalid token signature"`},
		{name: "alg none", path: "/private/me", token: none, wantCode: 401, wantChal: `Bearer realm="muejam", error="invalid_token", error_description="malformed token or algorithm not accepted"`},
		{name: "anonymous", path: "/public/feed", wantCode: 200, wantUsers: []string{""}},
		{name: "anonymous route, valid token", path: "/public/feed", token: valid, wantCode: 200, wantUsers: []string{"alice"}},
		{name: "anonymous route, expired token", path: "/public/feed", token: expired, wantCode: 401, wantChal: `Bearer error="invalid_token", error_description="token expired"`},
		{name: "route without authentication", path: "/v1/health", wantCode: 200, wantUsers: []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, testcaddy.SiteURL+tc.path, nil)
			req.Header.Set("X-Auth-User", "bob")  // every request tries to pass as bob
			req.Header.Add("X-Auth-User", "root") // twice
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			_, _, before := up.last()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.wantCode, body)
			}
			users, role, after := up.last()
			if tc.wantUsers == nil {
				if after != before {
					t.Errorf("a refused request reached the upstream with X-Auth-User %q", users)
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != tc.wantChal {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.wantChal)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q", ct)
				}
				var p problem
				if err := json.Unmarshal(body, &p); err != nil || p.Status != 401 || p.Detail == "" {
					t.Errorf("problem body %q (%v)", body, err)
				}
				return
			}
			if after != before+1 {
				t.Fatalf("upstream saw %d requests, want 1", after-before)
			}
			if slices.Contains(users, "bob") || slices.Contains(users, "root") {
				t.Errorf("the forged X-Auth-User reached the upstream: %q", users)
			}
			if !slices.Equal(users, tc.wantUsers) {
				t.Errorf("upstream saw X-Auth-User %q, want %q", users, tc.wantUsers)
			}
			if role != tc.wantRole {
				t.Errorf("upstream saw X-Auth-Role %q, want %q", role, tc.wantRole)
			}
		})
	}
}
