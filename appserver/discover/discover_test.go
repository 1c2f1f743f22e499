package discover

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/storylist"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
	"github.com/muejam/edge/appserver/trending"
)

type req = apitest.Request

func start(t *testing.T) *storylisttest.Env { return storylisttest.Start(t, register) }

func register(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger) {
	New(shared.DB, log, shared).Register(mux)
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

	var page struct{ Data []storylist.Summary }
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
	if _, err := trending.New(e.DB, 0, zaptest.NewLogger(t)).Compute(context.Background()); err != nil {
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
