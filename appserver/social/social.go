// Package social serves follows and blocks between users, and tells other packages whose
// content a viewer has hidden by blocking its author (BlockIndex, NotBlocked, Blocked).
//
// A follow goes one way. A block removes the follows between the two users in both
// directions, in the same transaction, and refuses new ones while it lasts: the blocked user
// gets 403 blocked, the blocker 409 user_blocked. Follows and blocks of a pair of users are
// serialised by a transaction-level advisory lock on the pair, so a follow racing a block
// cannot outlive it. Every route needs a signed-in user and answers privately; PUT and DELETE
// are idempotent and answer 204. Block and unblock purge BlocksTag, the BlockIndex the
// lists computed for everyone are filtered with.
//
//	PUT    /v1/users/{handle}/follow   follow                                         signed in
//	DELETE /v1/users/{handle}/follow   unfollow                                       signed in
//	PUT    /v1/users/{handle}/block    block (and drop the follows both ways)         signed in
//	DELETE /v1/users/{handle}/block    unblock                                        signed in
//	GET    /v1/me/following            whom the caller follows, newest first          signed in
//	GET    /v1/me/followers            who follows the caller, newest first           signed in
//	GET    /v1/me/blocks               whom the caller blocked, newest first          signed in
package social

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/internal/blockers"
)

// Errors of this package.
var (
	ErrSelfFollow = &api.Error{Code: "self_follow", Message: "you cannot follow yourself"}
	ErrSelfBlock  = &api.Error{Code: "self_block", Message: "you cannot block yourself"}
	// ErrBlocked answers a user who acts on someone who blocked them (follow, reply, like).
	ErrBlocked     = &api.Error{Code: "blocked", Message: "this user has blocked you"}
	ErrUserBlocked = &api.Error{Code: "user_blocked", Message: "you have blocked this user; unblock them first"}
)

// pairLockClass is the first key of the advisory locks on pairs of users (the second is a
// hash of the pair). Two-key advisory locks never collide with one-key ones (migrate's).
const pairLockClass = 0x736f63 // "soc"

// NotBlocked returns an SQL condition that hides the content of authors the viewer blocked:
// it is false when the viewer blocked the author. author is the SQL expression of the
// author's user id (a column such as "s.author_id"), viewer that of the viewer's (usually a
// parameter such as "$2", holding "" for an anonymous viewer, who blocks no one). A response
// filtered with it depends on the viewer: it must be private for a signed-in one.
func NotBlocked(author, viewer string) string {
	return "not exists (select 1 from blocks hidden_by where hidden_by.blocker_id = " + viewer +
		" and hidden_by.blocked_id = " + author + ")"
}

// Blocked reports whether blocker blocked blocked.
func Blocked(ctx context.Context, q dbrouter.Querier, blocker, blocked string) (bool, error) {
	var b bool
	err := q.QueryRow(ctx, blockedSQL, blocker, blocked).Scan(&b)
	return b, err
}

// The queries of Blocked and pairTx.
const (
	blockedSQL      = "select exists (select 1 from blocks where blocker_id = $1 and blocked_id = $2)"
	userByHandleSQL = "select user_id from profiles where lower(handle) = lower($1)"
)

// Handler serves the follow and block routes.
type Handler struct {
	db       *dbrouter.Router
	log      *zap.Logger
	blockers *blockers.Writer
}

// New returns the follow and block handlers, reading and writing through db. When bw is
// not nil, a block first adds its user to the set of users who block anyone (and fails
// with 503 when that cannot be done), for the edge to stop answering them from the copy
// anonymous readers share.
func New(db *dbrouter.Router, log *zap.Logger, bw *blockers.Writer) *Handler {
	return &Handler{db: db, log: log, blockers: bw}
}

// ErrBlockersUnavailable answers a block while the set of users who block anyone cannot be
// updated (Valkey down): the block is not made, and may be retried.
var ErrBlockersUnavailable = &api.Error{Code: "unavailable", Message: "blocking is unavailable for a moment; retry",
	RetryAfter: 5 * time.Second}

