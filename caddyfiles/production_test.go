package caddyfiles_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/muejam/edge/internal/adapttest"
	"github.com/muejam/edge/internal/testenv"
)

// adapt returns the JSON config bin/caddy adapts a Caddyfile of this folder to, with env
// added to the environment.
func adapt(t *testing.T, file string, env ...string) map[string]any {
	t.Helper()
	return adapttest.File(t, file, env...)
}

// TestProductionLimitsAreDevs: production.Caddyfile enforces the same MueJam zones (names,
// keys, events, windows, matchers) as dev.Caddyfile, which the end-to-end tests run.
func TestProductionLimitsAreDevs(t *testing.T) {
	dev := adapttest.Handler(t, "dev.Caddyfile", adapt(t, "dev.Caddyfile"), "edge_rate_limit")
	prod := adapttest.Handler(t, "production.Caddyfile", adapt(t, "production.Caddyfile"), "edge_rate_limit")
	if !reflect.DeepEqual(dev["zones"], prod["zones"]) {
		d, _ := json.MarshalIndent(dev["zones"], "", " ")
		p, _ := json.MarshalIndent(prod["zones"], "", " ")
		t.Errorf("production.Caddyfile's zones differ from dev.Caddyfile's:\ndev %s\nproduction %s", d, p)
	}
}

// TestEveryLogIsScrubbed: in every Caddyfile of the project, every logger (Caddy's default
// one, which http.log.error writes the request to, and each access log) encodes through
// pii_scrub.
func TestEveryLogIsScrubbed(t *testing.T) {
	for _, f := range append(caddyfiles(t), "../docker/compose.Caddyfile") {
		logs, _ := adapt(t, f)["logging"].(map[string]any)["logs"].(map[string]any)
		if _, ok := logs["default"]; !ok {
			t.Errorf("%s: no default logger configured: Caddy's default writes unscrubbed JSON", f)
		}
		for name, l := range logs {
			enc, _ := l.(map[string]any)["encoder"].(map[string]any)
			if enc["format"] != "pii_scrub" {
				t.Errorf("%s: logger %q encodes with %v, want pii_scrub", f, name, enc["format"])
			}
		}
	}
}

