// Package stories serves stories and their chapters: drafts, edits under optimistic
// concurrency, publishing, soft deletion, tags, and chapters numbered within their story
// with markdown content sanitized against XSS.
//
// Drafts and deleted stories, and everything under them, are visible to their author only;
// other users get 404. Public views are cacheable by the edge under the api.StoryMetadata
// policy and the tag story:ID, with a strong ETag of their bytes; the author's views are
// private, with the version's ETag ("vN") that If-Match sends back. Every mutation answers
// Cache-Purge with the tags it invalidates: story:ID, plus feed:new when the story is (or
// was) in the feeds.
//
//	POST   /v1/stories                        create a draft                      author
//	GET    /v1/me/stories                     the caller's stories, newest first  author
//	GET    /v1/stories/{id}                   a story                             public or author
//	PATCH  /v1/stories/{id}                   edit title, blurb, tags             author, version/If-Match
//	POST   /v1/stories/{id}/publish           publish (sets published_at)         author
//	DELETE /v1/stories/{id}                   soft delete (sets deleted_at)       author
//	POST   /v1/stories/{id}/chapters          add a chapter (next number)         author
//	GET    /v1/stories/{id}/chapters          chapters in order, paginated        public or author
//	GET    /v1/stories/{id}/chapters/{n}      a chapter with its HTML             public or author
//	PATCH  /v1/stories/{id}/chapters/{n}      edit title, content                 author, version/If-Match
package stories

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/profiles"
)

// FeedNewTag is the cache tag of the feed of new stories.
const FeedNewTag = "feed:new"

// Limits of story fields.
const (
	MaxTitle = 200
	MaxBlurb = 2000
	MaxTags  = 10
)

var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,29}$`)

// Errors of this package.
var (
	ErrForbidden  = &api.Error{Code: "forbidden", Message: "only the author can change this story"}
	ErrNoChapters = &api.Error{Code: "no_chapters", Message: "a story needs a chapter before it is published"}
)

// Status values of a story.
const (
	StatusDraft     = "draft"
	StatusPublished = "published"
	StatusDeleted   = "deleted"
)

// Author is the public part of a story's author's profile.
type Author struct {
	Handle      string `json:"handle"`
	DisplayName string `json:"display_name"`
}

// Story is a story's metadata.
type Story struct {
	ID           int64      `json:"id"`
	Author       Author     `json:"author"`
	Title        string     `json:"title"`
	Blurb        string     `json:"blurb"`
	Tags         []string   `json:"tags"`
	Status       string     `json:"status"`
	Version      int64      `json:"version"`
	ChapterCount int        `json:"chapter_count"`
	PublishedAt  *time.Time `json:"published_at"`
	DeletedAt    *time.Time `json:"deleted_at,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`

	authorID string
}

// CacheTag is the cache tag of everything shown of story id.
func CacheTag(id int64) string { return "story:" + strconv.FormatInt(id, 10) }

// public reports whether anyone may see the story.
func (s *Story) public() bool { return s.PublishedAt != nil && s.DeletedAt == nil }

// visibleTo reports whether user (possibly "") may see the story.
func (s *Story) visibleTo(user string) bool { return s.public() || (user != "" && user == s.authorID) }

// auditFields are the fields of the story an edit's audit event compares.
func (s *Story) auditFields() map[string]any {
	return map[string]any{"title": s.Title, "blurb": s.Blurb, "tags": s.Tags}
}

// record writes the audit event of action on story id in tx.
func record(ctx context.Context, tx pgx.Tx, action string, id int64, before, after map[string]any) error {
	return audit.Record(ctx, tx, audit.Event{Action: action, TargetType: "story", TargetID: strconv.FormatInt(id, 10),
		Before: before, After: after})
}

// purgeTags are the cache tags a change to a story invalidates: the story, and the feeds
// when it is or was in them.
func (s *Story) purgeTags(wasPublic bool) []string {
	tags := []string{CacheTag(s.ID)}
	if wasPublic || s.public() {
		tags = append(tags, FeedNewTag)
	}
	return tags
}

const storyColumns = `s.id, s.author_id, p.handle, p.display_name, s.title, s.blurb, s.version,
	s.chapter_seq, s.published_at, s.deleted_at, s.created_at, s.updated_at,
	coalesce((select array_agg(t.name order by t.name) from story_tags st join tags t on t.id = st.tag_id
		where st.story_id = s.id), '{}')`

const storyFrom = ` from stories s join profiles p on p.user_id = s.author_id `

func scanStory(row pgx.Row) (Story, error) {
	var s Story
	err := row.Scan(&s.ID, &s.authorID, &s.Author.Handle, &s.Author.DisplayName, &s.Title, &s.Blurb, &s.Version,
		&s.ChapterCount, &s.PublishedAt, &s.DeletedAt, &s.CreatedAt, &s.UpdatedAt, &s.Tags)
	switch {
	case s.DeletedAt != nil:
		s.Status = StatusDeleted
	case s.PublishedAt != nil:
		s.Status = StatusPublished
	default:
		s.Status = StatusDraft
	}
	return s, err
}

