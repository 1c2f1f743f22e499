// Package whispers serves whispers: short posts of 1 to MaxBody characters, global or about
// a story, replies to them, and likes.
//
// Feeds are newest first and paginated: the global feed (top-level whispers about no story),
// a story's feed (its top-level whispers) and a whisper's replies. A reply belongs to its
// parent's story, and can be replied to. Whispers about a story that is not published, or is
// deleted, are 404 like the story.
//
// reply_count counts a whisper's replies that are not deleted, like_count its likes (one per
// user; PUT and DELETE of a like are idempotent). Each changes in the transaction that adds
// or removes what it counts, under the whisper's row lock, so both stay exact under
// concurrency. Deletion is soft and the author's alone: a deleted whisper keeps its row and
// its replies; while it has replies it shows as deleted, without body or author, and when it
// has none it drops out of the feeds.
//
// Blocks: a signed-in caller sees no whisper of an author they blocked (social.NotBlocked), in
// feeds or alone (404); a user cannot reply to or like the whispers of someone who blocked
// them, nor whisper about their stories (403 blocked).
//
// Caching: reads are public under the api.Whispers policy, tagged with CacheTag of every
// whisper shown (so a reply or deletion purges exactly the pages showing that whisper), of
// the whisper whose replies they list, and, on first pages where a new whisper
// would appear, GlobalTag or StoryTag; a story's feed also carries the story's tag, purged
// when the story changes. What a signed-in caller sees depends on them (their blocks):
// their responses are private, so the edge keeps one copy, the anonymous one. Mutations
// answer Cache-Purge: a whisper its feed's tag, a reply its parent's, a like or unlike the
// whisper's own view only (LikesTag: the like_count in feeds lags until they go stale), a
// deletion the whisper's and its parent's.
//
//	GET    /v1/whispers                 the global feed                        public
//	POST   /v1/whispers                 whisper {"body"}                       signed in
//	GET    /v1/stories/{id}/whispers    a story's feed                         public
//	POST   /v1/stories/{id}/whispers    whisper about a story {"body"}         signed in
//	GET    /v1/whispers/{id}            a whisper                              public
//	DELETE /v1/whispers/{id}            soft delete                            author
//	GET    /v1/whispers/{id}/replies    a whisper's replies                    public
//	POST   /v1/whispers/{id}/replies    reply {"body"}                         signed in
//	PUT    /v1/whispers/{id}/like       like                                   signed in
//	DELETE /v1/whispers/{id}/like       unlike                                 signed in
package whispers

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/stories"
)

// MaxBody bounds a whisper's body, in characters.
const MaxBody = 500

// GlobalTag is the cache tag of the first pages of the global feed.
const GlobalTag = "whispers:global"

// StoryTag is the cache tag of the first pages of story id's feed.
func StoryTag(id int64) string { return "whispers:story:" + strconv.FormatInt(id, 10) }

// CacheTag is the cache tag of everything showing whisper id: itself, the pages it is on and
// its replies.
func CacheTag(id int64) string { return "whisper:" + strconv.FormatInt(id, 10) }

// LikesTag is the cache tag of the answers a like of whisper id changes at once: the
// whisper's own view. A like purges nothing else: the feeds showing the whisper keep their
// count until they go stale (Whispers policy), so that a user toggling a like cannot keep
// the busiest feeds out of every cache.
func LikesTag(id int64) string { return "whisper-likes:" + strconv.FormatInt(id, 10) }

// Errors of this package.
var (
	ErrForbidden = &api.Error{Code: "forbidden", Message: "only the author can delete this whisper"}
	ErrDeleted   = &api.Error{Code: "whisper_deleted", Message: "the whisper was deleted"}
)

// Whisper is a whisper. A deleted one shows neither body nor author.
type Whisper struct {
	ID         int64           `json:"id"`
	Author     *stories.Author `json:"author"`
	StoryID    *int64          `json:"story_id"`
	ParentID   *int64          `json:"parent_id"`
	Body       string          `json:"body"`
	Deleted    bool            `json:"deleted"`
	ReplyCount int             `json:"reply_count"`
	LikeCount  int             `json:"like_count"`
	CreatedAt  time.Time       `json:"created_at"`

	authorID string
}