// ListBlockers returns every user who blocks anyone.
func ListBlockers(ctx context.Context, q dbrouter.Querier) ([]string, error) {
	rows, err := q.Query(ctx, "select distinct blocker_id from blocks")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Register adds the follow and block routes to mux.
func (h *Handler) Register(mux api.Mux) {
	auth := func(f api.Handler) http.Handler { return api.RequireUser(api.Handle(h.log, f)) }
	mux.Handle("PUT /v1/users/{handle}/follow", auth(h.follow))
	mux.Handle("DELETE /v1/users/{handle}/follow", auth(h.unfollow))
	mux.Handle("PUT /v1/users/{handle}/block", auth(h.block))
	mux.Handle("DELETE /v1/users/{handle}/block", auth(h.unblock))
	mux.Handle("GET /v1/me/following", auth(h.list(following)))
	mux.Handle("GET /v1/me/followers", auth(h.list(followers)))
	mux.Handle("GET /v1/me/blocks", auth(h.list(blocked)))
}

// pairTx answers a change between the caller and the user named by the path's handle: fn
// runs in a transaction holding the pair's advisory lock. self is the error when both are
// the same user; an unknown handle is 404. A change that commits purges the cache tags in
// purge. The change is audited as action on the other user.
func (h *Handler) pairTx(w http.ResponseWriter, r *http.Request, action string, self error, purge []string, fn func(ctx context.Context, tx pgx.Tx, me, them string) error) error {
	ctx := r.Context()
	me, _ := identity.User(ctx)
	api.Private(w)
	handle := r.PathValue("handle")
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if !profiles.ValidHandle(handle) {
			return api.ErrNotFound
		}
		var them string
		err := tx.QueryRow(ctx, userByHandleSQL, handle).Scan(&them)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return api.ErrNotFound
		case err != nil:
			return err
		case them == me:
			return self
		}
		if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock($1, hashtext(least($2::text, $3::text) || '/' || greatest($2::text, $3::text)))",
			pairLockClass, me, them); err != nil {
			return err
		}
		if err := fn(ctx, tx, me, them); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Event{Action: action, TargetType: "user", TargetID: them})
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, purge...)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) follow(w http.ResponseWriter, r *http.Request) error {
	return h.pairTx(w, r, "user.follow", ErrSelfFollow, nil, func(ctx context.Context, tx pgx.Tx, me, them string) error {
		var theyBlock, iBlock bool
		err := tx.QueryRow(ctx, `select exists (select 1 from blocks where blocker_id = $2 and blocked_id = $1),
			exists (select 1 from blocks where blocker_id = $1 and blocked_id = $2)`, me, them).Scan(&theyBlock, &iBlock)
		switch {
		case err != nil:
			return err
		case theyBlock:
			return ErrBlocked
		case iBlock:
			return ErrUserBlocked
		}
		if _, err := profiles.Ensure(ctx, tx, me); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "insert into follows (follower_id, followee_id) values ($1, $2) on conflict do nothing", me, them)
		return err
	})
}

func (h *Handler) unfollow(w http.ResponseWriter, r *http.Request) error {
	return h.pairTx(w, r, "user.unfollow", ErrSelfFollow, nil, func(ctx context.Context, tx pgx.Tx, me, them string) error {
		_, err := tx.Exec(ctx, "delete from follows where follower_id = $1 and followee_id = $2", me, them)
		return err
	})
}

func (h *Handler) block(w http.ResponseWriter, r *http.Request) error {
	if h.blockers != nil {
		me, _ := identity.User(r.Context())
		if err := h.blockers.Add(r.Context(), me); err != nil {
			h.log.Warn("block refused: the edge could not be told", zap.Error(err))
			api.Private(w)
			return ErrBlockersUnavailable
		}
	}
	return h.pairTx(w, r, "user.block", ErrSelfBlock, []string{BlocksTag}, func(ctx context.Context, tx pgx.Tx, me, them string) error {
		if _, err := profiles.Ensure(ctx, tx, me); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "insert into blocks (blocker_id, blocked_id) values ($1, $2) on conflict do nothing", me, them); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `delete from follows where (follower_id = $1 and followee_id = $2)
			or (follower_id = $2 and followee_id = $1)`, me, them)
		return err
	})
}

func (h *Handler) unblock(w http.ResponseWriter, r *http.Request) error {
	return h.pairTx(w, r, "user.unblock", ErrSelfBlock, []string{BlocksTag}, func(ctx context.Context, tx pgx.Tx, me, them string) error {
		_, err := tx.Exec(ctx, "delete from blocks where blocker_id = $1 and blocked_id = $2", me, them)
		return err
	})
}

// User is another user in one of the caller's lists, with the time the relation began.
type User struct {
	Handle      string    `json:"handle"`
	DisplayName string    `json:"display_name"`
	Since       time.Time `json:"since"`
}

// relationCursor is the position in a list of users, newest relation first. The handle
// breaks ties of time; user ids are not shown to other users, so a cursor carries none.
type relationCursor struct {
	Since  time.Time `json:"t"`
	Handle string    `json:"h"`
}

// A relation is what a list shows: the rows of a table whose column of the caller is mine
// and whose column of the other user is theirs.
type relation struct{ table, mine, theirs string }

var (
	following = relation{"follows", "follower_id", "followee_id"}
	followers = relation{"follows", "followee_id", "follower_id"}
	blocked   = relation{"blocks", "blocker_id", "blocked_id"}
)

// query selects the users in relation rel with user $1, newest first, after the position
// ($2, $3) when $2 is not null, at most $4.
func (rel relation) query() string {
	return `select p.handle, p.display_name, x.created_at from ` + rel.table + ` x
		join profiles p on p.user_id = x.` + rel.theirs + `
		where x.` + rel.mine + ` = $1 and ($2::timestamptz is null or (x.created_at, lower(p.handle)) < ($2, lower($3)))
		order by x.created_at desc, lower(p.handle) desc limit $4`
}

// list serves the caller's users in relation rel, newest first.
func (h *Handler) list(rel relation) api.Handler {
	query := rel.query()
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		me, _ := identity.User(ctx)
		api.Private(w)
		page, err := api.ParsePage(r)
		if err != nil {
			return err
		}
		var after relationCursor
		more, err := page.After(&after)
		if err != nil {
			return err
		}
		var since *time.Time
		if more {
			since = &after.Since
		}
		rows, err := h.db.Reader(ctx).Query(ctx, query, me, since, after.Handle, page.Limit+1)
		if err != nil {
			return err
		}
		users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) {
			var u User
			return u, row.Scan(&u.Handle, &u.DisplayName, &u.Since)
		})
		if err != nil {
			return err
		}
		users, next := api.Trim(page, users, func(u User) any { return relationCursor{u.Since, u.Handle} })
		api.WriteList(w, r, users, next)
		return nil
	}
}
