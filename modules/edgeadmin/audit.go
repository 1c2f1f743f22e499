package edgeadmin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// AuditLogger is the name of the Caddy logger of the edge's audit events: one line ("admin
// action") for each change made through the /edge/ admin routes (cache purges, breakers
// opened, closed or reset) and each config load. Route it to its own sink with a Caddyfile
// `log` block naming `include muejam.audit`.
const AuditLogger = "muejam.audit"

// auditLog returns the audit logger; tests replace it.
var auditLog = func() *zap.Logger { return caddy.Log().Named(AuditLogger) }

// Provision is called by Caddy each time it loads a config (it builds its admin endpoint
// anew each time): the audit event config.load.
func (Admin) Provision(caddy.Context) error {
	auditLog().Info("admin action", zap.String("action", "config.load"), zap.String("outcome", "success"))
	return nil
}

// audited returns h writing an audit event for each request that may change something
// (any method but GET, HEAD and OPTIONS): the action and target from the path
// (/edge/cache/purge is cache.purge; /edge/breakers/NAME/open is breakers.open on NAME),
// the caller's address, and the outcome with the status of a failure.
func audited(h caddy.AdminHandler) caddy.AdminHandler {
	return caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return h.ServeHTTP(w, r)
		}
		err := h.ServeHTTP(w, r)
		action, target := auditAction(r.URL.Path)
		fields := []zap.Field{zap.String("action", action), zap.String("caller", r.RemoteAddr), zap.String("method", r.Method)}
		if target != "" {
			fields = append(fields, zap.String("target", target))
		}
		if err == nil {
			fields = append(fields, zap.String("outcome", "success"))
		} else {
			status := http.StatusInternalServerError
			var ae caddy.APIError
			if errors.As(err, &ae) && ae.HTTPStatus != 0 {
				status = ae.HTTPStatus
			}
			fields = append(fields, zap.String("outcome", "failure"), zap.Int("status", status))
		}
		auditLog().Info("admin action", fields...)
		return err
	})
}

// auditAction names the action and target of an /edge/ path: its first and last segments
// joined by a dot, and the segments between them.
func auditAction(path string) (action, target string) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(path, "/edge/"), "/"), "/")
	if len(parts) < 3 {
		return strings.Join(parts, "."), ""
	}
	return parts[0] + "." + parts[len(parts)-1], strings.Join(parts[1:len(parts)-1], "/")
}