// Like is the caller's like of a whisper, and the whisper's likes.
type Like struct {
	WhisperID int64 `json:"whisper_id"`
	Liked     bool  `json:"liked"`
	LikeCount int   `json:"like_count"`
}

const columns = `w.id, w.author_id, p.handle, p.display_name, w.story_id, w.parent_id, w.body,
	w.reply_count, w.like_count, w.created_at, w.deleted_at is not null`

const from = ` from whispers w join profiles p on p.user_id = w.author_id `

// storyPublic is the condition that whisper w is about no story or a public one.
const storyPublic = `(w.story_id is null or exists (select 1 from stories s where s.id = w.story_id
	and s.published_at is not null and s.deleted_at is null))`

func scan(row pgx.Row) (Whisper, error) {
	var w Whisper
	var a stories.Author
	err := row.Scan(&w.ID, &w.authorID, &a.Handle, &a.DisplayName, &w.StoryID, &w.ParentID, &w.Body,
		&w.ReplyCount, &w.LikeCount, &w.CreatedAt, &w.Deleted)
	if w.Deleted {
		w.Body = ""
	} else {
		w.Author = &a
	}
	return w, err
}

// whisperSQL selects whisper $1 unless its story is not public or viewer $2 blocked its
// author.
var whisperSQL = "select " + columns + from + "where w.id = $1 and " + storyPublic + " and " + social.NotBlocked("w.author_id", "$2")

// getWhisper reads whisper id as viewer may see it: api.ErrNotFound when there is none, its
// story is not public or viewer blocked its author. lock, in a transaction, takes the row
// lock under which its counters change.
func getWhisper(ctx context.Context, q dbrouter.Querier, id int64, viewer string, lock bool) (Whisper, error) {
	sql := whisperSQL
	if lock {
		sql += " for no key update of w"
	}
	w, err := scan(q.QueryRow(ctx, sql, id, viewer))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, api.ErrNotFound
	}
	return w, err
}

// publicStorySQL selects the author of story $1 when it is published and not deleted.
const publicStorySQL = "select author_id from stories where id = $1 and published_at is not null and deleted_at is null"

// publicStoryAuthor returns the author of story id when it is published and not deleted,
// else api.ErrNotFound.
func publicStoryAuthor(ctx context.Context, q dbrouter.Querier, id int64) (string, error) {
	var author string
	err := q.QueryRow(ctx, publicStorySQL, id).Scan(&author)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", api.ErrNotFound
	}
	return author, err
}

// Handler serves the whisper routes.
type Handler struct {
	db     *dbrouter.Router
	log    *zap.Logger
	shared *sharedlist.Shared
}

// New returns the whisper handlers, reading and writing through db; feeds are computed
// once for everyone and kept in shared's cache.
func New(db *dbrouter.Router, log *zap.Logger, shared *sharedlist.Shared) *Handler {
	return &Handler{db: db, log: log, shared: shared}
}

// Register adds the whisper routes to mux.
func (h *Handler) Register(mux api.Mux) {
	handle := func(f api.Handler) http.Handler { return api.Handle(h.log, f) }
	auth := func(f api.Handler) http.Handler { return api.RequireUser(handle(f)) }
	mux.Handle("GET /v1/whispers", handle(h.globalFeed))
	mux.Handle("POST /v1/whispers", auth(h.postGlobal))
	mux.Handle("GET /v1/stories/{id}/whispers", handle(h.storyFeed))
	mux.Handle("POST /v1/stories/{id}/whispers", auth(h.postStory))
	mux.Handle("GET /v1/whispers/{id}", handle(h.get))
	mux.Handle("DELETE /v1/whispers/{id}", auth(h.delete))
	mux.Handle("GET /v1/whispers/{id}/replies", handle(h.replies))
	mux.Handle("POST /v1/whispers/{id}/replies", auth(h.postReply))
	mux.Handle("PUT /v1/whispers/{id}/like", auth(h.like))
	mux.Handle("DELETE /v1/whispers/{id}/like", auth(h.unlike))
}

// view is a read for one viewer.
type view struct {
	q      dbrouter.Querier
	viewer string // "" when anonymous
}

// view returns the read of who is asking.
func (h *Handler) view(ctx context.Context) view {
	v := view{q: h.db.Reader(ctx)}
	v.viewer, _ = identity.User(ctx)
	return v
}