// querier is what reads need: the router's Reader or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// storySQL selects story $1 (the story page).
const storySQL = "select " + storyColumns + storyFrom + "where s.id = $1"

// authorStoriesSQL selects the stories of author $1 not deleted, newest first, before id $2
// unless it is 0, at most $3.
const authorStoriesSQL = "select " + storyColumns + storyFrom +
	`where s.author_id = $1 and s.deleted_at is null and ($2::bigint = 0 or s.id < $2)
	order by s.id desc limit $3`

// getStory reads story id; api.ErrNotFound when there is none. lock takes the row lock of
// an update (in a transaction).
func getStory(ctx context.Context, q querier, id int64, lock bool) (Story, error) {
	sql := storySQL
	if lock {
		sql += " for update of s"
	}
	s, err := scanStory(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, api.ErrNotFound
	}
	return s, err
}

// Handler serves the story and chapter routes.
type Handler struct {
	db  *dbrouter.Router
	log *zap.Logger
}

// New returns the story handlers, reading and writing through db.
func New(db *dbrouter.Router, log *zap.Logger) *Handler {
	return &Handler{db: db, log: log}
}

// Register adds the story and chapter routes to mux.
func (h *Handler) Register(mux api.Mux) {
	handle := func(f api.Handler) http.Handler { return api.Handle(h.log, f) }
	auth := func(f api.Handler) http.Handler { return api.RequireUser(handle(f)) }
	mux.Handle("POST /v1/stories", auth(h.create))
	mux.Handle("GET /v1/me/stories", auth(h.listMine))
	mux.Handle("GET /v1/stories/{id}", handle(h.get))
	mux.Handle("PATCH /v1/stories/{id}", auth(h.update))
	mux.Handle("POST /v1/stories/{id}/publish", auth(h.publish))
	mux.Handle("DELETE /v1/stories/{id}", auth(h.delete))
	mux.Handle("POST /v1/stories/{id}/chapters", auth(h.createChapter))
	mux.Handle("GET /v1/stories/{id}/chapters", handle(h.listChapters))
	mux.Handle("GET /v1/stories/{id}/chapters/{n}", handle(h.getChapter))
	mux.Handle("PATCH /v1/stories/{id}/chapters/{n}", auth(h.updateChapter))
}

// storyInput is the body of POST /v1/stories and PATCH /v1/stories/{id}; absent fields of a
// PATCH are left as they are.
type storyInput struct {
	Title   *string   `json:"title"`
	Blurb   *string   `json:"blurb"`
	Tags    *[]string `json:"tags"`
	Version *int64    `json:"version"`
}

// decodeEdit reads the body of a PATCH into in, validates it as an edit, and returns the
// precondition it must meet: its version field (pointed to by version) or If-Match.
func decodeEdit(w http.ResponseWriter, r *http.Request, in interface{ validate(bool) error }, version **int64) (api.Precondition, error) {
	if err := api.Decode(w, r, in); err != nil {
		return api.Precondition{}, err
	}
	if err := in.validate(false); err != nil {
		return api.Precondition{}, err
	}
	return api.ParsePrecondition(r, *version)
}

func (in *storyInput) validate(creating bool) error {
	v := api.Validator{}
	v.Check(!creating || in.Version == nil, "version", "is not accepted when creating")
	v.Text("title", in.Title, api.TextRule{Required: creating, Min: 1, Max: MaxTitle})
	v.Text("blurb", in.Blurb, api.TextRule{Max: MaxBlurb, Controls: api.AnyControls})
	if in.Tags != nil {
		tags := make([]string, 0, len(*in.Tags))
		for _, t := range *in.Tags {
			t = strings.ToLower(strings.TrimSpace(t))
			v.Check(tagRE.MatchString(t), "tags", "each tag must be 1 to 30 of a-z, 0-9 and '-', starting with a letter or digit")
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		v.Check(len(tags) <= MaxTags, "tags", "at most 10 tags")
		slices.Sort(tags)
		*in.Tags = tags
	}
	return v.Err()
}

// setTags replaces the tags of a story.
func setTags(ctx context.Context, tx pgx.Tx, id int64, tags []string) error {
	if _, err := tx.Exec(ctx, "delete from story_tags where story_id = $1", id); err != nil {
		return err
	}
	if len(tags) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "insert into tags (name) select unnest($1::text[]) on conflict (name) do nothing", tags); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "insert into story_tags (story_id, tag_id) select $1, id from tags where name = any($2)", id, tags)
	return err
}

