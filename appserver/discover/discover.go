// Package discover serves the discovery feeds of published stories: new and trending (the
// scores package trending computes), by tag too.
//
// Feeds list published, not deleted stories, keyset-paginated with opaque cursors. They are
// cacheable by the edge under the api.Feed policy and feed:new or feed:trending, plus
// tag:NAME when filtered by a tag; stories purges feed:new when a story enters or leaves the
// feeds, and trending scores change only when the job runs. Pages are computed once for
// everyone and kept in the app's cache (package sharedlist); a signed-in caller gets a
// private answer, without the stories of the users they blocked.
//
//	GET /v1/discover?tab=new|trending&tag=&limit=&cursor=   a feed, newest or trending first   public or private
package discover

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/stories"
	"github.com/muejam/edge/appserver/storylist"
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

// Handler serves the discovery feeds.
type Handler struct {
	db     *dbrouter.Router
	log    *zap.Logger
	shared *sharedlist.Shared
}

// New returns the discovery handlers, reading through db; feeds are computed once for
// everyone and kept in shared's cache.
func New(db *dbrouter.Router, log *zap.Logger, shared *sharedlist.Shared) *Handler {
	return &Handler{db: db, log: log, shared: shared}
}

// Register adds the discovery routes to mux.
func (h *Handler) Register(mux api.Mux) {
	mux.Handle("GET /v1/discover", api.Handle(h.log, h.feed))
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
	page, err := api.ParsePage(r)
	if err != nil {
		return f, err
	}
	return f.at(page)
}

// at returns f for page, whose cursor must be one of f's tab.
func (f feedRequest) at(page api.Page) (feedRequest, error) {
	f.page, f.after = page, nil
	var after feedCursor
	ok, err := page.After(&after)
	switch {
	case err != nil:
		return f, err
	case ok && after.Tab != f.tab:
		return f, &api.Error{Code: "invalid_request", Message: "validation failed",
			Details: map[string]string{"cursor": "is a cursor of another tab"}}
	case ok:
		f.after = &after
	}
	return f, nil
}

// tags are the cache tags of f's feed: those its pages are kept under, at the edge and in
// the app's cache.
func (f feedRequest) tags() []string {
	tags := []string{stories.FeedNewTag}
	if f.tab == TabTrending {
		tags = []string{FeedTrendingTag}
	}
	if f.tag != "" {
		tags = append(tags, TagCacheTag(f.tag))
	}
	return tags
}

// query returns the SQL and arguments of a feed page as everyone sees it: one row more
// than the page, each a Summary followed by its author's id and its cursor position
// (published_at or score).
func (f feedRequest) query() (string, storylist.Args) {
	args := storylist.Args{f.page.Limit + 1}
	var sql strings.Builder
	sql.WriteString("select " + storylist.Columns + ", s.author_id")
	if f.tab == TabTrending {
		sql.WriteString(", t.score from story_trending t join stories s on s.id = t.story_id join profiles p on p.user_id = s.author_id where " + storylist.Public)
		if f.after != nil {
			sql.WriteString(" and (t.score, t.story_id) < (" + args.Add(f.after.Score) + "::float8, " + args.Add(f.after.ID) + "::bigint)")
		}
	} else {
		sql.WriteString(", s.published_at" + storylist.From + "where " + storylist.Public)
		if f.after != nil {
			sql.WriteString(" and (s.published_at, s.id) < (" + args.Add(f.after.At) + "::timestamptz, " + args.Add(f.after.ID) + "::bigint)")
		}
	}
	if f.tag != "" {
		sql.WriteString(" and exists (select 1 from story_tags st join tags tg on tg.id = st.tag_id where st.story_id = s.id and tg.name = " + args.Add(f.tag) + ")")
	}
	if f.tab == TabTrending {
		sql.WriteString(" order by t.score desc, t.story_id desc limit $1")
	} else {
		sql.WriteString(" order by s.published_at desc, s.id desc limit $1")
	}
	return sql.String(), args
}

// position returns where a feed cursor c of f's tab keeps its story's id and receives the
// position columns of f.query (storylist.LoadPage).
func (f feedRequest) position(c *feedCursor) (*int64, []any) {
	c.Tab = f.tab
	if f.tab == TabTrending {
		return &c.ID, []any{&c.Score}
	}
	return &c.ID, []any{&c.At}
}

// load returns the shared page of f at page, from the app's cache or the database.
func (h *Handler) load(ctx context.Context, f feedRequest, page api.Page) (sharedlist.Page[storylist.Summary], error) {
	f, err := f.at(page)
	if err != nil {
		return sharedlist.Page[storylist.Summary]{}, err
	}
	return storylist.LoadPage(ctx, h.shared, h.db, "discover:"+f.tab+":"+f.tag+":"+page.Key(), f.tags(), page, f.query, f.position)
}

func (h *Handler) feed(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	f, err := parseFeed(r)
	if err != nil {
		return err
	}
	viewer, err := h.shared.Viewer(ctx)
	if err != nil {
		return err
	}
	return sharedlist.Serve(w, r, viewer, api.Feed, f.tags(), f.page, func(p api.Page) (sharedlist.Page[storylist.Summary], error) {
		return h.load(ctx, f, p)
	})
}