// cache sets the cache headers of a read: private for a signed-in viewer (the edge keeps no
// copy per reader), else public under tags, with Vary on the identity header so that no
// signed-in reader gets the anonymous copy.
func (v view) cache(w http.ResponseWriter, tags ...string) {
	if v.viewer != "" {
		api.Private(w)
	} else {
		api.PublicPerViewer(w, api.Whispers, tags...)
	}
}

// feed is a list of whispers: those matching scope (one of the scopes below, named name),
// of the story or whisper id, tagged with tags on every page and with first, if any, on the
// first page (and each page with the tag of every whisper on it).
type feed struct {
	name, scope string
	id          int64
	tags        []string
	first       string
}

// pageTags are the cache tags of a page of f, the first one unless more, besides those of
// the whispers on it.
func (f feed) pageTags(more bool) []string {
	if !more && f.first != "" {
		return append(slices.Clip(f.tags), f.first)
	}
	return f.tags
}

// The scopes of the feeds: conditions on w, with $3 standing for the feed's id.
const (
	globalScope  = "w.story_id is null and w.parent_id is null"
	storyScope   = "w.story_id = $3 and w.parent_id is null"
	repliesScope = "w.parent_id = $3"
)

// feedSQL selects a page of the feed of scope as everyone sees it: newest first, before id
// $1 unless it is 0, at most $2. Deleted whispers show while they have replies.
func feedSQL(scope string) string {
	return "select " + columns + from + "where " + scope +
		" and (w.deleted_at is null or w.reply_count > 0)" +
		" and ($1::bigint = 0 or w.id < $1) order by w.id desc limit $2"
}

// whisperCursor is the position in a feed (newest first).
type whisperCursor struct {
	ID int64 `json:"id"`
}

// serveFeed answers a page of feed f: pages are computed once for everyone, kept in the
// app's cache, and filtered per viewer (sharedlist.Serve).
func (h *Handler) serveFeed(w http.ResponseWriter, r *http.Request, f feed) error {
	ctx := r.Context()
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	viewer, err := h.shared.Viewer(ctx)
	if err != nil {
		return err
	}
	more, err := page.After(&whisperCursor{})
	if err != nil {
		return err
	}
	return sharedlist.Serve(w, r, viewer, api.Whispers, f.pageTags(more), page, func(p api.Page) (sharedlist.Page[Whisper], error) {
		return h.page(ctx, f, p)
	})
}

// page returns the shared page p of feed f, from the app's cache or the database; it
// carries the tag of each whisper on it.
func (h *Handler) page(ctx context.Context, f feed, p api.Page) (sharedlist.Page[Whisper], error) {
	var none sharedlist.Page[Whisper]
	var after whisperCursor // without a cursor, after.ID is 0
	more, err := p.After(&after)
	if err != nil {
		return none, err
	}
	tags := f.pageTags(more)
	key := "whispers:" + f.name + ":" + strconv.FormatInt(f.id, 10) + ":" + p.Key()
	return sharedlist.LoadPage(ctx, h.shared, api.Whispers, key, tags, func(ctx context.Context) (sharedlist.Page[Whisper], error) {
		args := []any{after.ID, p.Limit + 1}
		if f.id != 0 {
			args = append(args, f.id)
		}
		rows, err := h.db.Reader(ctx).Query(ctx, feedSQL(f.scope), args...)
		if err != nil {
			return none, err
		}
		list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Whisper, error) { return scan(row) })
		if err != nil {
			return none, err
		}
		sp, err := sharedlist.NewPage(p, list, func(x Whisper) string { return x.authorID }, func(x Whisper) any { return whisperCursor{x.ID} })
		for _, x := range sp.Items {
			sp.Tags = append(sp.Tags, CacheTag(x.ID))
		}
		return sp, err
	})
}

func (h *Handler) globalFeed(w http.ResponseWriter, r *http.Request) error {
	return h.serveFeed(w, r, feed{name: "global", scope: globalScope, first: GlobalTag})
}

func (h *Handler) storyFeed(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	if _, err := publicStoryAuthor(ctx, h.view(ctx).q, id); err != nil {
		return err
	}
	return h.serveFeed(w, r, feed{name: "story", scope: storyScope, id: id,
		tags: []string{stories.CacheTag(id)}, first: StoryTag(id)})
}

