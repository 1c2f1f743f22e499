package sharedlist_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/cache"
	"github.com/muejam/edge/appserver/discover"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
)

type req = apitest.Request

// startWithSocial starts the discovery feeds, which are shared lists, with the follow and
// block routes.
func startWithSocial(t *testing.T) *storylisttest.Env {
	return storylisttest.Start(t, func(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger) {
		discover.New(shared.DB, log, shared).Register(mux)
		social.New(shared.DB, log, nil).Register(mux)
	})
}

// feedTitles returns the titles of the first page of the new feed, asked by user without a
// read-your-writes token, and the response.
func feedTitles(t *testing.T, e *storylisttest.Env, user string) ([]string, *apitest.Response) {
	t.Helper()
	resp := e.Do(t, req{Method: "GET", Path: "/v1/discover?tab=new", User: user, WithoutToken: true})
	resp.Expect(t, http.StatusOK, "")
	var page struct {
		Data []struct{ Title string } `json:"data"`
	}
	apitest.DecodeJSON(t, resp, &page)
	var titles []string
	for _, s := range page.Data {
		titles = append(titles, s.Title)
	}
	return titles, resp
}

// A feed page is computed once: readers, anonymous or signed in, get it from the app's
// cache until a purge or a reader who has just written (a read-your-writes token) renews it.
func TestFeedComesFromTheAppCache(t *testing.T) {
	e := startWithSocial(t)
	id := e.Story("alice", "Before", "1 hour")
	before := []string{"Before"}
	// The first read carries the token of the write, so that the replica has it; it leaves
	// the page in the cache.
	e.Send(req{Method: "GET", Path: "/v1/discover?tab=new"}).Expect(t, http.StatusOK, "")
	if got, _ := feedTitles(t, e, ""); !slices.Equal(got, before) {
		t.Fatalf("first read: %v, want %v", got, before)
	}
	e.Exec("update stories set title = 'After' where id = $1", id) // behind the cache's back
	for _, user := range []string{"", "dave"} {
		if got, _ := feedTitles(t, e, user); !slices.Equal(got, before) {
			t.Errorf("read by %q after a write that purged nothing: %v, want the cached %v", user, got, before)
		}
	}
	// The writer's own read (its token) sees the write, and leaves the new page in the cache.
	e.Send(req{Method: "GET", Path: "/v1/discover?tab=new"}).Expect(t, http.StatusOK, "")
	if got, _ := feedTitles(t, e, "dave"); !slices.Equal(got, []string{"After"}) {
		t.Errorf("read after the writer's: %v, want [After]", got)
	}
}

// A block hides the blocked author's stories from the blocker at once, while the page that
// holds them stays in the shared cache for everyone else.
func TestBlockFiltersTheSharedPage(t *testing.T) {
	e := startWithSocial(t)
	e.Story("alice", "By Alice", "1 hour")
	e.Story("bob", "By Bob", "2 hours")
	e.Exec("insert into profiles (user_id, handle) values ('carol', 'carol')")
	e.Send(req{Method: "GET", Path: "/v1/discover?tab=new", User: "carol"}).Expect(t, http.StatusOK, "")
	all := []string{"By Alice", "By Bob"}
	if got, _ := feedTitles(t, e, "carol"); !slices.Equal(got, all) {
		t.Fatalf("before the block: %v, want %v", got, all)
	}
	if _, ok := cache.Get[social.BlockIndex](context.Background(), e.Cache, sharedlist.BlockIndexKey); !ok {
		t.Fatal("the block index is not in the app cache after a signed-in read")
	}
	e.Do(t, req{Method: "PUT", Path: "/v1/users/alice/block", User: "carol"}).Expect(t, http.StatusNoContent, "")
	if _, ok := cache.Get[social.BlockIndex](context.Background(), e.Cache, sharedlist.BlockIndexKey); ok {
		t.Fatal("the block index is still in the app cache after a block")
	}
	got, resp := feedTitles(t, e, "carol")
	if !slices.Equal(got, []string{"By Bob"}) {
		t.Errorf("carol after blocking alice: %v, want [By Bob]", got)
	}
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	if got, _ := feedTitles(t, e, ""); !slices.Equal(got, all) {
		t.Errorf("anonymous after carol's block: %v, want %v", got, all)
	}
	e.Do(t, req{Method: "DELETE", Path: "/v1/users/alice/block", User: "carol"}).Expect(t, http.StatusNoContent, "")
	if got, _ := feedTitles(t, e, "carol"); !slices.Equal(got, all) {
		t.Errorf("carol after unblocking alice: %v, want %v", got, all)
	}
}

// A viewer's page is the shared pages less the authors they blocked, made up to the limit
// from the pages after it: every page but the last is full, and the pages, in order, are the
// feed without those authors.
func TestFilteredPagesAreFullAndChain(t *testing.T) {
	e := startWithSocial(t)
	var want []int64
	for _, author := range []string{"alice", "bob", "alice", "alice", "alice", "bob", "alice", "alice", "alice", "alice", "bob", "bob", "alice"} {
		e.Story(author, "Story", "1 hour")
	}
	e.Exec("update stories set published_at = now() - (id || ' minutes')::interval") // no two at the same time
	rows, err := e.DB.Primary().Query(context.Background(), "select id from stories where author_id = 'bob' order by published_at desc, id desc")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	e.Exec("insert into profiles (user_id, handle) values ('carol', 'carol')")
	e.Exec("insert into blocks (blocker_id, blocked_id) values ('carol', 'alice')")
	for _, limit := range []int{1, 2, 3, 20} {
		ids, resps := e.Pages("/v1/discover?tab=new", "carol", limit)
		if !slices.Equal(ids, want) {
			t.Errorf("limit %d: carol's feed %v, want bob's %v", limit, ids, want)
		}
		for i, resp := range resps[:len(resps)-1] {
			var page struct{ Data []struct{ ID int64 } }
			apitest.DecodeJSON(t, resp, &page)
			if len(page.Data) == 0 {
				t.Errorf("limit %d: page %d is empty but has a next page", limit, i+1)
			}
		}
	}
}
