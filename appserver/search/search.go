// Package search serves full-text search over published stories and prefix suggestions
// for the search box.
//
// Search matches the query (web search syntax: words, "quoted phrases", -excluded, or) with
// PostgreSQL full-text search, English stemming, against each story's search document: its
// title, its author's handle and display name, its tags and its blurb (stories.search_doc,
// kept up to date by triggers, see migration 0004). Results are ranked by ts_rank boosted by
// the story's trending score: rank = ts_rank × (1 + ln(1 + trending score)), so relevance
// leads and engagement breaks near-ties. Suggestions are published story titles, tags in
// use and authors' handles starting with the query, in any letter case.
//
// Results are computed once for everyone and kept in the app's cache manager
// (package sharedlist), then filtered per viewer: anonymous callers get a public answer the
// edge stores (like the feeds, api.Feed), signed-in callers a private one without the stories
// of the users they blocked. Suggestions likewise, under api.Suggestions, except for a
// caller who has blocked users: theirs are queried for them (a tag is suggested only if a
// story they may see carries it), and private.
//
//	GET /v1/search?q=&limit=&cursor=   stories matching q, best first   public when anonymous
//	GET /v1/search/suggest?q=          up to 5 stories, tags, authors   public when anonymous
package search

import (
	"context"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/stories"
	"github.com/muejam/edge/appserver/storylist"
)

// Cache tags of search answers.
const (
	ResultsTag = "search"
	SuggestTag = "search:suggest"
)

// MaxQuery is the longest query, in characters.
const MaxQuery = 100

// SuggestLimit is how many suggestions of each kind are returned.
const SuggestLimit = 5

// Handler serves the search routes.
type Handler struct {
	db     *dbrouter.Router
	log    *zap.Logger
	shared *sharedlist.Shared
}

// New returns the search handlers, reading through db; answers computed for everyone are
// kept in shared's cache.
func New(db *dbrouter.Router, log *zap.Logger, shared *sharedlist.Shared) *Handler {
	return &Handler{db: db, log: log, shared: shared}
}

// Register adds the search routes to mux.
func (h *Handler) Register(mux api.Mux) {
	mux.Handle("GET /v1/search", api.Handle(h.log, h.search))
	mux.Handle("GET /v1/search/suggest", api.Handle(h.log, h.suggest))
}

// parseQuery reads ?q=: required, 1 to MaxQuery characters once trimmed, valid UTF-8
// (it reaches SQL), no control characters.
func parseQuery(r *http.Request) (string, error) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v := api.Validator{}
	v.Check(q != "", "q", "is required")
	v.Check(api.ValidText(q), "q", "must be valid UTF-8 text")
	v.Check(utf8.RuneCountInString(q) <= MaxQuery, "q", "must be at most 100 characters")
	v.Check(!strings.ContainsFunc(q, unicode.IsControl), "q", "must not contain control characters")
	return q, v.Err()
}

// resultCursor is the position in a list of results.
type resultCursor struct {
	Rank float64 `json:"rank"`
	ID   int64   `json:"id"`
}

// searchQuery returns the SQL and arguments of a page of results of q as everyone sees
// them: limit rows, each a Summary, its author's id and its rank, after the position after
// when it is not nil. The matches are ranked from the stories table alone (the GIN index,
// then one trending score lookup each), and only the page's rows are joined with what a
// Summary shows.
func searchQuery(q string, after *resultCursor, limit int) (string, storylist.Args) {
	args := storylist.Args{limit, q}
	matches := `select s.id, ts_rank(s.search_doc, websearch_to_tsquery('english', $2))::float8
			* (1 + ln(1 + coalesce((select t.score from story_trending t where t.story_id = s.id), 0))) as rank
		from stories s
		where s.search_doc @@ websearch_to_tsquery('english', $2) and ` + storylist.Public
	keyset := ""
	if after != nil {
		keyset = " where (m.rank, m.id) < (" + args.Add(after.Rank) + "::float8, " + args.Add(after.ID) + "::bigint)"
	}
	return `select ` + storylist.Columns + `, s.author_id, found.rank
		from (select m.id, m.rank from (` + matches + `) m` + keyset + ` order by m.rank desc, m.id desc limit $1) found
		join stories s on s.id = found.id join profiles p on p.user_id = s.author_id
		order by found.rank desc, found.id desc`, args
}