func (h *Handler) replies(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	v := h.view(ctx)
	if _, err := getWhisper(ctx, v.q, id, v.viewer, false); err != nil {
		return err
	}
	// Every page carries the parent's tag: a new reply purges them all.
	return h.serveFeed(w, r, feed{name: "replies", scope: repliesScope, id: id, tags: []string{CacheTag(id)}})
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	v := h.view(ctx)
	x, err := getWhisper(ctx, v.q, id, v.viewer, false)
	if err != nil {
		return err
	}
	tags := []string{CacheTag(x.ID), LikesTag(x.ID)}
	if x.StoryID != nil {
		tags = append(tags, stories.CacheTag(*x.StoryID))
	}
	v.cache(w, tags...)
	api.Write(w, r, http.StatusOK, x)
	return nil
}

// bodyInput is the body of the POST routes.
type bodyInput struct {
	Body *string `json:"body"`
}

// decode reads and validates the body of a POST; the text is trimmed.
func (in *bodyInput) decode(w http.ResponseWriter, r *http.Request) error {
	if err := api.Decode(w, r, in); err != nil {
		return err
	}
	v := api.Validator{}
	v.Text("body", in.Body, api.TextRule{Required: true, Min: 1, Max: MaxBody, Controls: api.NewlinesAndTabs})
	return v.Err()
}

// placement is where a new whisper goes, and the cache tag its arrival invalidates.
type placement struct {
	story, parent *int64
	purge         string
}

// post answers the creation of a whisper: place runs first in the transaction, checks that
// user me may whisper there and says where; the whisper is inserted after it.
func (h *Handler) post(w http.ResponseWriter, r *http.Request, place func(ctx context.Context, tx pgx.Tx, me string) (placement, error)) error {
	ctx := r.Context()
	me, _ := identity.User(ctx)
	api.Private(w)
	var in bodyInput
	if err := in.decode(w, r); err != nil {
		return err
	}
	var x Whisper
	var at placement
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		if at, err = place(ctx, tx, me); err != nil {
			return err
		}
		if _, err := profiles.Ensure(ctx, tx, me); err != nil {
			return err
		}
		x, err = scan(tx.QueryRow(ctx, `with w as (insert into whispers (author_id, story_id, parent_id, body)
			values ($1, $2, $3, $4) returning *) select `+columns+` from w join profiles p on p.user_id = w.author_id`,
			me, at.story, at.parent, *in.Body))
		if err != nil {
			return err
		}
		action := "whisper.post"
		if at.parent != nil {
			action = "whisper.reply"
		}
		return record(ctx, tx, action, x.ID)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, at.purge)
	w.Header().Set("Location", "/v1/whispers/"+strconv.FormatInt(x.ID, 10))
	api.Write(w, r, http.StatusCreated, x)
	return nil
}

func (h *Handler) postGlobal(w http.ResponseWriter, r *http.Request) error {
	return h.post(w, r, func(context.Context, pgx.Tx, string) (placement, error) {
		return placement{purge: GlobalTag}, nil
	})
}

func (h *Handler) postStory(w http.ResponseWriter, r *http.Request) error {
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	return h.post(w, r, func(ctx context.Context, tx pgx.Tx, me string) (placement, error) {
		author, err := publicStoryAuthor(ctx, tx, id)
		if err != nil {
			return placement{}, err
		}
		blocked, err := social.Blocked(ctx, tx, author, me)
		switch {
		case err != nil:
			return placement{}, err
		case blocked:
			return placement{}, social.ErrBlocked
		}
		return placement{story: &id, purge: StoryTag(id)}, nil
	})
}

func (h *Handler) postReply(w http.ResponseWriter, r *http.Request) error {
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	return h.post(w, r, func(ctx context.Context, tx pgx.Tx, me string) (placement, error) {
		parent, err := actOn(ctx, tx, id, me)
		if err != nil {
			return placement{}, err
		}
		// The parent is locked: its count is exact.
		if _, err := tx.Exec(ctx, "update whispers set reply_count = reply_count + 1 where id = $1", id); err != nil {
			return placement{}, err
		}
		return placement{story: parent.StoryID, parent: &id, purge: CacheTag(id)}, nil
	})
}

// record writes the audit event of action on whisper id in tx.
func record(ctx context.Context, tx pgx.Tx, action string, id int64) error {
	return audit.Record(ctx, tx, audit.Event{Action: action, TargetType: "whisper", TargetID: strconv.FormatInt(id, 10)})
}

