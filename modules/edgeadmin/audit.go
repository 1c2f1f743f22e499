package edgeadmin

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"

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

// loadsAudited counts the POST /load requests in flight through loadRoute, whose config
// loads their own audit event names with caller and outcome.
var loadsAudited atomic.Int64

// Provision is called by Caddy each time it loads a config, before the config's apps are
// provisioned (it builds its admin endpoint anew each time). A load made through POST
// /load is audited by loadRoute, with its caller and outcome; any other (the process
// starting, a change through /config/ or /id/, a config loader) is audited here, as
// config.load with the outcome "started" and no caller: Caddy gives admin modules no hook
// around those requests, and its own admin.api log names their caller and any failure.
func (Admin) Provision(caddy.Context) error {
	if loadsAudited.Load() == 0 {
		auditLog().Info("admin action", zap.String("action", "config.load"), zap.String("outcome", "started"))
	}
	return nil
}

// loadRoute returns the route "POST /load" serving Caddy's own POST /load (the handler of
// the admin.api.load module, which `caddy reload` and `caddy load` call), audited. Go's
// ServeMux prefers it to admin.api.load's "/load" for POST, the one method /load accepts;
// other methods still reach Caddy's handler. ok is false when the binary has no
// admin.api.load.
func loadRoute() (route caddy.AdminRoute, ok bool) {
	info, err := caddy.GetModule("admin.api.load")
	if err != nil {
		return route, false
	}
	router, isRouter := info.New().(caddy.AdminRouter)
	if !isRouter {
		return route, false
	}
	for _, r := range router.Routes() {
		if r.Pattern == "/load" {
			h := audited(r.Handler)
			return caddy.AdminRoute{Pattern: "POST /load", Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, req *http.Request) error {
				loadsAudited.Add(1)
				defer loadsAudited.Add(-1)
				return h.ServeHTTP(w, req)
			})}, true
		}
	}
	return route, false
}

// audited returns h writing an audit event for each request that may change something
// (any method but GET, HEAD and OPTIONS): the action and target from the path (see
// auditAction), the caller's address, and the outcome with the status of a failure.
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

// auditAction names the action and target of an audited path: config.load for /load; for
// an /edge/ path, its first and last segments joined by a dot, and the segments between
// them (/edge/cache/purge is cache.purge; /edge/breakers/NAME/open is breakers.open on NAME).
func auditAction(path string) (action, target string) {
	if path == "/load" {
		return "config.load", ""
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(path, "/edge/"), "/"), "/")
	if len(parts) < 3 {
		return strings.Join(parts, "."), ""
	}
	return parts[0] + "." + parts[len(parts)-1], strings.Join(parts[1:len(parts)-1], "/")
}
