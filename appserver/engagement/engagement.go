// Package engagement records the engagement the trending scores are computed from: likes
// and reads of published stories (package trending computes the scores).
//
// Likes and reads change nothing a client reads at once (trending changes when the job
// runs), so their answers carry no read-your-writes token: readers keep being served from
// the replicas and the edge's cache.
//
//	PUT    /v1/stories/{id}/like    like a story (idempotent)         signed in
//	DELETE /v1/stories/{id}/like    take the like back (idempotent)   signed in
//	POST   /v1/stories/{id}/reads   record a read                     anyone
package engagement

import (
	"context"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/appserver/storylist"
)

// Handler serves the engagement routes.
type Handler struct {
	db  *dbrouter.Router
	log *zap.Logger
}

// New returns the engagement handlers, writing through db.
func New(db *dbrouter.Router, log *zap.Logger) *Handler {
	return &Handler{db: db, log: log}
}

// Register adds the engagement routes to mux.
func (h *Handler) Register(mux api.Mux) {
	handle := func(f api.Handler) http.Handler { return api.Handle(h.log, f) }
	mux.Handle("PUT /v1/stories/{id}/like", api.RequireUser(handle(h.setLike(true))))
	mux.Handle("DELETE /v1/stories/{id}/like", api.RequireUser(handle(h.setLike(false))))
	mux.Handle("POST /v1/stories/{id}/reads", handle(h.read))
}

// publicStory is a CTE naming story $1 when anyone may see it.
const publicStory = `with story as (select s.id from stories s where s.id = $1 and ` + storylist.Public + `)`

// Statements of the engagement routes, on story $1 and user $2: each answers whether the
// story is public, and changes nothing when it is not.
const (
	likeSQL = publicStory + `, liked as (insert into story_likes (story_id, user_id)
		select id, $2::text from story on conflict do nothing)
		select exists (select 1 from story)`
	unlikeSQL = publicStory + `, unliked as (delete from story_likes l
		using story where l.story_id = story.id and l.user_id = $2)
		select exists (select 1 from story)`
	// readSQL counts a signed-in user's reads of a story once per UTC hour.
	readSQL = publicStory + `, counted as (insert into story_reads (story_id, user_id)
		select id, $2::text from story
		on conflict (story_id, user_id, (date_trunc('hour', read_at at time zone 'UTC'))) where user_id is not null do nothing)
		select exists (select 1 from story)`
)

// setLike returns the handler that records the caller's like of a public story (like) or
// takes it back (!like). Both are idempotent: liking twice is liking once, and unliking a
// story not liked changes nothing. Only a like needs the caller's profile, made at their
// first sight.
func (h *Handler) setLike(like bool) api.Handler {
	sql, action := unlikeSQL, "story.unlike"
	if like {
		sql, action = likeSQL, "story.like"
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		uid, _ := identity.User(ctx)
		id, err := api.PathID(r, "id")
		if err != nil {
			return err
		}
		if _, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
			if like {
				if _, err := profiles.Ensure(ctx, tx, uid); err != nil {
					return err
				}
			}
			return engage(ctx, tx, sql, action, id, uid)
		}); err != nil {
			return err
		}
		done(w)
		return nil
	}
}

// engage runs sql, likeSQL or unlikeSQL, on story id for user uid in tx, and records the
// audit event action; api.ErrNotFound when the story is not public.
func engage(ctx context.Context, tx pgx.Tx, sql, action string, id int64, uid string) error {
	var found bool
	if err := tx.QueryRow(ctx, sql, id, uid).Scan(&found); err != nil {
		return err
	}
	if !found {
		return api.ErrNotFound
	}
	return audit.Record(ctx, tx, audit.Event{Action: action, TargetType: "story", TargetID: strconv.FormatInt(id, 10)})
}

// read records a read of a public story: every anonymous read, and a signed-in user's
// reads once per story and UTC hour. It is one statement on the primary.
func (h *Handler) read(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var user *string
	if uid, ok := identity.User(ctx); ok {
		user = &uid
	}
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	var found bool
	if err := h.db.Primary().QueryRow(ctx, readSQL, id, user).Scan(&found); err != nil {
		return err
	}
	if !found {
		return api.ErrNotFound
	}
	done(w)
	return nil
}

// done answers an engagement write that succeeded: 204.
func done(w http.ResponseWriter) {
	api.Private(w)
	w.WriteHeader(http.StatusNoContent)
}
