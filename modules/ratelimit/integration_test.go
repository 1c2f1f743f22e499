package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testenv/testcaddy"
	"github.com/muejam/edge/internal/testjwt"
	_ "github.com/muejam/edge/modules/jwtauth"
)

// The integration tests run one in-process Caddy (testcaddy). They are not parallel: they
// share that Caddy.
const jwtSecret = "ratelimit-integration-test-secret-0123456789"

var client = &http.Client{Timeout: 10 * time.Second}

// loadCaddy (re)loads Caddy with a site that verifies HS256 tokens (anonymous allowed),
// runs the given edge_rate_limit body and answers 200 with the decision placeholders.
func loadCaddy(t testing.TB, limits string) {
	t.Helper()
	testcaddy.LoadSite(t, fmt.Sprintf(`	authentication {
		jwt {
			key HS256 {
				secret %s
			}
			audience muejam-edge
			allow_anonymous
		}
	}
	edge_rate_limit {
%s
	}
	respond "{http.rate_limit.zone} {http.rate_limit.decision} {http.rate_limit.remaining}" 200`, jwtSecret, limits))
	client.CloseIdleConnections()
}

// token signs an HS256 JWT for user with the given audience and lifetime.
func token(user, aud string, ttl time.Duration) string {
	return testjwt.HS256(jwtSecret, testjwt.Valid(user, "", aud, time.Now(), ttl))
}

type response struct {
	status int
	body   string
	header http.Header
}

// get sends GET / with the given headers.
func get(t *testing.T, headers ...string) response {
	t.Helper()
	resp, body := testenv.Fetch(t, client, http.MethodGet, testcaddy.SiteURL+"/", headers...)
	return response{resp.StatusCode, body, resp.Header}
}

func bearer(tok string) string { return "Bearer " + tok }

