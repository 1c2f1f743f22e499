package audit

import (
	"net/http"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
)

// Handler serves GET /v1/me/activity: the caller's own audit events, newest first,
// paginated like the other lists, private. The client address is left out.
type Handler struct {
	db  *dbrouter.Router
	log *zap.Logger
}

// New returns the activity handler, reading through db.
func New(db *dbrouter.Router, log *zap.Logger) *Handler { return &Handler{db: db, log: log} }

// Register adds GET /v1/me/activity to mux.
func (h *Handler) Register(mux api.Mux) {
	mux.Handle("GET /v1/me/activity", api.RequireUser(api.Handle(h.log, h.list)))
}

const entryColumns = `id, at, actor, action, target_type, target_id, outcome, request_id, client, before, after`

// activitySQL selects the events of actor $1 before id $2 unless it is 0, newest first, at
// most $3.
const activitySQL = `select ` + entryColumns + ` from audit_events
	where actor = $1 and ($2::bigint = 0 or id < $2) order by id desc limit $3`

// activityCursor is the position in a list of events (newest first).
type activityCursor struct {
	ID int64 `json:"id"`
}

func scanEntry(row pgx.CollectableRow) (Entry, error) {
	var e Entry
	err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target.Type, &e.Target.ID, &e.Outcome,
		&e.RequestID, &e.Client, &e.Before, &e.After)
	return e, err
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	var after activityCursor
	if _, err := page.After(&after); err != nil {
		return err
	}
	rows, err := h.db.Reader(ctx).Query(ctx, activitySQL, uid, after.ID, page.Limit+1)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return err
	}
	for i := range list {
		list[i].Client = nil
	}
	list, next := api.Trim(page, list, func(e Entry) any { return activityCursor{e.ID} })
	api.WriteList(w, r, list, next)
	return nil
}
