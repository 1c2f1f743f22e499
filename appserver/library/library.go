// Package library serves each user's library: named shelves of stories.
//
// A shelf's name is unique among its owner's shelves in any letter case (409
// shelf_name_taken). A story can sit on many shelves; deleting a shelf deletes its items, not
// the stories. Only a story the caller may see can be added: published and not deleted, or
// the caller's own draft. A shelf shows the stories its owner may still see: one deleted
// after it was added drops out (its item stays, and can be removed).
//
// A library is its owner's alone: every route needs a signed-in user and answers privately;
// other users' shelves are 404. Nothing here is cached by the edge, so nothing is purged.
//
//	GET    /v1/library                                   the caller's shelves by name, paginated  signed in
//	POST   /v1/library/shelves                           create a shelf {"name"}                  signed in
//	GET    /v1/library/shelves/{id}                      a shelf                                  owner
//	PATCH  /v1/library/shelves/{id}                      rename a shelf {"name"}                  owner
//	DELETE /v1/library/shelves/{id}                      delete a shelf and its items             owner
//	GET    /v1/library/shelves/{id}/stories              its stories, last added first, paginated owner
//	PUT    /v1/library/shelves/{id}/stories/{story_id}   add a story (idempotent)                 owner
//	DELETE /v1/library/shelves/{id}/stories/{story_id}   remove a story (idempotent)              owner
//
// A shelf comes with story_count and its PreviewStories last added stories; the stories
// route pages through all of them.
package library

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/appserver/stories"
)

// MaxName bounds a shelf's name, in characters.
const MaxName = 100

// PreviewStories is how many of its last added stories a shelf comes with.
const PreviewStories = 20

// ErrShelfNameTaken answers a name the caller already gave a shelf, in any letter case.
var ErrShelfNameTaken = &api.Error{Code: "shelf_name_taken", Message: "you already have a shelf with that name",
	Details: map[string]string{"name": "is taken by another of your shelves"}}

