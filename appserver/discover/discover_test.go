package discover

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/cache"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/discover/discovertest"
	"github.com/muejam/edge/appserver/internal/apitest"
)

type req = apitest.Request

func start(t *testing.T) *discovertest.Env {
	return discovertest.Start(t, func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger, c *cache.Manager) {
		New(db, log, &Shared{Cache: c, DB: db, TTL: apitest.CacheTTLs}).Register(mux)
	})
}

func TestFeedNew(t *testing.T) {
	e := start(t)
	old := e.Story("alice", "Old", "3 days", "fantasy")
	mid := e.Story("bob", "Mid", "2 days")
	e.Exec("update stories set published_at = (select published_at from stories where id = $1) where id = $2", mid, old) // a tie
	recent := e.Story("alice", "Recent", "1 hour", "fantasy", "horror")
	e.Story("alice", "Draft", "", "fantasy")
	deleted := e.Story("bob", "Deleted", "5 hours", "fantasy")
	e.Exec("update stories set deleted_at = now() where id = $1", deleted)
	want := []int64{recent, max(old, mid), min(old, mid)}

	for _, limit := range []int{1, 2, 20} {
		ids, resps := e.Pages("/v1/discover?tab=new", "", limit)
		if !slices.Equal(ids, want) {
			t.Errorf("limit %d: new feed %v, want %v", limit, ids, want)
		}
		resps[0].ExpectHeader(t, "Cache-Control", "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600")
		resps[0].ExpectHeader(t, "Cache-Tags", "feed:new")
		resps[0].ExpectHeader(t, "Vary", "X-Viewer-Filter") // no reader who blocks anyone gets the anonymous copy
	}
	ids, resps := e.Pages("/v1/discover?", "carol", 20) // the default tab, for a user who blocks nobody
	if !slices.Equal(ids, want) {
		t.Errorf("default feed %v, want %v", ids, want)
	}
	resps[0].ExpectHeader(t, "Cache-Control", "private, no-store") // the edge keeps no copy per viewer

	ids, resps = e.Pages("/v1/discover?tab=new&tag=Fantasy", "", 1)
	if !slices.Equal(ids, []int64{recent, old}) {
		t.Errorf("fantasy feed %v, want %v", ids, []int64{recent, old})
	}
	resps[0].ExpectHeader(t, "Cache-Tags", "feed:new tag:fantasy")
	if ids, _ := e.Pages("/v1/discover?tag=nosuchtag", "", 5); len(ids) != 0 {
		t.Errorf("unknown tag: %v", ids)
	}

	var page struct{ Data []Summary }
	apitest.DecodeJSON(t, e.Send(req{Method: "GET", Path: "/v1/discover?limit=1"}), &page)
	got := page.Data[0]
	if got.ID != recent || got.Title != "Recent" || got.Author.Handle != "alice" || got.Author.DisplayName != "Alice" ||
		!slices.Equal(got.Tags, []string{"fantasy", "horror"}) || got.ChapterCount != 1 || got.PublishedAt.IsZero() {
		t.Errorf("summary %+v", got)
	}
}

func TestFeedValidation(t *testing.T) {
	e := start(t)
	e.Story("alice", "One", "1 hour")
	e.Story("alice", "Two", "2 hours")
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	apitest.DecodeJSON(t, e.Send(req{Method: "GET", Path: "/v1/discover?tab=new&limit=1"}), &page)
	tests := []struct {
		query, field string
	}{
		{"tab=old", "tab"},
		{"tag=not%20ok", "tag"},
		{"tag=" + fmt.Sprintf("%031d", 0), "tag"},
		{"limit=0", "limit"},
		{"limit=101", "limit"},
		{"cursor=%25%25", "cursor"},
		{"tab=trending&cursor=" + page.NextCursor, "cursor"},
	}
	for _, tt := range tests {
		resp := e.Send(req{Method: "GET", Path: "/v1/discover?" + tt.query})
		resp.Expect(t, http.StatusBadRequest, "invalid_request")
		if d := resp.Err().Details; len(d) != 1 || d[tt.field] == "" {
			t.Errorf("%s: details %v, want %s", tt.query, d, tt.field)
		}
		resp.ExpectHeader(t, "Cache-Control", "no-store")
	}
}

