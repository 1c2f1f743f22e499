// Package discover serves the discovery feeds of published stories (new and trending, by tag
// too), records the engagement trending is computed from (likes and reads), and runs the
// trending job (Trending).
//
// Feeds list published, not deleted stories, keyset-paginated with opaque cursors. They are
// cacheable by the edge under the api.Feed policy and feed:new or feed:trending, plus
// tag:NAME when filtered by a tag; stories purges feed:new when a story enters or leaves the
// feeds, and trending scores change only when the job runs. A signed-in caller who has
// blocked users does not see their stories, and gets a private answer.
//
//	GET    /v1/discover?tab=new|trending&tag=&limit=&cursor=   a feed, newest or trending first   public or private
//	PUT    /v1/stories/{id}/like                               like a story (idempotent)          signed in
//	DELETE /v1/stories/{id}/like                               take the like back (idempotent)    signed in
//	POST   /v1/stories/{id}/reads                              record a read                      anyone
package discover

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/stories"
)

// FeedTrendingTag is the cache tag of the trending feed; stories.FeedNewTag is the new one's.
const FeedTrendingTag = "feed:trending"

// Tabs of GET /v1/discover.
const (
	TabNew      = "new"
	TabTrending = "trending"
)

// tagRE is the form of a tag name (the tags_name_format constraint).
var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,29}$`)

// TagCacheTag is the cache tag of feeds filtered by the tag name.
func TagCacheTag(name string) string { return "tag:" + name }

// Summary is a story as lists show it.
type Summary struct {
	ID           int64          `json:"id"`
	Author       stories.Author `json:"author"`
	Title        string         `json:"title"`
	Blurb        string         `json:"blurb"`
	Tags         []string       `json:"tags"`
	ChapterCount int            `json:"chapter_count"`
	PublishedAt  time.Time      `json:"published_at"`
}

// SummaryColumns are the columns ScanSummary reads, from stories s joined with the
// author's profiles p (SummaryFrom).
const SummaryColumns = `s.id, p.handle, p.display_name, s.title, s.blurb,
	coalesce((select array_agg(t.name order by t.name) from story_tags st join tags t on t.id = st.tag_id
		where st.story_id = s.id), '{}'), s.chapter_seq, s.published_at`

// SummaryFrom joins stories s with their authors' profiles p.
const SummaryFrom = ` from stories s join profiles p on p.user_id = s.author_id `

// Public is the condition of stories anyone may see, the predicate of the feeds' partial
// indexes.
const Public = `s.published_at is not null and s.deleted_at is null`

// ScanSummary reads a row that starts with SummaryColumns; extra receives the columns after
// them (a cursor position).
func ScanSummary(row pgx.CollectableRow, extra ...any) (Summary, error) {
	var s Summary
	err := row.Scan(append([]any{&s.ID, &s.Author.Handle, &s.Author.DisplayName, &s.Title, &s.Blurb,
		&s.Tags, &s.ChapterCount, &s.PublishedAt}, extra...)...)
	return s, err
}

// Args are the arguments of a query built piece by piece.
type Args []any

// Add appends an argument and returns its placeholder ("$n").
func (a *Args) Add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// Viewer is who asks for a list of stories.
type Viewer struct {
	User     string // "" when anonymous
	Blocking bool   // the user has blocked someone: their stories are hidden
}

// LoadViewer returns the request's user and whether they have blocked anyone.
func LoadViewer(ctx context.Context, db dbrouter.Querier) (Viewer, error) {
	var v Viewer
	v.User, _ = identity.User(ctx)
	var err error
	v.Blocking, err = social.BlocksAnyone(ctx, db, v.User)
	return v, err
}

// Hider returns a function giving the condition, to append to a where clause, that drops
// rows whose author (the column col) the viewer blocked: "" when the viewer blocks nobody.
// The viewer's id is added to args, once, when it is needed.
func (v Viewer) Hider(args *Args) func(col string) string {
	if !v.Blocking {
		return func(string) string { return "" }
	}
	viewer := args.Add(v.User)
	return func(col string) string { return " and " + social.NotBlocked(col, viewer) }
}

// Cache marks a list answer: public under the policy of kind and tags, one variant per
// viewer, unless the viewer's blocks shaped it.
func (v Viewer) Cache(w http.ResponseWriter, kind api.Resource, tags ...string) {
	if v.Blocking {
		api.Private(w)
		return
	}
	api.PublicPerViewer(w, kind, tags...)
}

// Handler serves the discovery and engagement routes.
type Handler struct {
	db  *dbrouter.Router
	log *zap.Logger
}

// New returns the discovery handlers, reading and writing through db.
func New(db *dbrouter.Router, log *zap.Logger) *Handler {
	return &Handler{db: db, log: log}
}

// Register adds the discovery and engagement routes to mux.
func (h *Handler) Register(mux api.Mux) {
	mux.HandleFunc("GET /v1/discover", h.feed)
	mux.Handle("PUT /v1/stories/{id}/like", identity.Require(http.HandlerFunc(h.like)))
	mux.Handle("DELETE /v1/stories/{id}/like", identity.Require(http.HandlerFunc(h.unlike)))
	mux.HandleFunc("POST /v1/stories/{id}/reads", h.read)
}

// feedCursor is the position in a feed: published_at and id in the new feed, score and id
// in the trending one.
type feedCursor struct {
	Tab   string    `json:"tab"`
	At    time.Time `json:"at,omitzero"`
	Score float64   `json:"score,omitempty"`
	ID    int64     `json:"id"`
}

// feedRequest is a validated GET /v1/discover.
type feedRequest struct {
	tab, tag string
	page     api.Page
	after    *feedCursor // nil on the first page
}

func parseFeed(r *http.Request) (feedRequest, error) {
	q := r.URL.Query()
	f := feedRequest{tab: q.Get("tab"), tag: strings.ToLower(strings.TrimSpace(q.Get("tag")))}
	if f.tab == "" {
		f.tab = TabNew
	}
	v := api.Validator{}
	v.Check(f.tab == TabNew || f.tab == TabTrending, "tab", "must be new or trending")
	v.Check(f.tag == "" || tagRE.MatchString(f.tag), "tag", "must be 1 to 30 of a-z, 0-9 and '-', starting with a letter or digit")
	if err := v.Err(); err != nil {
		return f, err
	}
	var err error
	if f.page, err = api.ParsePage(r); err != nil {
		return f, err
	}
	var after feedCursor
	ok, err := f.page.After(&after)
	switch {
	case err != nil:
		return f, err
	case ok && after.Tab != f.tab:
		return f, &api.Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "validation failed",
			Details: map[string]string{"cursor": "is a cursor of another tab"}}
	case ok:
		f.after = &after
	}
	return f, nil
}

// query returns the SQL and arguments of a feed page for viewer: one row more than the
// page, each a Summary followed by its cursor position (published_at or score).
func (f feedRequest) query(viewer Viewer) (string, Args) {
	args := Args{f.page.Limit + 1}
	var sql strings.Builder
	sql.WriteString("select " + SummaryColumns)
	if f.tab == TabTrending {
		sql.WriteString(", t.score from story_trending t join stories s on s.id = t.story_id join profiles p on p.user_id = s.author_id where " + Public)
		if f.after != nil {
			sql.WriteString(" and (t.score, t.story_id) < (" + args.Add(f.after.Score) + "::float8, " + args.Add(f.after.ID) + "::bigint)")
		}
	} else {
		sql.WriteString(", s.published_at" + SummaryFrom + "where " + Public)
		if f.after != nil {
			sql.WriteString(" and (s.published_at, s.id) < (" + args.Add(f.after.At) + "::timestamptz, " + args.Add(f.after.ID) + "::bigint)")
		}
	}
	if f.tag != "" {
		sql.WriteString(" and exists (select 1 from story_tags st join tags tg on tg.id = st.tag_id where st.story_id = s.id and tg.name = " + args.Add(f.tag) + ")")
	}
	sql.WriteString(viewer.Hider(&args)("s.author_id"))
	if f.tab == TabTrending {
		sql.WriteString(" order by t.score desc, t.story_id desc limit $1")
	} else {
		sql.WriteString(" order by s.published_at desc, s.id desc limit $1")
	}
	return sql.String(), args
}

// feedItem is a Summary with its position in the feed; it is encoded as the Summary.
type feedItem struct {
	Summary
	pos feedCursor
}

func (h *Handler) feed(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, err := parseFeed(r)
	var viewer Viewer
	if err == nil {
		viewer, err = LoadViewer(ctx, h.db.Reader(ctx))
	}
	var list []feedItem
	if err == nil {
		sql, args := f.query(viewer)
		var rows pgx.Rows
		rows, err = h.db.Reader(ctx).Query(ctx, sql, args...)
		if err == nil {
			list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (feedItem, error) {
				it := feedItem{pos: feedCursor{Tab: f.tab}}
				var err error
				if f.tab == TabTrending {
					it.Summary, err = ScanSummary(row, &it.pos.Score)
				} else {
					it.Summary, err = ScanSummary(row, &it.pos.At)
				}
				it.pos.ID = it.ID
				return it, err
			})
		}
	}
	if err != nil {
		api.Fail(w, r, h.log, err)
		return
	}
	list, next := api.Trim(f.page, list, func(it feedItem) any { return it.pos })
	tags := []string{stories.FeedNewTag}
	if f.tab == TabTrending {
		tags = []string{FeedTrendingTag}
	}
	if f.tag != "" {
		tags = append(tags, TagCacheTag(f.tag))
	}
	viewer.Cache(w, api.Feed, tags...)
	api.WriteList(w, r, list, next)
}
