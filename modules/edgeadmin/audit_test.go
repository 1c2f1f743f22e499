package edgeadmin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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
	if l := logs.TakeAll(); len(l) != 1 || l[0].ContextMap()["action"] != "config.load" {
		t.Errorf("config load: %+v", l)
	}
}
