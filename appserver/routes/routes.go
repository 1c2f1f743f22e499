// Package routes is the app server's API surface: Register adds every route to a mux. The
// OpenAPI document (appserver/openapi/openapi.yaml) lists the same routes, and the contract
// tests (appserver/contract, a module of their own for the OpenAPI libraries) check both ways.
package routes

import (
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/discover"
	"github.com/muejam/edge/appserver/engagement"
	"github.com/muejam/edge/appserver/health"
	"github.com/muejam/edge/appserver/library"
	"github.com/muejam/edge/appserver/openapi"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/appserver/search"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/stories"
	"github.com/muejam/edge/appserver/whispers"
)

// Register adds every route of the app server to mux, each as "METHOD /v1/...".
func Register(mux api.Mux, hc *health.Checker, db *dbrouter.Router, shared *sharedlist.Shared, log *zap.Logger) {
	mux.Handle("GET /v1/health", hc)
	mux.Handle("GET /v1/openapi.json", openapi.Handler())
	profiles.New(db, log).Register(mux)                // /v1/me, /v1/users/{handle}
	stories.New(db, log).Register(mux)                 // /v1/stories/..., /v1/me/stories
	social.New(db, log, shared.Blockers).Register(mux) // /v1/users/{handle}/follow|block, /v1/me/following|followers|blocks
	library.New(db, log).Register(mux)                 // /v1/library/...
	whispers.New(db, log, shared).Register(mux)        // /v1/whispers/..., /v1/stories/{id}/whispers
	discover.New(db, log, shared).Register(mux)        // /v1/discover
	engagement.New(db, log).Register(mux)              // /v1/stories/{id}/like, /v1/stories/{id}/reads
	search.New(db, log, shared).Register(mux)          // /v1/search, /v1/search/suggest
	audit.New(db, log).Register(mux)                   // /v1/me/activity
}
