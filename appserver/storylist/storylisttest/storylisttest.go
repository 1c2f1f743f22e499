// Package storylisttest helps the tests of the packages that list stories or record what
// readers do with them (discover, search, engagement, trending, sharedlist): a test server
// whose rows are written straight to the primary.
package storylisttest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/cache"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/sharedlist"
)

// Env is a test server (apitest) whose tests also write rows straight to the primary;
// requests sent with Send carry the read-your-writes token of the last such write, so the
// replica's answers include it.
type Env struct {
	*apitest.Server
	Cache *cache.Manager // the app cache of the routes
	t     testing.TB
	tok   string
}

// Start starts a test server with the routes register adds, which keep answers computed for
// everyone in shared's cache: an app cache manager (L1 only) that the Cache-Purge of a
// response invalidates before it goes out, as in the app server.
func Start(t testing.TB, register func(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger)) *Env {
	return start(t, apitest.Options{}, register)
}

// StartSeeded is Start on a copy of the seeded template (apitest.Options.Seeded), for the
// query plan tests.
func StartSeeded(t testing.TB, register func(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger)) *Env {
	return start(t, apitest.Options{Seeded: true}, register)
}

func start(t testing.TB, opts apitest.Options, register func(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger)) *Env {
	c := apitest.Cache(t)
	opts.Wrap = api.InvalidateOnPurge(c.Invalidate, zaptest.NewLogger(t))
	return &Env{Server: apitest.Start(t, opts, func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
		register(mux, &sharedlist.Shared{Cache: c, DB: db, TTL: apitest.CacheTTLs}, log)
	}), t: t, Cache: c}
}

// Exec runs sql in one transaction on the primary and returns the transaction's now().
func (e *Env) Exec(sql string, args ...any) time.Time {
	e.t.Helper()
	ctx := context.Background()
	var now time.Time
	tok, err := e.DB.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "select now()").Scan(&now)
	})
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	e.tok = e.DB.EncodeToken(tok)
	return now
}

// Sync makes the next requests see everything committed so far, by anyone.
func (e *Env) Sync() { e.Exec("select 1") }

// Send sends r with the token of the last write.
func (e *Env) Send(r apitest.Request) *apitest.Response {
	e.t.Helper()
	r.Header = map[string]string{dbrouter.TokenHeader: e.tok}
	return e.Do(e.t, r)
}

// Story inserts a story of author (whose profile it creates, with author as handle and
// display name in title case), published ago (an interval such as "2 hours"), or a draft
// when ago is "", with tags; it returns the story's id.
func (e *Env) Story(author, title, ago string, tags ...string) int64 {
	e.t.Helper()
	ctx := context.Background()
	var id int64
	tok, err := e.DB.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "insert into profiles (user_id, handle, display_name) values ($1, $1, initcap($1)) on conflict do nothing", author); err != nil {
			return err
		}
		var published *string
		if ago != "" {
			published = &ago
		}
		if err := tx.QueryRow(ctx, `insert into stories (author_id, title, chapter_seq, published_at)
			values ($1, $2, 1, now() - $3::interval) returning id`, author, title, published).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "insert into tags (name) select unnest($1::text[]) on conflict do nothing", tags); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "insert into story_tags (story_id, tag_id) select $1, id from tags where name = any($2)", id, tags)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.tok = e.DB.EncodeToken(tok)
	return id
}

// Pages fetches every page of the list at path (a URL with a query) as user, limit items
// a page, and returns the ids of the items in order and the responses.
func (e *Env) Pages(path, user string, limit int) ([]int64, []*apitest.Response) {
	e.t.Helper()
	var ids []int64
	var resps []*apitest.Response
	cursor := ""
	for range 100 {
		resp := e.Send(apitest.Request{Method: "GET", Path: fmt.Sprintf("%s&limit=%d&cursor=%s", path, limit, url.QueryEscape(cursor)), User: user})
		resp.Expect(e.t, http.StatusOK, "")
		var page struct {
			Data       []struct{ ID int64 } `json:"data"`
			NextCursor *string              `json:"next_cursor"`
		}
		apitest.DecodeJSON(e.t, resp, &page)
		if len(page.Data) > limit {
			e.t.Fatalf("%s: %d items, limit %d", path, len(page.Data), limit)
		}
		for _, s := range page.Data {
			ids = append(ids, s.ID)
		}
		resps = append(resps, resp)
		if page.NextCursor == nil {
			return ids, resps
		}
		cursor = *page.NextCursor
	}
	e.t.Fatal("more than 100 pages")
	return nil, nil
}
