package stories

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/markdown"
)

// MaxContent bounds a chapter's markdown, in characters.
const MaxContent = 200_000

// Chapter is a chapter of a story. Lists leave out the content; ContentMarkdown, the source
// as written, is shown to the author only.
type Chapter struct {
	StoryID         int64     `json:"story_id"`
	Number          int       `json:"number"`
	Title           string    `json:"title"`
	ContentHTML     string    `json:"content_html,omitempty"`
	ContentMarkdown string    `json:"content_markdown,omitempty"`
	Version         int64     `json:"version"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// auditFields are the fields of the chapter an edit's audit event compares: the title, and
// the content by its SHA-256 (the audit log keeps no second copy of every draft).
func (c *Chapter) auditFields() map[string]any {
	sum := sha256.Sum256([]byte(c.ContentMarkdown))
	return map[string]any{"title": c.Title, "content_sha256": hex.EncodeToString(sum[:])}
}

// record writes the audit event of action on the chapter in tx; its target id is
// STORY/NUMBER.
func (c *Chapter) record(ctx context.Context, tx pgx.Tx, action string, before, after map[string]any) error {
	return audit.Record(ctx, tx, audit.Event{Action: action, TargetType: "chapter",
		TargetID: strconv.FormatInt(c.StoryID, 10) + "/" + strconv.Itoa(c.Number), Before: before, After: after})
}

const chapterColumns = "story_id, number, title, content_md, content_html, version, created_at, updated_at"

// storyAccessSQL selects the author of story $1 and whether it is public.
const storyAccessSQL = "select author_id, published_at is not null and deleted_at is null from stories where id = $1"

// chaptersSQL selects the chapters of story $1 without their content, in order, after
// number $2, at most $3.
const chaptersSQL = `select story_id, number, title, '', '', version, created_at, updated_at
	from chapters where story_id = $1 and number > $2 order by number limit $3`

// chapterSQL selects chapter $2 of story $1.
const chapterSQL = "select " + chapterColumns + " from chapters where story_id = $1 and number = $2"

func scanChapter(row pgx.Row) (Chapter, error) {
	var c Chapter
	err := row.Scan(&c.StoryID, &c.Number, &c.Title, &c.ContentMarkdown, &c.ContentHTML, &c.Version, &c.CreatedAt, &c.UpdatedAt)
	return c, err
}

// chapterPath reads the path's story id and chapter number: api.ErrNotFound when either is
// not a positive integer.
func chapterPath(r *http.Request) (id, n int64, err error) {
	if id, err = api.PathID(r, "id"); err == nil {
		n, err = api.PathID(r, "n")
	}
	return id, n, err
}

// readChapter reads chapter n of story id; api.ErrNotFound when there is none. lock takes
// the row lock of an update (in a transaction).
func readChapter(ctx context.Context, q querier, id, n int64, lock bool) (Chapter, error) {
	sql := chapterSQL
	if lock {
		sql += " for update"
	}
	c, err := scanChapter(q.QueryRow(ctx, sql, id, n))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, api.ErrNotFound
	}
	return c, err
}

// chapterInput is the body of POST .../chapters and PATCH .../chapters/{n}; absent fields of
// a PATCH are left as they are. Content is markdown.
type chapterInput struct {
	Title   *string `json:"title"`
	Content *string `json:"content"`
	Version *int64  `json:"version"`

	html string // Content rendered and sanitized
}

func (in *chapterInput) validate(creating bool) error {
	v := api.Validator{}
	v.Check(!creating || in.Version == nil, "version", "is not accepted when creating")
	v.Text("title", in.Title, api.TextRule{Required: creating, Min: 1, Max: MaxTitle})
	v.Text("content", in.Content, api.TextRule{Required: creating, KeepSpace: true, NotBlank: true, Max: MaxContent, Controls: api.AnyControls})
	if err := v.Err(); err != nil {
		return err
	}
	if in.Content != nil {
		var err error
		if in.html, err = markdown.Render(*in.Content); err != nil {
			return err
		}
	}
	return nil
}

// view fits a chapter to its viewer: the markdown source is the author's only.
func view(c Chapter, author bool) Chapter {
	if !author {
		c.ContentMarkdown = ""
	}
	return c
}

// chapterCursor is the position in a story's list of chapters.
type chapterCursor struct {
	Number int `json:"n"`
}

// storyAccess reads who wrote story id and whether anyone may see it, and checks that
// viewer may: api.ErrNotFound otherwise. It reports whether viewer is the author.
func storyAccess(ctx context.Context, q querier, id int64, viewer string) (author bool, err error) {
	var authorID string
	var public bool
	err = q.QueryRow(ctx, storyAccessSQL, id).Scan(&authorID, &public)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, api.ErrNotFound
	}
	if err != nil {
		return false, err
	}
	author = viewer != "" && viewer == authorID
	if !public && !author {
		return false, api.ErrNotFound
	}
	return author, nil
}

// cacheChapters sets the cache headers of a chapter view: private for the author, else
// public (with an ETag of its bytes).
func cacheChapters(w http.ResponseWriter, id int64, author bool) {
	if author {
		api.Private(w)
	} else {
		api.Public(w, api.StoryMetadata, CacheTag(id))
	}
}

func (h *Handler) createChapter(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	var in chapterInput
	if err := api.Decode(w, r, &in); err != nil {
		return err
	}
	if err := in.validate(true); err != nil {
		return err
	}
	var c Chapter
	_, tok, err := h.authorTx(ctx, id, uid, func(tx pgx.Tx, s *Story) error {
		// The story row is locked: the next number is ours alone.
		if err := tx.QueryRow(ctx, "update stories set chapter_seq = chapter_seq + 1, updated_at = now() where id = $1 returning chapter_seq",
			id).Scan(&s.ChapterCount); err != nil {
			return err
		}
		var err error
		c, err = scanChapter(tx.QueryRow(ctx, `insert into chapters (story_id, number, title, content_md, content_html)
			values ($1, $2, $3, $4, $5) returning `+chapterColumns, id, s.ChapterCount, *in.Title, *in.Content, in.html))
		if err != nil {
			return err
		}
		return c.record(ctx, tx, "chapter.create", nil, nil)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, CacheTag(id)) // the story (chapter count, list) and its chapters
	api.Private(w)
	w.Header().Set("Location", "/v1/stories/"+strconv.FormatInt(id, 10)+"/chapters/"+strconv.Itoa(c.Number))
	w.Header().Set("ETag", api.ETag(c.Version))
	api.Write(w, r, http.StatusCreated, c)
	return nil
}

func (h *Handler) listChapters(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	viewer, _ := identity.User(ctx)
	id, err := api.PathID(r, "id")
	if err != nil {
		return err
	}
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	var after chapterCursor
	if _, err := page.After(&after); err != nil {
		return err
	}
	q := h.db.Reader(ctx)
	author, err := storyAccess(ctx, q, id, viewer)
	if err != nil {
		return err
	}
	rows, err := q.Query(ctx, chaptersSQL, id, after.Number, page.Limit+1)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Chapter, error) { return scanChapter(row) })
	if err != nil {
		return err
	}
	list, next := api.Trim(page, list, func(c Chapter) any { return chapterCursor{c.Number} })
	cacheChapters(w, id, author)
	api.WriteList(w, r, list, next)
	return nil
}

func (h *Handler) getChapter(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	viewer, _ := identity.User(ctx)
	id, n, err := chapterPath(r)
	if err != nil {
		return err
	}
	q := h.db.Reader(ctx)
	author, err := storyAccess(ctx, q, id, viewer)
	if err != nil {
		return err
	}
	c, err := readChapter(ctx, q, id, n, false)
	if err != nil {
		return err
	}
	cacheChapters(w, id, author)
	if author {
		w.Header().Set("ETag", api.ETag(c.Version)) // what If-Match sends back
	}
	api.Write(w, r, http.StatusOK, view(c, author))
	return nil
}

func (h *Handler) updateChapter(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	uid, _ := identity.User(ctx)
	id, n, err := chapterPath(r)
	if err != nil {
		return err
	}
	var in chapterInput
	pre, err := decodeEdit(w, r, &in, &in.Version)
	if err != nil {
		return err
	}
	var c Chapter
	_, tok, err := h.authorTx(ctx, id, uid, func(tx pgx.Tx, _ *Story) error {
		var err error
		c, err = readChapter(ctx, tx, id, n, true)
		switch {
		case err != nil:
			return err
		case !pre.Matches(c.Version):
			return pre.Failed()
		}
		before := c.auditFields()
		var html *string
		if in.Content != nil {
			html = &in.html
		}
		c, err = scanChapter(tx.QueryRow(ctx, `update chapters set title = coalesce($3, title),
				content_md = coalesce($4, content_md), content_html = coalesce($5, content_html),
				version = version + 1, updated_at = now()
			where story_id = $1 and number = $2 returning `+chapterColumns, id, n, in.Title, in.Content, html))
		if err != nil {
			return err
		}
		b, a := audit.Changes(before, c.auditFields())
		return c.record(ctx, tx, "chapter.edit", b, a)
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	api.Purge(w, CacheTag(id)) // the story (chapter count, list) and its chapters
	api.Private(w)
	w.Header().Set("ETag", api.ETag(c.Version))
	api.Write(w, r, http.StatusOK, c)
	return nil
}