// results returns the shared page of results of q at page, from the app's cache or the
// database.
func (h *Handler) results(ctx context.Context, q string, page api.Page) (sharedlist.Page[storylist.Summary], error) {
	var after resultCursor
	more, err := page.After(&after)
	if err != nil {
		return sharedlist.Page[storylist.Summary]{}, err
	}
	cursor := &after
	if !more {
		cursor = nil
	}
	return storylist.LoadPage(ctx, h.shared, h.db, "search:"+page.Key()+":"+q, []string{ResultsTag}, page,
		func() (string, storylist.Args) { return searchQuery(q, cursor, page.Limit+1) },
		func(c *resultCursor) (*int64, []any) { return &c.ID, []any{&c.Rank} })
}

func (h *Handler) search(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	page, err := api.ParsePage(r)
	if err != nil {
		return err
	}
	viewer, err := h.shared.Viewer(ctx)
	if err != nil {
		return err
	}
	return sharedlist.Serve(w, r, viewer, api.Feed, []string{ResultsTag}, page, func(p api.Page) (sharedlist.Page[storylist.Summary], error) {
		return h.results(ctx, q, p)
	})
}

// StorySuggestion is a story whose title starts with the query.
type StorySuggestion struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
}

// Suggestions are what GET /v1/search/suggest answers.
type Suggestions struct {
	Stories []StorySuggestion `json:"stories"`
	Tags    []string          `json:"tags"`
	Authors []stories.Author  `json:"authors"`
}

// Prefix matching: x ~>=~ p and x ~<~ p || U+10FFFF, byte-wise, is "x starts with p"
// (every other character sorts below U+10FFFF), and a text_pattern_ops index serves it
// with p a parameter. $1 is the query.
const (
	prefixLow  = ` ~>=~ lower($1::text)`
	prefixHigh = ` ~<~ (lower($1::text) || chr(1114111))`
)

// suggestQueries return the SQL and arguments of the story, tag and author suggestions of
// $1 for viewer; each yields up to SuggestLimit rows.
func suggestQueries(q string, viewer sharedlist.Viewer) (storiesSQL, tagsSQL, authorsSQL string, args storylist.Args) {
	args = storylist.Args{q, SuggestLimit}
	hide := storylist.Hider(viewer, &args)
	storiesSQL = `select s.id, s.title from stories s
		where lower(s.title)` + prefixLow + ` and lower(s.title)` + prefixHigh + ` and ` + storylist.Public + hide("s.author_id") + `
		order by lower(s.title) using ~<~, s.id limit $2`
	tagsSQL = `select tg.name from tags tg
		where tg.name` + prefixLow + ` and tg.name` + prefixHigh + `
		and exists (select 1 from story_tags st join stories s on s.id = st.story_id
			where st.tag_id = tg.id and ` + storylist.Public + hide("s.author_id") + `)
		order by tg.name using ~<~ limit $2`
	authorsSQL = `select p.handle, p.display_name from profiles p
		where lower(p.handle)` + prefixLow + ` and lower(p.handle)` + prefixHigh + hide("p.user_id") + `
		and exists (select 1 from stories s where s.author_id = p.user_id and ` + storylist.Public + `)
		order by lower(p.handle) using ~<~ limit $2`
	return storiesSQL, tagsSQL, authorsSQL, args
}

func (h *Handler) suggest(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	viewer, err := h.shared.Viewer(ctx)
	if err != nil {
		return err
	}
	var out Suggestions
	if viewer.Blocking() {
		out, err = h.suggestions(ctx, q, viewer)
	} else {
		out, err = sharedlist.Load(ctx, h.shared, api.Suggestions, "search:suggest:"+strings.ToLower(q), []string{SuggestTag},
			func(ctx context.Context) (Suggestions, error) { return h.suggestions(ctx, q, sharedlist.Viewer{}) })
	}
	if err != nil {
		return err
	}
	viewer.Cache(w, api.Suggestions, SuggestTag)
	api.Write(w, r, http.StatusOK, out)
	return nil
}

// suggestions queries the suggestions of q for viewer.
func (h *Handler) suggestions(ctx context.Context, q string, viewer sharedlist.Viewer) (Suggestions, error) {
	out := Suggestions{Stories: []StorySuggestion{}, Tags: []string{}, Authors: []stories.Author{}}
	storiesSQL, tagsSQL, authorsSQL, args := suggestQueries(q, viewer)
	db := h.db.Reader(ctx)
	rows, err := db.Query(ctx, storiesSQL, args...)
	if err == nil {
		out.Stories, err = pgx.CollectRows(rows, pgx.RowToStructByPos[StorySuggestion])
	}
	if err == nil {
		if rows, err = db.Query(ctx, tagsSQL, args...); err == nil {
			out.Tags, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
	}
	if err == nil {
		if rows, err = db.Query(ctx, authorsSQL, args...); err == nil {
			out.Authors, err = pgx.CollectRows(rows, pgx.RowToStructByPos[stories.Author])
		}
	}
	return out, err
}