// Shelf is one of the caller's shelves.
type Shelf struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	StoryCount int       `json:"story_count"`
	Stories    []Item    `json:"stories"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Item is a story on a shelf.
type Item struct {
	StoryID int64          `json:"story_id"`
	Title   string         `json:"title"`
	Author  stories.Author `json:"author"`
	Status  string         `json:"status"`
	AddedAt time.Time      `json:"added_at"`

	shelfID int64
}

// visible is the condition for story s to show on a shelf of owner $1: published and not
// deleted, or the owner's own and not deleted.
const visible = "s.deleted_at is null and (s.published_at is not null or s.author_id = $1)"

// shelfQuery selects the shelves of owner $1; the caller appends conditions and the order.
const shelfQuery = `select sh.id, sh.name, sh.created_at, sh.updated_at,
	(select count(*) from shelf_items si join stories s on s.id = si.story_id where si.shelf_id = sh.id and ` + visible + `)
	from shelves sh where sh.owner_id = $1 `

// libraryRest follows shelfQuery for a page of a library: the shelves after the name $2
// (in any letter case) unless it is null, at most $3.
const libraryRest = "and ($2::text is null or lower(sh.name) > lower($2)) order by lower(sh.name) limit $3"

// itemQuery selects up to $3 visible stories of each shelf of $2 (ids of shelves of owner
// $1), last added first, after the position ($4, $5) when $4 is not null.
const itemQuery = `select i.* from unnest($2::bigint[]) as sh (id) cross join lateral (
	select si.shelf_id, s.id, s.title, p.handle, p.display_name, s.published_at is not null, si.added_at
	from shelf_items si join stories s on s.id = si.story_id join profiles p on p.user_id = s.author_id
	where si.shelf_id = sh.id and ` + visible + ` and ($4::timestamptz is null or (si.added_at, si.story_id) < ($4, $5))
	order by si.added_at desc, si.story_id desc limit $3) i`

// itemCursor is the position in a shelf's list of stories.
type itemCursor struct {
	AddedAt time.Time `json:"t"`
	StoryID int64     `json:"s"`
}

// shelfCursor is the position in a library, by name in any letter case (unique per owner).
type shelfCursor struct {
	Name string `json:"n"`
}

// queryShelves runs shelfQuery followed by rest, with args as $2..., and fills in each
// shelf's preview.
func queryShelves(ctx context.Context, q dbrouter.Querier, owner, rest string, args ...any) ([]Shelf, error) {
	rows, err := q.Query(ctx, shelfQuery+rest, append([]any{owner}, args...)...)
	if err != nil {
		return nil, err
	}
	shelves, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Shelf, error) {
		sh := Shelf{Stories: []Item{}}
		return sh, row.Scan(&sh.ID, &sh.Name, &sh.CreatedAt, &sh.UpdatedAt, &sh.StoryCount)
	})
	if err != nil || len(shelves) == 0 {
		return shelves, err
	}
	ids := make([]int64, len(shelves))
	at := make(map[int64]*Shelf, len(shelves))
	for i := range shelves {
		ids[i] = shelves[i].ID
		at[shelves[i].ID] = &shelves[i]
	}
	items, err := queryItems(ctx, q, owner, ids, PreviewStories, nil)
	for _, it := range items {
		sh := at[it.shelfID]
		sh.Stories = append(sh.Stories, it)
	}
	return shelves, err
}

// queryItems returns up to limit visible stories of each of the shelves, after the position
// after if it is not nil.
func queryItems(ctx context.Context, q dbrouter.Querier, owner string, shelves []int64, limit int, after *itemCursor) ([]Item, error) {
	var since *time.Time
	var story int64
	if after != nil {
		since, story = &after.AddedAt, after.StoryID
	}
	rows, err := q.Query(ctx, itemQuery, owner, shelves, limit, since, story)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Item, error) {
		var it Item
		var published bool
		err := row.Scan(&it.shelfID, &it.StoryID, &it.Title, &it.Author.Handle, &it.Author.DisplayName, &published, &it.AddedAt)
		it.Status = stories.StatusDraft
		if published {
			it.Status = stories.StatusPublished
		}
		return it, err
	})
}

// getShelf returns the owner's shelf id; api.ErrNotFound when the owner has none.
func getShelf(ctx context.Context, q dbrouter.Querier, owner string, id int64) (Shelf, error) {
	shelves, err := queryShelves(ctx, q, owner, "and sh.id = $2", id)
	if err == nil && len(shelves) == 0 {
		err = api.ErrNotFound
	}
	if err != nil {
		return Shelf{}, err
	}
	return shelves[0], nil
}

// Handler serves the library routes.
type Handler struct {
	db  *dbrouter.Router
	log *zap.Logger
}

// New returns the library handlers, reading and writing through db.
func New(db *dbrouter.Router, log *zap.Logger) *Handler {
	return &Handler{db: db, log: log}
}

// Register adds the library routes to mux.
func (h *Handler) Register(mux api.Mux) {
	auth := func(f api.Handler) http.Handler { return api.RequireUser(api.Handle(h.log, f)) }
	mux.Handle("GET /v1/library", auth(h.library))
	mux.Handle("POST /v1/library/shelves", auth(h.create))
	mux.Handle("GET /v1/library/shelves/{id}", auth(h.get))
	mux.Handle("PATCH /v1/library/shelves/{id}", auth(h.rename))
	mux.Handle("DELETE /v1/library/shelves/{id}", auth(h.delete))
	mux.Handle("GET /v1/library/shelves/{id}/stories", auth(h.listStories))
	mux.Handle("PUT /v1/library/shelves/{id}/stories/{story_id}", auth(h.addStory))
	mux.Handle("DELETE /v1/library/shelves/{id}/stories/{story_id}", auth(h.removeStory))
}

// shelfInput is the body of POST /v1/library/shelves and PATCH /v1/library/shelves/{id}.
type shelfInput struct {
	Name *string `json:"name"`
}

// decode reads and validates the body; the name is trimmed.
func (in *shelfInput) decode(w http.ResponseWriter, r *http.Request) error {
	if err := api.Decode(w, r, in); err != nil {
		return err
	}
	v := api.Validator{}
	v.Text("name", in.Name, api.TextRule{Required: true, Min: 1, Max: MaxName})
	return v.Err()
}

func (h *Handler) library(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	var after shelfCursor
	more, err := page.After(&after)
	if err != nil {
		return err
	}
	var name *string
	if more {
		name = &after.Name
	}
	shelves, err := queryShelves(ctx, h.db.Reader(ctx), uid, libraryRest, name, page.Limit+1)
	if err != nil {
		return err
	}
	shelves, next := api.Trim(page, shelves, func(sh Shelf) any { return shelfCursor{sh.Name} })
	api.WriteList(w, r, shelves, next)
	return nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	var in shelfInput
	if err := in.decode(w, r); err != nil {
		return err
	}
	var sh Shelf
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := profiles.Ensure(ctx, tx, uid); err != nil {
			return err
		}
		var id int64
		err := tx.QueryRow(ctx, "insert into shelves (owner_id, name) values ($1, $2) returning id", uid, *in.Name).Scan(&id)
		if api.IsUniqueViolation(err, "shelves_owner_name_key") {
			return ErrShelfNameTaken
		}
		if err != nil {
			return err
		}
		if sh, err = getShelf(ctx, tx, uid, id); err != nil {
			return err
		}
		return record(ctx, tx, "shelf.create", "shelf", strconv.FormatInt(id, 10), nil, nil)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	w.Header().Set("Location", "/v1/library/shelves/"+strconv.FormatInt(sh.ID, 10))
	api.Write(w, r, http.StatusCreated, sh)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	sh, err := getShelf(ctx, h.db.Reader(ctx), uid, id)
	if err != nil {
		return err
	}
	api.Write(w, r, http.StatusOK, sh)
	return nil
}

func (h *Handler) rename(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	var in shelfInput
	if err := in.decode(w, r); err != nil {
		return err
	}
	var sh Shelf
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var old string
		err := tx.QueryRow(ctx, `update shelves s set name = $3, updated_at = now()
			from (select id, name from shelves where id = $1 and owner_id = $2 for update) old
			where s.id = old.id returning old.name`, id, uid, *in.Name).Scan(&old)
		switch {
		case api.IsUniqueViolation(err, "shelves_owner_name_key"):
			return ErrShelfNameTaken
		case errors.Is(err, pgx.ErrNoRows):
			return api.ErrNotFound
		case err != nil:
			return err
		}
		if sh, err = getShelf(ctx, tx, uid, id); err != nil {
			return err
		}
		b, a := audit.Changes(map[string]any{"name": old}, map[string]any{"name": sh.Name})
		return record(ctx, tx, "shelf.rename", "shelf", strconv.FormatInt(id, 10), b, a)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Write(w, r, http.StatusOK, sh)
	return nil
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		// The items go with the shelf (on delete cascade).
		tag, err := tx.Exec(ctx, "delete from shelves where id = $1 and owner_id = $2", id, uid)
		if err == nil && tag.RowsAffected() == 0 {
			err = api.ErrNotFound
		}
		if err != nil {
			return err
		}
		return record(ctx, tx, "shelf.delete", "shelf", strconv.FormatInt(id, 10), nil, nil)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listStories(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	var after itemCursor
	more, err := page.After(&after)
	if err != nil {
		return err
	}
	q := h.db.Reader(ctx)
	if err := ownShelf(ctx, q, uid, id, false); err != nil {
		return err
	}
	var from *itemCursor
	if more {
		from = &after
	}
	items, err := queryItems(ctx, q, uid, []int64{id}, page.Limit+1, from)
	if err != nil {
		return err
	}
	items, next := api.Trim(page, items, func(it Item) any { return itemCursor{it.AddedAt, it.StoryID} })
	api.WriteList(w, r, items, next)
	return nil
}

// ownShelfSQL selects shelf $1 if owner $2 has it.
const ownShelfSQL = "select 1 from shelves where id = $1 and owner_id = $2"

// ownShelf checks that shelf id is the owner's: api.ErrNotFound otherwise. lock, in a
// transaction, keeps the shelf from being deleted until the transaction ends.
func ownShelf(ctx context.Context, q dbrouter.Querier, owner string, id int64, lock bool) error {
	sql := ownShelfSQL
	if lock {
		sql += " for key share"
	}
	var one int
	err := q.QueryRow(ctx, sql, id, owner).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return api.ErrNotFound
	}
	return err
}

// record writes the audit event of action on a target in tx.
func record(ctx context.Context, tx pgx.Tx, action, typ, id string, before, after map[string]any) error {
	return audit.Record(ctx, tx, audit.Event{Action: action, TargetType: typ, TargetID: id, Before: before, After: after})
}

// itemTx answers a change to the item of the path's story on the path's shelf: fn runs in a
// transaction after ownShelf has locked the shelf, and the change is audited as action on
// the item SHELF/STORY.
func (h *Handler) itemTx(w http.ResponseWriter, r *http.Request, action string, fn func(ctx context.Context, tx pgx.Tx, owner string, shelf, story int64) error) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	shelf, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	story, err := api.PathID(r, "story_id")
	if err != nil {
		return err
	}
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := ownShelf(ctx, tx, uid, shelf, true); err != nil {
			return err
		}
		if err := fn(ctx, tx, uid, shelf, story); err != nil {
			return err
		}
		return record(ctx, tx, action, "shelf_item", strconv.FormatInt(shelf, 10)+"/"+strconv.FormatInt(story, 10), nil, nil)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) addStory(w http.ResponseWriter, r *http.Request) error {
	return h.itemTx(w, r, "shelf.add", func(ctx context.Context, tx pgx.Tx, owner string, shelf, story int64) error {
		tag, err := tx.Exec(ctx, `insert into shelf_items (shelf_id, story_id)
			select $2, s.id from stories s where s.id = $3 and `+visible+`
			on conflict do nothing`, owner, shelf, story)
		if err != nil || tag.RowsAffected() == 1 {
			return err
		}
		// Nothing inserted: the story is on the shelf already, or the caller may not see it.
		var seen bool
		if err := tx.QueryRow(ctx, "select exists (select 1 from stories s where s.id = $2 and "+visible+")", owner, story).Scan(&seen); err != nil {
			return err
		}
		if !seen {
			return api.ErrNotFound
		}
		return nil
	})
}

func (h *Handler) removeStory(w http.ResponseWriter, r *http.Request) error {
	return h.itemTx(w, r, "shelf.remove", func(ctx context.Context, tx pgx.Tx, _ string, shelf, story int64) error {
		_, err := tx.Exec(ctx, "delete from shelf_items where shelf_id = $1 and story_id = $2", shelf, story)
		return err
	})
}
