package edgeadmin

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/muejam/edge/internal/testenv/testcaddy"
)

func TestAdminActionsAreAudited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	old := auditLog
	auditLog = func() *zap.Logger { return zap.New(core).Named(AuditLogger) }
	t.Cleanup(func() { auditLog = old })

	ok := audited(caddy.AdminHandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	missing := audited(caddy.AdminHandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddy.APIError{HTTPStatus: http.StatusNotFound}
	}))
	for _, c := range []struct {
		h            caddy.AdminHandler
		method, path string
		want         map[string]any // nil: no event
	}{
		{ok, "POST", "/edge/cache/purge", map[string]any{"action": "cache.purge", "outcome": "success", "caller": "192.0.2.1:1234"}},
		{ok, "POST", "/edge/breakers/app/v1/open", map[string]any{"action": "breakers.open", "target": "app/v1", "outcome": "success"}},
		{missing, "POST", "/edge/breakers/nope/reset", map[string]any{"action": "breakers.reset", "target": "nope", "outcome": "failure", "status": int64(404)}},
		{ok, "GET", "/edge/breakers", nil},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		_ = c.h.ServeHTTP(httptest.NewRecorder(), r)
		lines := logs.TakeAll()
		if c.want == nil {
			if len(lines) != 0 {
				t.Errorf("%s %s: %d lines", c.method, c.path, len(lines))
			}
			continue
		}
		if len(lines) != 1 || lines[0].LoggerName != AuditLogger {
			t.Fatalf("%s %s: %+v", c.method, c.path, lines)
		}
		f := lines[0].ContextMap()
		for k, v := range c.want {
			if f[k] != v {
				t.Errorf("%s %s: %s = %v, want %v", c.method, c.path, k, f[k], v)
			}
		}
	}
	if err := (Admin{}).Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if l := logs.TakeAll(); len(l) != 1 || l[0].ContextMap()["action"] != "config.load" || l[0].ContextMap()["outcome"] != "started" {
		t.Errorf("config load: %+v", l)
	}
}

// auditLines returns the audit events in the JSON log file at path.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	for line := range strings.Lines(string(data)) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e["logger"] == AuditLogger {
			events = append(events, e)
		}
	}
	return events
}

// TestConfigLoadsAuditedThroughCaddyAdmin loads configs through a real Caddy's admin API,
// its default log written to a file: a POST /load that succeeds and one that fails are
// audited with their caller (the admin client's address) and outcome; a change through
// /config/ is audited when its load starts, without a caller; a GET changes nothing and is
// not audited.
func TestConfigLoadsAuditedThroughCaddyAdmin(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	config := func(apps string) string {
		return fmt.Sprintf(`{
			"admin": {"listen": "localhost:%d"},
			"logging": {"logs": {"default": {"writer": {"output": "file", "filename": %q}, "encoder": {"format": "json"}}}},
			"apps": %s
		}`, testcaddy.AdminPort, logFile, apps)
	}
	testcaddy.Load(t, config(fmt.Sprintf(`{"http": {"http_port": %d, "https_port": %d, "servers": {"edge": {"listen": ["127.0.0.1:%d"],
		"routes": [{"handle": [{"handler": "static_response", "body": "v1"}]}]}}}}`, testcaddy.HTTPPort, testcaddy.HTTPSPort, testcaddy.HTTPPort)), "json")

	send := func(method, path, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, testcaddy.AdminURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := send("POST", "/load", config(`{"no_such_app": {}}`)); status != http.StatusBadRequest {
		t.Errorf("POST /load of a bad config: %d, want 400", status)
	}
	if status := send("PATCH", "/config/apps/http/servers/edge/routes/0/handle/0/body", `"v2"`); status != http.StatusOK {
		t.Errorf("PATCH /config/...: %d, want 200", status)
	}
	if status := send("GET", "/load", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /load: %d, want 405", status)
	}

	events := auditLines(t, logFile)
	want := []map[string]any{
		{"action": "config.load", "method": "POST", "outcome": "success"}, // InitServer's
		{"action": "config.load", "method": "POST", "outcome": "failure", "status": float64(400)},
		{"action": "config.load", "outcome": "started"},
	}
	if len(events) != len(want) {
		t.Fatalf("audit events %v, want %d", events, len(want))
	}
	for i, w := range want {
		for k, v := range w {
			if events[i][k] != v {
				t.Errorf("event %d: %s = %v, want %v (%v)", i, k, events[i][k], v, events[i])
			}
		}
		caller, _ := events[i]["caller"].(string)
		if w["method"] == nil {
			if caller != "" {
				t.Errorf("event %d names a caller: %v", i, events[i])
			}
			continue
		}
		host, _, err := net.SplitHostPort(caller)
		if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.IsLoopback() {
			t.Errorf("event %d: caller %q, want the test's loopback address", i, caller)
		}
	}
}
