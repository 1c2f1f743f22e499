// Package edgeadmin provides admin.api.edge, the /edge/ endpoints of MueJam Edge on Caddy's
// admin API.
package edgeadmin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// ModulePrefix is the Go import path prefix of MueJam Edge's own packages; the Caddy modules
// registered from packages under it are the ones /edge/status lists.
const ModulePrefix = "github.com/muejam/edge/"

// Admin is admin.api.edge: it serves GET /edge/status on Caddy's admin endpoint with the
// build information of the running binary and the Caddy modules MueJam Edge compiled in, and
// the /edge/ routes other MueJam modules register with Register (breakers, limiter state,
// purge). Caddy loads every admin.api module by itself; there is nothing to configure.
type Admin struct{}

var (
	routesMu sync.Mutex
	routes   []caddy.AdminRoute
)

// Register adds a route under /edge/ to admin.api.edge. Packages call it from init; a
// pattern outside /edge/ or registered twice panics, as a programming error.
func Register(pattern string, h caddy.AdminHandler) {
	routesMu.Lock()
	defer routesMu.Unlock()
	if !strings.HasPrefix(pattern, "/edge/") {
		panic("edgeadmin: route " + pattern + " is outside /edge/")
	}
	if pattern == "/edge/status" || slices.ContainsFunc(routes, func(r caddy.AdminRoute) bool { return r.Pattern == pattern }) {
		panic("edgeadmin: route " + pattern + " registered twice")
	}
	routes = append(routes, caddy.AdminRoute{Pattern: pattern, Handler: h})
}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.edge",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes returns the /edge/ routes of the admin API and Caddy's own POST /load, the
// changes they make audited (see AuditLogger).
func (Admin) Routes() []caddy.AdminRoute {
	routesMu.Lock()
	defer routesMu.Unlock()
	all := []caddy.AdminRoute{{
		Pattern: "/edge/status",
		Handler: caddy.AdminHandlerFunc(handleStatus),
	}}
	for _, r := range routes {
		all = append(all, caddy.AdminRoute{Pattern: r.Pattern, Handler: audited(r.Handler)})
	}
	if load, ok := loadRoute(); ok {
		all = append(all, load)
	}
	return all
}

// Status is the body of GET /edge/status.
type Status struct {
	// CaddyVersion is the version of Caddy compiled into the binary.
	CaddyVersion string `json:"caddy_version"`
	// GoVersion is the Go release the binary was built with.
	GoVersion string `json:"go_version"`
	// Edge is the MueJam Edge Go module the binary was built from.
	Edge ModuleVersion `json:"edge"`
	// Modules lists the Caddy modules of MueJam Edge registered in this binary, sorted by ID.
	Modules []ModuleInfo `json:"modules"`
}

// ModuleVersion names a Go module and the version the binary carries.
type ModuleVersion struct {
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
	// Replace is the local directory or module that replaced Path at build time, if any.
	Replace string `json:"replace,omitempty"`
}

// ModuleInfo names one Caddy module and the Go package that registers it.
type ModuleInfo struct {
	ID      string `json:"id"`
	Package string `json:"package"`
}

func handleStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(CurrentStatus())
}

// CurrentStatus reports the build and the MueJam Edge modules of the running binary.
func CurrentStatus() Status {
	_, caddyVersion := caddy.Version()
	st := Status{
		CaddyVersion: caddyVersion,
		Edge:         ModuleVersion{Path: strings.TrimSuffix(ModulePrefix, "/")},
		Modules:      EdgeModules(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		st.GoVersion = bi.GoVersion
		mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
		for _, m := range mods {
			if m.Path != st.Edge.Path {
				continue
			}
			st.Edge.Version = m.Version
			if m.Replace != nil {
				st.Edge.Replace = m.Replace.Path
			}
		}
	}
	return st
}

// EdgeModules lists the registered Caddy modules whose Go package lies under ModulePrefix,
// sorted by ID as caddy.Modules returns them.
func EdgeModules() []ModuleInfo {
	mods := []ModuleInfo{}
	for _, id := range caddy.Modules() {
		info, err := caddy.GetModule(id)
		if err != nil {
			continue
		}
		t := reflect.TypeOf(info.New())
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if pkg := t.PkgPath(); strings.HasPrefix(pkg, ModulePrefix) {
			mods = append(mods, ModuleInfo{ID: id, Package: pkg})
		}
	}
	return mods
}

// Interface guards
var _ caddy.AdminRouter = Admin{}
