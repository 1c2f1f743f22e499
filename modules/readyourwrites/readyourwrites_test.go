package readyourwrites

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/muejam/edge/internal/adapttest"
	"github.com/muejam/edge/internal/promtext"
	"github.com/muejam/edge/internal/rywtoken"
	"github.com/muejam/edge/internal/testenv"
)

const (
	currentKey  = "current-read-your-writes-key-0123456789abcdef"
	previousKey = "previous-read-your-writes-key-0123456789abcdef"
)

func TestAdapt(t *testing.T) { adapttest.Run(t) }

// sign returns a token of key for a write issued at issued.
func sign(t testing.TB, key string, issued time.Time) string {
	t.Helper()
	k, err := rywtoken.NewKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return k.Sign(rywtoken.Claims{LSN: 0x2_0000_0010, Issued: issued})
}

// provision provisions m in a fresh Caddy context.
func provision(m *Match) error {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := m.Provision(ctx); err != nil {
		return err
	}
	return m.Validate()
}

func TestMatch(t *testing.T) {
	t.Setenv("MUEJAM_TEST_RYW_KEY", currentKey)
	m := &Match{Keys: []string{"{env.MUEJAM_TEST_RYW_KEY}", "{env.MUEJAM_TEST_RYW_KEY_UNSET}", previousKey}}
	if err := provision(m); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, tc := range map[string]struct {
		header, cookie string
		want           bool
	}{
		"no token":               {"", "session=1", false},
		"header":                 {sign(t, currentKey, now), "", true},
		"cookie":                 {"", "a=1; ryw=" + sign(t, currentKey, now), true},
		"previous key":           {sign(t, previousKey, now), "", true},
		"other key":              {sign(t, rywtoken.DevKey, now), "", false},
		"garbage header":         {"x", "", false},
		"expired":                {sign(t, currentKey, now.Add(-DefaultTTL-time.Second)), "", false},
		"future":                 {sign(t, currentKey, now.Add(time.Hour)), "", false},
		"cookie named xryw":      {"", "xryw=" + sign(t, currentKey, now), false},
		"cookie named ryw2":      {"", "ryw2=" + sign(t, currentKey, now), false},
		"ryw= inside a value":    {"", "q=ryw=" + sign(t, currentKey, now), false},
		"garbage header, cookie": {"x", "ryw=" + sign(t, currentKey, now), true},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.header != "" {
			req.Header.Set(rywtoken.Header, tc.header)
		}
		if tc.cookie != "" {
			req.Header.Set("Cookie", tc.cookie)
		}
		if got, err := m.MatchWithError(req); got != tc.want || err != nil {
			t.Errorf("%s: matched %v (%v), want %v", name, got, err, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for name, m := range map[string]*Match{
		"no key":         {},
		"unset env":      {Keys: []string{"{env.MUEJAM_TEST_RYW_KEY_UNSET}"}},
		"short key":      {Keys: []string{"short"}},
		"short previous": {Keys: []string{currentKey, "short"}},
		"negative ttl":   {Keys: []string{currentKey}, TTL: -1},
	} {
		if err := provision(m); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	// dev_key stands in for an unset key, and only then.
	dev := &Match{Keys: []string{"{env.MUEJAM_TEST_RYW_KEY_UNSET}"}, DevKey: true}
	if err := provision(dev); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(rywtoken.Header, sign(t, rywtoken.DevKey, time.Now()))
	if ok, _ := dev.MatchWithError(req); !ok {
		t.Error("dev_key without a key: a token of the development key does not match")
	}
	set := &Match{Keys: []string{currentKey}, DevKey: true}
	if err := provision(set); err != nil {
		t.Fatal(err)
	}
	if ok, _ := set.MatchWithError(req); ok {
		t.Error("dev_key with a key set: a token of the development key matches")
	}

	for _, in := range []string{
		"read_your_writes",
		"read_your_writes {\n\tttl 10s\n}",
		"read_your_writes k {\n\tttl soon\n}",
		"read_your_writes k {\n\tdev_key on\n}",
		"read_your_writes k {\n\tbogus\n}",
		"read_your_writes {\n\tkey\n}",
	} {
		if err := new(Match).UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

// TestProductionReadsTheKeyFromTheEnvironment: production.Caddyfile verifies tokens with
// READ_YOUR_WRITES_KEY (and the previous key) read at run time, never with the development
// key, and bypasses its cache on nothing else that names a token.
func TestProductionReadsTheKeyFromTheEnvironment(t *testing.T) {
	path := filepath.Join(testenv.RepoRoot(t), "caddyfiles", "production.Caddyfile")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"dev_key", "ryw=", "header X-Read-Your-Writes"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("production.Caddyfile contains %q", bad)
		}
	}
	cfg := adapttest.File(t, path)
	var found int
	for _, h := range adapttest.Handlers(cfg, "edge_cache") {
		bypass, _ := h["bypass"].([]any)
		for _, set := range bypass {
			m, _ := set.(map[string]any)["read_your_writes"].(map[string]any)
			if m == nil {
				continue
			}
			found++
			if got := fmt.Sprint(m["keys"]); got != "[{env.READ_YOUR_WRITES_KEY} {env.READ_YOUR_WRITES_KEY_PREVIOUS}]" {
				t.Errorf("production.Caddyfile's read_your_writes keys %s", got)
			}
		}
	}
	if found == 0 {
		t.Error("production.Caddyfile's edge_cache has no read_your_writes bypass")
	}
}

// TestEdgeCacheBypassesOnlyForValidTokens runs bin/caddy with edge_cache in front of a
// counting origin, bypassing its cache for read_your_writes with the keys from the
// environment: a token signed with the current or the previous key reaches the origin; a
// forged, garbage, expired or development-key token, or a valid one in a cookie of another
// name, is answered from the cache; each is counted on /metrics.
func TestEdgeCacheBypassesOnlyForValidTokens(t *testing.T) {
	var fetches atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := fetches.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=600")
		fmt.Fprintf(w, "fetch %d", n)
	}))
	t.Cleanup(origin.Close)

	site, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cf := fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
}
http://%s {
	bind 127.0.0.1
	edge_cache {
		bypass {
			read_your_writes {env.MUEJAM_TEST_RYW_KEY} {env.MUEJAM_TEST_RYW_KEY_PREVIOUS}
		}
	}
	reverse_proxy %s
}
`, admin, site, strings.TrimPrefix(origin.URL, "http://"))
	testenv.StartCaddy(t, []string{"MUEJAM_TEST_RYW_KEY=" + currentKey, "MUEJAM_TEST_RYW_KEY_PREVIOUS=" + previousKey}, cf, "caddyfile")
	testenv.WaitHTTP(t, "http://"+admin+"/config/")

	get := func(header, cookie string) (body, status string) {
		t.Helper()
		var headers []string
		if header != "" {
			headers = append(headers, rywtoken.Header, header)
		}
		if cookie != "" {
			headers = append(headers, "Cookie", cookie)
		}
		resp, body := testenv.Fetch(t, http.DefaultClient, http.MethodGet, "http://"+site+"/feed", headers...)
		return body, resp.Header.Get("Cache-Status")
	}
	testenv.WaitHTTP(t, "http://"+site+"/")
	if body, status := get("", ""); body != "fetch 2" || !strings.Contains(status, "fwd=miss") {
		t.Fatalf("first GET: %q (Cache-Status %q)", body, status)
	}
	cached, _ := get("", "")
	now := time.Now()
	valid := sign(t, currentKey, now)
	for name, tc := range map[string]struct{ header, cookie string }{
		"forged header":             {sign(t, "someone-elses-key-0123456789abcdef0123", now), ""},
		"forged cookie":             {"", "ryw=" + sign(t, "someone-elses-key-0123456789abcdef0123", now)},
		"garbage header":            {"x", ""},
		"garbage cookie":            {"", "ryw=x"},
		"development key":           {sign(t, rywtoken.DevKey, now), ""},
		"expired":                   {sign(t, currentKey, now.Add(-time.Minute)), ""},
		"valid token in xryw":       {"", "xryw=" + valid},
		"valid token in ryw2":       {"", "ryw2=" + valid},
		"valid token inside values": {"", "q=ryw=" + valid},
	} {
		if body, status := get(tc.header, tc.cookie); body != cached || !strings.Contains(status, "hit") {
			t.Errorf("%s: %q (Cache-Status %q), want the cached %q", name, body, status, cached)
		}
	}
	before := fetches.Load()
	for name, tc := range map[string]struct{ header, cookie string }{
		"valid header":              {valid, ""},
		"valid cookie":              {"", "session=1; ryw=" + valid},
		"previous key":              {sign(t, previousKey, now), ""},
		"garbage header, ryw valid": {"x", "ryw=" + valid},
	} {
		if body, status := get(tc.header, tc.cookie); body == cached || !strings.Contains(status, "fwd=bypass") {
			t.Errorf("%s: %q (Cache-Status %q), want a bypass to the origin", name, body, status)
		}
	}
	if got := fetches.Load() - before; got != 4 {
		t.Errorf("the origin saw %d requests with valid tokens, want 4", got)
	}

	metrics, err := promtext.Fetch(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{"valid": 4, "invalid": 5, "expired": 1, "future": 0} {
		if got := promtext.Sum(metrics, "muejam_edge_read_your_writes_total", `outcome="`+outcome+`"`); got != want {
			t.Errorf("muejam_edge_read_your_writes_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}