// TestCaddyKeysCannotBeSpoofed: the user key comes only from a verified token, the IP key
// only from the peer address (no trusted proxies), whatever the client's headers say.
func TestCaddyKeysCannotBeSpoofed(t *testing.T) {
	loadCaddy(t, `
		zone spoof-user {
			key {http.auth.user.id}
			events 3
			window 1m
		}
		zone spoof-ip {
			key {http.vars.client_ip}
			events 2
			window 1m
			match {
				expression {http.auth.user.id} == ""
			}
		}`)

	// Anonymous: two per IP, whatever X-Forwarded-For or X-Auth-User claim.
	for i, fwd := range []string{"198.51.100.1", "198.51.100.2"} {
		if r := get(t, "X-Forwarded-For", fwd); r.status != http.StatusOK || r.body != fmt.Sprintf("spoof-ip allowed %d", 1-i) {
			t.Fatalf("anonymous request %d: %d %q", i+1, r.status, r.body)
		}
	}
	for _, h := range [][]string{
		{"X-Forwarded-For", "198.51.100.3"},
		{"X-Real-Ip", "198.51.100.4"},
		{"X-Auth-User", "mallory"},
	} {
		r := get(t, h...)
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("anonymous with %s: %d %q, want 429 (the IP key is the peer's)", h[0], r.status, r.body)
		}
	}

	// Alice's token: three, then refused, whatever X-Auth-User says.
	alice := bearer(token("alice", "muejam-edge", time.Hour))
	for i := range 3 {
		r := get(t, "Authorization", alice, "X-Auth-User", fmt.Sprintf("forged-%d", i))
		if r.status != http.StatusOK || r.body != fmt.Sprintf("spoof-user allowed %d", 2-i) {
			t.Fatalf("alice request %d: %d %q", i+1, r.status, r.body)
		}
	}
	r := get(t, "Authorization", alice, "X-Auth-User", "bob")
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("alice's 4th request with X-Auth-User bob: %d %q", r.status, r.body)
	}
	var problem struct {
		Type     string   `json:"type"`
		Status   int      `json:"status"`
		Violated []string `json:"violated-policies"`
	}
	if err := json.Unmarshal([]byte(r.body), &problem); err != nil || problem.Type != quotaExceeded ||
		problem.Status != 429 || len(problem.Violated) != 1 || problem.Violated[0] != "spoof-user" {
		t.Errorf("429 body %q (%v)", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra > "60" || len(ra) > 2 {
		t.Errorf("Retry-After %q, want 1..60", ra)
	}
	if p := r.header.Get("RateLimit-Policy"); p != `"spoof-user";q=3;w=60` {
		t.Errorf("RateLimit-Policy %q", p)
	}
	if s := r.header.Get("RateLimit"); !strings.HasPrefix(s, `"spoof-user";r=0;t=`) {
		t.Errorf("RateLimit %q", s)
	}

	// Tokens that do not verify never become a user key: refused by the jwt provider (401),
	// and neither alice's nor anyone's quota moves.
	for name, tok := range map[string]string{
		"unsigned":       strings.TrimRight(token("bob", "muejam-edge", time.Hour), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") + "x",
		"expired":        token("bob", "muejam-edge", -time.Hour),
		"wrong audience": token("bob", "other", time.Hour),
	} {
		if r := get(t, "Authorization", bearer(tok)); r.status != http.StatusUnauthorized {
			t.Errorf("%s token: %d %q, want 401", name, r.status, r.body)
		}
	}
	bob := bearer(token("bob", "muejam-edge", time.Hour))
	if r := get(t, "Authorization", bob); r.status != http.StatusOK || r.body != "spoof-user allowed 2" {
		t.Errorf("bob's first verified request: %d %q (did a bad token count for him?)", r.status, r.body)
	}
}

// TestCaddyReloadKeepsCounters: a `caddy reload` with a changed config (another zone, a
// larger events count) mid-window keeps the zone's counters.
func TestCaddyReloadKeepsCounters(t *testing.T) {
	zone := `
		zone reload {
			key {http.auth.user.id}
			events %d
			window 1m
		}`
	loadCaddy(t, fmt.Sprintf(zone, 3))
	carol := bearer(token("carol", "muejam-edge", time.Hour))
	for range 3 {
		if r := get(t, "Authorization", carol); r.status != http.StatusOK {
			t.Fatalf("before reload: %d %q", r.status, r.body)
		}
	}
	loadCaddy(t, fmt.Sprintf(zone, 4)+`
		zone reload-global {
			key all
			events 1000
			window 1m
		}`)
	if r := get(t, "Authorization", carol); r.status != http.StatusOK || r.body != "reload allowed 0" {
		t.Fatalf("after reload (4th of 4): %d %q", r.status, r.body)
	}
	if r := get(t, "Authorization", carol); r.status != http.StatusTooManyRequests {
		t.Fatalf("after reload (5th of 4): %d %q; the counters were reset", r.status, r.body)
	}

	resp, err := client.Get(testcaddy.AdminURL + "/edge/limits")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list LimitList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, z := range list.Zones {
		if z.Name == "reload" {
			found = z.Events == 4 && z.Mode == "local" && z.Keys == 1
		}
	}
	if !found {
		t.Errorf("GET /edge/limits has no zone reload with 4 events, local, 1 key: %+v", list)
	}
}

// TestCaddyDryRun: a dry-run zone never refuses and sets the decision placeholder.
func TestCaddyDryRun(t *testing.T) {
	loadCaddy(t, `
		zone dry {
			key all
			events 1
			window 1m
			dry_run
		}
		disable_headers`)
	get(t)
	r := get(t)
	if r.status != http.StatusOK || r.body != "dry dry_run_denied 0" {
		t.Fatalf("dry-run over the limit: %d %q", r.status, r.body)
	}
	if r.header.Get("RateLimit") != "" || r.header.Get("RateLimit-Policy") != "" {
		t.Errorf("headers with disable_headers: %v", r.header)
	}
}