// actOn locks whisper id for user me to reply to or like it: api.ErrNotFound when they may
// not see it, ErrDeleted when it is deleted, social.ErrBlocked when its author blocked them.
func actOn(ctx context.Context, tx pgx.Tx, id int64, me string) (Whisper, error) {
	x, err := getWhisper(ctx, tx, id, me, true)
	if err != nil {
		return x, err
	}
	if x.Deleted {
		return x, ErrDeleted
	}
	blocked, err := social.Blocked(ctx, tx, x.authorID, me)
	if err == nil && blocked {
		err = social.ErrBlocked
	}
	return x, err
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	me, _ := identity.User(ctx)
	api.Private(w)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	var purge []string
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		x, err := getWhisper(ctx, tx, id, me, true)
		switch {
		case err != nil:
			return err
		case x.authorID != me:
			return ErrForbidden
		case x.Deleted:
			return nil // deleted already: nothing changes
		}
		if _, err := tx.Exec(ctx, "update whispers set deleted_at = now() where id = $1", id); err != nil {
			return err
		}
		purge = append(purge, CacheTag(id))
		if x.ParentID != nil {
			purge = append(purge, CacheTag(*x.ParentID))
			if _, err := tx.Exec(ctx, "update whispers set reply_count = reply_count - 1 where id = $1", *x.ParentID); err != nil {
				return err
			}
		}
		return record(ctx, tx, "whisper.delete", id)
	})
	if err != nil {
		return err
	}
	if len(purge) > 0 {
		api.SetToken(w, h.db, tok)
		api.Purge(w, purge...)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// likeTx answers a like or an unlike of the path's whisper: change runs in a transaction on
// the locked whisper and reports whether it added or removed a like, adjusting like_count.
func (h *Handler) likeTx(w http.ResponseWriter, r *http.Request, liked bool, change func(ctx context.Context, tx pgx.Tx, id int64, me string) (bool, error)) error {
	ctx := r.Context()
	me, _ := identity.User(ctx)
	api.Private(w)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	res := Like{WhisperID: id, Liked: liked}
	changed := false
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		changed, err = change(ctx, tx, id, me)
		if err != nil {
			return err
		}
		action := "whisper.unlike"
		if liked {
			action = "whisper.like"
		}
		if changed {
			if err := record(ctx, tx, action, id); err != nil {
				return err
			}
		}
		switch {
		case !changed:
			return tx.QueryRow(ctx, "select like_count from whispers where id = $1", id).Scan(&res.LikeCount)
		case liked:
			return tx.QueryRow(ctx, "update whispers set like_count = like_count + 1 where id = $1 returning like_count", id).Scan(&res.LikeCount)
		default:
			return tx.QueryRow(ctx, "update whispers set like_count = like_count - 1 where id = $1 returning like_count", id).Scan(&res.LikeCount)
		}
	})
	if err != nil {
		return err
	}
	if changed {
		api.SetToken(w, h.db, tok)
		api.Purge(w, LikesTag(id))
	}
	api.Write(w, r, http.StatusOK, res)
	return nil
}

func (h *Handler) like(w http.ResponseWriter, r *http.Request) error {
	return h.likeTx(w, r, true, func(ctx context.Context, tx pgx.Tx, id int64, me string) (bool, error) {
		if _, err := actOn(ctx, tx, id, me); err != nil {
			return false, err
		}
		if _, err := profiles.Ensure(ctx, tx, me); err != nil {
			return false, err
		}
		tag, err := tx.Exec(ctx, "insert into whisper_likes (whisper_id, user_id) values ($1, $2) on conflict do nothing", id, me)
		return tag.RowsAffected() == 1, err
	})
}

func (h *Handler) unlike(w http.ResponseWriter, r *http.Request) error {
	return h.likeTx(w, r, false, func(ctx context.Context, tx pgx.Tx, id int64, me string) (bool, error) {
		// Any like can go: of a deleted whisper, or of an author one blocks or is blocked by.
		if _, err := getWhisper(ctx, tx, id, "", true); err != nil {
			return false, err
		}
		tag, err := tx.Exec(ctx, "delete from whisper_likes where whisper_id = $1 and user_id = $2", id, me)
		return tag.RowsAffected() == 1, err
	})
}