func TestBlockedAuthorsAreHidden(t *testing.T) {
	e := start(t)
	a := e.Story("alice", "By Alice", "1 hour", "fantasy")
	b := e.Story("bob", "By Bob", "2 hours", "fantasy")
	e.Exec("insert into profiles (user_id, handle) values ('carol', 'carol'), ('dave', 'dave')")
	e.Exec("insert into blocks (blocker_id, blocked_id) values ('carol', 'alice')")
	e.Exec("insert into story_likes (story_id, user_id) values ($1, 'dave'), ($1, 'carol'), ($2, 'dave')", a, b)
	if _, err := NewTrending(e.DB, 0, zaptest.NewLogger(t)).Compute(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.Sync()
	for _, path := range []string{"/v1/discover?tab=new", "/v1/discover?tab=trending", "/v1/discover?tab=new&tag=fantasy"} {
		ids, resps := e.Pages(path, "carol", 20)
		if !slices.Equal(ids, []int64{b}) {
			t.Errorf("%s for carol: %v, want only bob's %d", path, ids, b)
		}
		resps[0].ExpectHeader(t, "Cache-Control", "private, no-store")
		ids, resps = e.Pages(path, "dave", 20)
		if !slices.Equal(ids, []int64{a, b}) {
			t.Errorf("%s for dave: %v, want %v", path, ids, []int64{a, b})
		}
		resps[0].ExpectHeader(t, "Cache-Control", "private, no-store")
		ids, resps = e.Pages(path, "", 20)
		if !slices.Equal(ids, []int64{a, b}) {
			t.Errorf("%s for anonymous: %v, want %v", path, ids, []int64{a, b})
		}
		resps[0].ExpectHeader(t, "Cache-Control", "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600")
	}
}

func TestLikes(t *testing.T) {
	e := start(t)
	id := e.Story("alice", "Liked", "1 hour")
	draft := e.Story("alice", "Draft", "")
	path := fmt.Sprintf("/v1/stories/%d/like", id)
	likes := func() (n int) {
		t.Helper()
		if err := e.DB.Primary().QueryRow(context.Background(), "select count(*) from story_likes where story_id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 2 {
		resp := e.Send(req{Method: "PUT", Path: path, User: "newcomer"}) // first sight of this user: a profile is made
		resp.Expect(t, http.StatusNoContent, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		resp.ExpectHeader(t, dbrouter.TokenHeader, "")
	}
	e.Send(req{Method: "PUT", Path: path, User: "bob"}).Expect(t, http.StatusNoContent, "")
	if n := likes(); n != 2 {
		t.Errorf("%d likes, want 2", n)
	}
	for range 2 {
		e.Send(req{Method: "DELETE", Path: path, User: "newcomer"}).Expect(t, http.StatusNoContent, "")
	}
	if n := likes(); n != 1 {
		t.Errorf("%d likes after an unlike, want 1", n)
	}
	e.Send(req{Method: "PUT", Path: path}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	e.Send(req{Method: "DELETE", Path: path}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	for _, p := range []string{fmt.Sprintf("/v1/stories/%d/like", draft), "/v1/stories/999999/like", "/v1/stories/x/like", "/v1/stories/-1/like"} {
		e.Send(req{Method: "PUT", Path: p, User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
		e.Send(req{Method: "DELETE", Path: p, User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	}
}

func TestReads(t *testing.T) {
	e := start(t)
	id := e.Story("alice", "Read", "1 hour")
	draft := e.Story("alice", "Draft", "")
	path := fmt.Sprintf("/v1/stories/%d/reads", id)
	for _, user := range []string{"", "", "bob", "bob", "carol"} {
		resp := e.Send(req{Method: "POST", Path: path, User: user})
		resp.Expect(t, http.StatusNoContent, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		resp.ExpectHeader(t, dbrouter.TokenHeader, "")
	}
	// An identified read of an earlier hour does not stop this hour's.
	e.Exec("update story_reads set read_at = read_at - interval '1 hour' where user_id = 'carol'")
	e.Send(req{Method: "POST", Path: path, User: "carol"}).Expect(t, http.StatusNoContent, "")
	var anonymous, identified int
	if err := e.DB.Primary().QueryRow(context.Background(),
		"select count(*) filter (where user_id is null), count(*) filter (where user_id is not null) from story_reads where story_id = $1", id).
		Scan(&anonymous, &identified); err != nil {
		t.Fatal(err)
	}
	if anonymous != 2 || identified != 3 {
		t.Errorf("%d anonymous and %d identified reads, want 2 and 3 (bob's second one in the hour not counted)", anonymous, identified)
	}
	e.Send(req{Method: "POST", Path: fmt.Sprintf("/v1/stories/%d/reads", draft)}).Expect(t, http.StatusNotFound, "not_found")
	e.Send(req{Method: "POST", Path: "/v1/stories/0/reads"}).Expect(t, http.StatusNotFound, "not_found")
}