// TestProductionCaddyfile checks what production.Caddyfile adapts to, with the environment
// ECS gives the edge task.
func TestProductionCaddyfile(t *testing.T) {
	const f = "production.Caddyfile"
	cfg := adapt(t, f,
		"EDGE_BIND=0.0.0.0",
		"EDGE_METRICS_BIND=10.0.3.7",
		"EDGE_TRUSTED_PROXIES=10.0.0.0/24 10.0.1.0/24",
		"VALKEY_CLUSTER=on",
		"VALKEY_TLS=on",
		"JWKS_URL=https://id.example.test/jwks.json",
		"JWT_ISSUER=https://id.example.test/",
		"VALKEY_ADDR=valkey.muejam.internal:6379",
		"EDGE_EXPECTED_NODES=5",
		"APP_UPSTREAMS=10.0.1.5:8081 10.0.2.5:8081",
		"PII_PSEUDONYM_KEY=must-never-appear-in-the-config",
		"CDN_ORIGIN_SECRET=must-never-appear-in-the-config-either",
		"VALKEY_PASSWORD=nor-the-valkey-token",
		"READ_YOUR_WRITES_KEY=and-not-the-read-your-writes-key",
	)
	raw, _ := json.Marshal(cfg)
	for _, secret := range []string{"must-never-appear-in-the-config", "nor-the-valkey-token", "and-not-the-read-your-writes-key"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("%s writes a secret (%s) into the adapted config: read secrets at run time with {env.NAME}", f, secret)
		}
	}
	str := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	srv := testenv.JSONAt(cfg, "apps", "http", "servers", "srv0")
	metricsSrv := testenv.JSONAt(cfg, "apps", "http", "servers", "srv1")
	for _, c := range []struct {
		what string
		got  any
		want string
	}{
		{"admin on loopback", testenv.JSONAt(cfg, "admin", "listen"), `"localhost:2019"`},
		{"site", testenv.JSONAt(srv, "listen"), `["0.0.0.0:8080"]`},
		{"metrics listener", testenv.JSONAt(metricsSrv, "listen"), `["10.0.3.7:9180"]`},
		{"metrics listener serves metrics only", testenv.JSONAt(metricsSrv, "routes"), `[{"handle":[{"handler":"metrics"}]}]`},
		{"read header timeout", testenv.JSONAt(srv, "read_header_timeout"), `5000000000`},
		{"read timeout", testenv.JSONAt(srv, "read_timeout"), `10000000000`},
		{"client address", testenv.JSONAt(adapttest.Handler(t, f, cfg, "client_address"), "secrets"), `["{env.CDN_ORIGIN_SECRET}"]`},
		{"client address required", testenv.JSONAt(adapttest.Handler(t, f, cfg, "client_address"), "require"), `true`},
		{"metrics per host", testenv.JSONAt(cfg, "apps", "http", "metrics", "per_host"), `true`},
		{"trusted proxies", testenv.JSONAt(srv, "trusted_proxies"), `{"ranges":["10.0.0.0/24","10.0.1.0/24"],"source":"static"}`},
		{"client IP header", testenv.JSONAt(srv, "client_ip_headers"), `["X-Forwarded-For"]`},
		{"access log encoder", testenv.JSONAt(cfg, "logging", "logs", "log0", "encoder"), `{"format":"pii_scrub","modes":{"email":"pseudonym"},"pseudonym_key":"{env.PII_PSEUDONYM_KEY}","wrap":{"format":"json"}}`},
		{"jwt", testenv.JSONAt(adapttest.Handler(t, f, cfg, "authentication"), "providers", "jwt"), `{"allow_anonymous":true,"audiences":["muejam-edge"],"issuers":["https://id.example.test/"],"jwks_url":"https://id.example.test/jwks.json"}`},
		{"valkey", testenv.JSONAt(adapttest.Handler(t, f, cfg, "edge_rate_limit"), "valkey"), `{"addresses":["valkey.muejam.internal:6379"],"cluster":true,"password":"{env.VALKEY_PASSWORD}","tls":{}}`},
		{"fallback share", testenv.JSONAt(adapttest.Handler(t, f, cfg, "edge_rate_limit"), "fallback_share"), `5`},
		{"upstreams", testenv.JSONAt(adapttest.Handler(t, f, cfg, "reverse_proxy"), "upstreams"), `[{"dial":"10.0.1.5:8081"},{"dial":"10.0.2.5:8081"}]`},
		{"passive health only", testenv.JSONAt(adapttest.Handler(t, f, cfg, "reverse_proxy"), "health_checks"), `{"passive":{"fail_duration":1000000000}}`},
		{"transport", testenv.JSONAt(adapttest.Handler(t, f, cfg, "reverse_proxy"), "transport", "protocol"), `"circuit_breaker"`},
		{"lb_retries", testenv.JSONAt(adapttest.Handler(t, f, cfg, "reverse_proxy"), "load_balancing", "retries"), `2`},
	} {
		if got := str(c.got); got != c.want {
			t.Errorf("%s: %s is %s, want %s", f, c.what, got, c.want)
		}
	}
	if len(adapttest.Handlers(cfg, "circuit_breaker")) != 1 {
		t.Errorf("%s: no circuit_breaker handler in front of reverse_proxy", f)
	}
	// X-Auth-User comes only from the verified token: whatever the client sent is replaced
	// (after authentication, before the cache, which Varies on it).
	// One request id: in the access log and on every response (deferred, over the cached
	// and the app's), besides the X-Request-Id sent to the app server.
	var authUser, requestID []string
	for _, h := range adapttest.Handlers(cfg, "headers") {
		if v := testenv.JSONAt(h, "request", "set", "X-Auth-User"); v != nil {
			authUser = append(authUser, str(v))
		}
		if testenv.JSONAt(h, "response", "deferred") == true {
			requestID = append(requestID, str(testenv.JSONAt(h, "response", "set", "X-Request-Id")))
		}
	}
	if !slices.Equal(authUser, []string{`["{http.auth.user.id}"]`}) {
		t.Errorf("%s: request_header sets X-Auth-User to %v", f, authUser)
	}
	if !slices.Equal(requestID, []string{`["{http.request.uuid}"]`}) {
		t.Errorf("%s: response X-Request-Id %v, want {http.request.uuid}", f, requestID)
	}
	if got := str(testenv.JSONAt(adapttest.Handler(t, f, cfg, "log_append"), "value")); got != `"{http.request.uuid}"` {
		t.Errorf("%s: log_append value %s, want the request id", f, got)
	}
	cache := adapttest.Handler(t, f, cfg, "edge_cache")
	if got := str(testenv.JSONAt(cache, "valkey")); got != `{"addresses":["valkey.muejam.internal:6379"],"cluster":true,"password":"{env.VALKEY_PASSWORD}","tls":{}}` {
		t.Errorf("%s: edge_cache valkey %s", f, got)
	}
	// Only a valid read-your-writes token skips the lookup: verified with the app server's
	// key (and the previous one), read at run time; never the development key.
	if got := str(testenv.JSONAt(cache, "bypass")); got != `[{"read_your_writes":{"keys":["{env.READ_YOUR_WRITES_KEY}","{env.READ_YOUR_WRITES_KEY_PREVIOUS}"]}}]` {
		t.Errorf("%s: edge_cache bypass %s, want read_your_writes with the keys of the environment alone", f, got)
	}
	// The order that makes stale-if-error work while the breaker is open: the cache wraps
	// the breaker, which wraps the proxy.
	order := adapttest.HandlerOrder(cfg)
	if !(slices.Index(order, "headers") < slices.Index(order, "edge_cache") &&
		slices.Index(order, "edge_cache") < slices.Index(order, "circuit_breaker") &&
		slices.Index(order, "circuit_breaker") < slices.Index(order, "reverse_proxy")) {
		t.Errorf("%s: handler order %v, want headers < edge_cache < circuit_breaker < reverse_proxy", f, order)
	}
}