// writeStory answers with a story: public and cacheable when anyone may see it and the
// viewer is not its author, else private with the version's ETag.
func writeStory(w http.ResponseWriter, r *http.Request, status int, s Story, viewer string) {
	if s.public() && viewer != s.authorID {
		api.Public(w, api.StoryMetadata, CacheTag(s.ID))
	} else {
		api.Private(w)
		w.Header().Set("ETag", api.ETag(s.Version))
	}
	api.Write(w, r, status, s)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	var in storyInput
	if err := api.Decode(w, r, &in); err != nil {
		return err
	}
	if err := in.validate(true); err != nil {
		return err
	}
	var s Story
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := profiles.Ensure(ctx, tx, uid); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, "insert into stories (author_id, title, blurb) values ($1, $2, coalesce($3, '')) returning id",
			uid, *in.Title, in.Blurb).Scan(&id); err != nil {
			return err
		}
		if in.Tags != nil {
			if err := setTags(ctx, tx, id, *in.Tags); err != nil {
				return err
			}
		}
		var err error
		if s, err = getStory(ctx, tx, id, false); err != nil {
			return err
		}
		return record(ctx, tx, "story.create", id, nil, nil)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, CacheTag(s.ID))
	w.Header().Set("Location", "/v1/stories/"+strconv.FormatInt(s.ID, 10))
	writeStory(w, r, http.StatusCreated, s, uid)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	viewer, _ := identity.User(ctx)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	s, err := getStory(ctx, h.db.Reader(ctx), id, false)
	if err != nil {
		return err
	}
	if !s.visibleTo(viewer) {
		return api.ErrNotFound
	}
	writeStory(w, r, http.StatusOK, s, viewer)
	return nil
}

// storyCursor is the position in a list of an author's stories (newest first).
type storyCursor struct {
	ID int64 `json:"id"`
}

func (h *Handler) listMine(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	api.Private(w)
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	var after storyCursor
	if _, err := page.After(&after); err != nil {
		return err
	}
	// Without a cursor, after.ID is 0: start from the newest.
	rows, err := h.db.Reader(ctx).Query(ctx, authorStoriesSQL, uid, after.ID, page.Limit+1)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Story, error) { return scanStory(row) })
	if err != nil {
		return err
	}
	list, next := api.Trim(page, list, func(s Story) any { return storyCursor{s.ID} })
	api.WriteList(w, r, list, next)
	return nil
}

// authorTx runs fn in a transaction on story id locked for update, after checking that
// user is its author and that it is not deleted. It returns the story as fn left it and the
// read-your-writes token.
func (h *Handler) authorTx(ctx context.Context, id int64, user string, fn func(tx pgx.Tx, s *Story) error) (Story, dbrouter.Token, error) {
	var s Story
	tok, err := h.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		if s, err = getStory(ctx, tx, id, true); err != nil {
			return err
		}
		switch {
		case s.authorID != user && s.public():
			return ErrForbidden
		case s.authorID != user, s.DeletedAt != nil:
			return api.ErrNotFound
		}
		return fn(tx, &s)
	})
	return s, tok, err
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	var in storyInput
	pre, err := decodeEdit(w, r, &in, &in.Version)
	if err != nil {
		return err
	}
	s, tok, err := h.authorTx(ctx, id, uid, func(tx pgx.Tx, s *Story) error {
		if !pre.Matches(s.Version) {
			return pre.Failed()
		}
		before := s.auditFields()
		if _, err := tx.Exec(ctx, `update stories set title = coalesce($2, title), blurb = coalesce($3, blurb),
			version = version + 1, updated_at = now() where id = $1`, id, in.Title, in.Blurb); err != nil {
			return err
		}
		if in.Tags != nil {
			if err := setTags(ctx, tx, id, *in.Tags); err != nil {
				return err
			}
		}
		var err error
		if *s, err = getStory(ctx, tx, id, false); err != nil {
			return err
		}
		b, a := audit.Changes(before, s.auditFields())
		return record(ctx, tx, "story.edit", id, b, a)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, s.purgeTags(false)...)
	writeStory(w, r, http.StatusOK, s, uid)
	return nil
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	pre := api.ParseOptionalPrecondition(r, nil)
	changed := false
	s, tok, err := h.authorTx(ctx, id, uid, func(tx pgx.Tx, s *Story) error {
		switch {
		case !pre.Matches(s.Version):
			return pre.Failed()
		case s.PublishedAt != nil:
			return nil // already published: nothing changes
		case s.ChapterCount == 0:
			return ErrNoChapters
		}
		changed = true
		if _, err := tx.Exec(ctx, "update stories set published_at = now(), version = version + 1, updated_at = now() where id = $1", id); err != nil {
			return err
		}
		var err error
		if *s, err = getStory(ctx, tx, id, false); err != nil {
			return err
		}
		return record(ctx, tx, "story.publish", id, nil, nil)
	})
	if err != nil {
		return err
	}
	if changed {
		api.SetToken(w, h.db, tok)
		api.Purge(w, s.purgeTags(false)...)
	}
	writeStory(w, r, http.StatusOK, s, uid)
	return nil
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	pre := api.ParseOptionalPrecondition(r, nil)
	wasPublic := false
	s, tok, err := h.authorTx(ctx, id, uid, func(tx pgx.Tx, s *Story) error {
		if !pre.Matches(s.Version) {
			return pre.Failed()
		}
		wasPublic = s.public()
		if err := tx.QueryRow(ctx, `update stories set deleted_at = now(), version = version + 1, updated_at = now()
			where id = $1 returning deleted_at, version`, id).Scan(&s.DeletedAt, &s.Version); err != nil {
			return err
		}
		return record(ctx, tx, "story.delete", id, nil, nil)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, s.purgeTags(wasPublic)...)
	api.Private(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
