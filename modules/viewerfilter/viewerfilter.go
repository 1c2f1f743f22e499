// Package viewerfilter provides http.handlers.viewer_filter, the `viewer_filter` directive of
// MueJam Edge: it tells the app server, and the cache in front of it, whose blocks filter the
// answer a request gets, so that a signed-in reader who blocks nobody is answered from the
// one cached copy anonymous readers share instead of being passed to the app.
//
// The app's shared answers (feeds, search, whispers) hide, for a signed-in reader, the
// authors that reader blocked; for anyone who blocks nobody they are the anonymous answer,
// byte for byte. The app marks them public with Vary: X-Viewer-Filter, and this handler sets
// X-Viewer-Filter on every request (replacing whatever the client sent): empty for an
// anonymous request and for a verified user the edge knows to block nobody, the user's id
// otherwise. edge_cache then keeps one entry (the empty value) for all of them, and a
// reader who blocks anyone never matches it. The edge knows who blocks anyone from the set
// the app server keeps in Valkey (internal/blockers): every node holds it in memory, and the
// app adds a user, acknowledged by every node, before their first block commits. While the
// set is not trusted (not loaded, its marker changed, Valkey unreachable) every signed-in
// request carries its user's id, as without this handler.
//
// Caddyfile (ordered after request_header, so after authentication):
//
//	viewer_filter {
//		valkey <host:port...> { ... }   # the Valkey the app server writes the set to (required)
//		header <field>                  # default X-Viewer-Filter
//	}
//
// Without this handler a Caddyfile that caches the app's shared answers sets the field to the
// user id (request_header X-Viewer-Filter {http.auth.user.id}): each signed-in reader's answer
// comes from the app.
package viewerfilter

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/blockers"
	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/promreg"
	"github.com/muejam/edge/internal/valkeyconn"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// DefaultHeader is the default of Handler.Header.
const DefaultHeader = "X-Viewer-Filter"

// Handler is http.handlers.viewer_filter.
type Handler struct {
	// Valkey is the Valkey (or Redis) server or cluster the app server keeps the set of users
	// who block anyone in. Required.
	Valkey *valkeyconn.Config `json:"valkey,omitempty"`
	// Header is the request field set. Default: X-Viewer-Filter.
	Header string `json:"header,omitempty"`

	follower *blockers.Follower
	key      string
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.viewer_filter",
		New: func() caddy.Module { return new(Handler) },
	}
}

// decisions counts the handler's decisions: anonymous, shared (a user known to block
// nobody), blocker (a user in the set) and untrusted (a user, while the set is not trusted).
var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "muejam", Subsystem: "edge", Name: "viewer_filter_total",
	Help: "Requests by what viewer_filter decided: anonymous, shared (a user who blocks nobody: the anonymous answer), blocker (a user who blocks someone: their own answer) or untrusted (a user, while the set of blockers is not trusted).",
}, []string{"decision"})

// followers share one Follower per Valkey between the handlers of successive configs, so
// that a reload does not leave the set untrusted while a new one loads.
var followers = caddy.NewUsagePool()

// pooled is a Follower and the connection it follows the set on.
type pooled struct {
	*blockers.Follower
	conn *valkeyconn.Conn
}

// Destruct stops following and closes the connection.
func (p pooled) Destruct() error {
	p.Close()
	p.conn.Close()
	return nil
}

// Provision starts following the set (or joins the Follower an earlier config started).
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.Header == "" {
		h.Header = DefaultHeader
	}
	if !h.Valkey.Configured() {
		return errors.New("viewer_filter: valkey is required")
	}
	for _, d := range []string{"anonymous", "shared", "blocker", "untrusted"} {
		decisions.WithLabelValues(d)
	}
	if err := promreg.Register(ctx.GetMetricsRegistry(), decisions); err != nil {
		return err
	}
	if err := panics.Register(ctx.GetMetricsRegistry(), blockers.WhereSubscriber, blockers.WhereAck, blockers.WhereCheck); err != nil {
		return err
	}
	cfg := h.Valkey.Replace(cfgarg.Placeholders)
	logger := ctx.Logger()
	h.key = cfg.Key()
	v, _, err := followers.LoadOrNew(h.key, func() (caddy.Destructor, error) {
		conn, err := valkeyconn.New(cfg, valkeyconn.Options{Name: "viewer_filter valkey " + cfg.String(), Logger: logger})
		if err != nil {
			return nil, err
		}
		f := blockers.NewFollower(conn, logger.With(zap.String("valkey", cfg.String())))
		return pooled{Follower: f, conn: conn}, nil
	})
	if err != nil {
		return err
	}
	h.follower = v.(pooled).Follower
	return nil
}

// Cleanup releases the Follower.
func (h *Handler) Cleanup() error {
	if h.follower == nil {
		return nil
	}
	_, err := followers.Delete(h.key)
	return err
}

// ServeHTTP sets the field and passes the request on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	user, _ := repl.GetString("http.auth.user.id")
	var d string
	switch {
	case user == "":
		d = "anonymous"
	case h.follower.Shares(user):
		d, user = "shared", ""
	case h.follower.Trusted():
		d = "blocker"
	default:
		d = "untrusted"
	}
	decisions.WithLabelValues(d).Inc()
	r.Header.Set(h.Header, user)
	return next.ServeHTTP(w, r)
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
