// Package storylist is what the lists of stories (the discovery feeds, search results)
// share: the Summary a list shows of a story, the SQL that reads it, how a page of such a
// list is loaded for everyone (LoadPage), and a query's arguments built piece by piece,
// with the condition that hides the stories of the authors a viewer blocked.
package storylist

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/stories"
)

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

// Columns are the columns Scan reads, from stories s joined with the author's profiles p
// (From).
const Columns = `s.id, p.handle, p.display_name, s.title, s.blurb,
	coalesce((select array_agg(t.name order by t.name) from story_tags st join tags t on t.id = st.tag_id
		where st.story_id = s.id), '{}'), s.chapter_seq, s.published_at`

// From joins stories s with their authors' profiles p.
const From = ` from stories s join profiles p on p.user_id = s.author_id `

// Public is the condition of stories anyone may see, the predicate of the feeds' partial
// indexes.
const Public = `s.published_at is not null and s.deleted_at is null`

// Scan reads a row that starts with Columns; extra receives the columns after them (a
// cursor position).
func Scan(row pgx.CollectableRow, extra ...any) (Summary, error) {
	var s Summary
	err := row.Scan(append([]any{&s.ID, &s.Author.Handle, &s.Author.DisplayName, &s.Title, &s.Blurb,
		&s.Tags, &s.ChapterCount, &s.PublishedAt}, extra...)...)
	return s, err
}

// item is a Summary with its author and position in its list; it is encoded as the Summary.
type item[C any] struct {
	Summary
	author string
	pos    C
}

// LoadPage returns the page at page of a list of stories as everyone sees it, under the
// api.Feed policy: from the app's cache under key and tags, else read through db's Reader
// with the SQL and arguments query returns (built only then). The query yields one row more than page.Limit, each Columns followed
// by its author's id and the columns of its position in the list, of type C, which is
// also the cursor of the item: cursor(c) returns where c keeps the story's id, which
// LoadPage sets from the row's, and where c receives those columns.
func LoadPage[C any](ctx context.Context, shared *sharedlist.Shared, db *dbrouter.Router, key string, tags []string,
	page api.Page, query func() (string, Args), cursor func(c *C) (id *int64, cols []any)) (sharedlist.Page[Summary], error) {
	var none sharedlist.Page[Summary]
	return sharedlist.Load(ctx, shared, api.Feed, key, tags, func(ctx context.Context) (sharedlist.Page[Summary], error) {
		sql, args := query()
		rows, err := db.Reader(ctx).Query(ctx, sql, args...)
		if err != nil {
			return none, err
		}
		list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (item[C], error) {
			var it item[C]
			id, cols := cursor(&it.pos)
			var err error
			it.Summary, err = Scan(row, append([]any{&it.author}, cols...)...)
			*id = it.ID
			return it, err
		})
		if err != nil {
			return none, err
		}
		sp, err := sharedlist.NewPage(page, list, func(it item[C]) string { return it.author }, func(it item[C]) any { return it.pos })
		out := sharedlist.Page[Summary]{Items: make([]Summary, len(sp.Items)), Authors: sp.Authors, Ends: sp.Ends, Next: sp.Next, Body: sp.Body, Tags: sp.Tags}
		for i, it := range sp.Items {
			out.Items[i] = it.Summary
		}
		return out, err
	})
}

// Args are the arguments of a query built piece by piece.
type Args []any

// Add appends an argument and returns its placeholder ("$n").
func (a *Args) Add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// Hider returns a function giving the condition, to append to a where clause, that drops
// rows whose author (the column col) v blocked: "" when v blocks nobody. The viewer's id is
// added to args, once, when it is needed.
func Hider(v sharedlist.Viewer, args *Args) func(col string) string {
	if !v.Blocking() {
		return func(string) string { return "" }
	}
	viewer := args.Add(v.User)
	return func(col string) string { return " and " + social.NotBlocked(col, viewer) }
}
