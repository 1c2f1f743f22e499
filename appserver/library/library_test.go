package library

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/stories"
)

func register(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
	stories.New(db, log).Register(mux)
	New(db, log).Register(mux)
}

type req = apitest.Request

// story creates a story of user with a chapter, published when publish is set, and returns
// its id.
func story(t *testing.T, s *apitest.Server, user, title string, publish bool) int64 {
	t.Helper()
	resp := s.Do(t, req{Method: "POST", Path: "/v1/stories", User: user, Body: map[string]any{"title": title}})
	resp.Expect(t, http.StatusCreated, "")
	var st stories.Story
	resp.Data(t, &st)
	path := fmt.Sprintf("/v1/stories/%d", st.ID)
	s.Do(t, req{Method: "POST", Path: path + "/chapters", User: user, Body: map[string]any{"title": "One", "content": "text"}}).
		Expect(t, http.StatusCreated, "")
	if publish {
		s.Do(t, req{Method: "POST", Path: path + "/publish", User: user}).Expect(t, http.StatusOK, "")
	}
	return st.ID
}

func createShelf(t *testing.T, s *apitest.Server, user, name string) Shelf {
	t.Helper()
	resp := s.Do(t, req{Method: "POST", Path: "/v1/library/shelves", User: user, Body: map[string]any{"name": name}})
	resp.Expect(t, http.StatusCreated, "")
	var sh Shelf
	resp.Data(t, &sh)
	return sh
}

func shelfPath(id int64, rest ...any) string {
	return fmt.Sprintf("/v1/library/shelves/%d", id) + fmt.Sprint(rest...)
}

func getShelfOf(t *testing.T, s *apitest.Server, user string, id int64) Shelf {
	t.Helper()
	resp := s.Do(t, req{Method: "GET", Path: shelfPath(id), User: user})
	resp.Expect(t, http.StatusOK, "")
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	var sh Shelf
	resp.Data(t, &sh)
	return sh
}

func storyIDs(items []Item) []int64 {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.StoryID
	}
	return ids
}

func TestShelves(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	resp := s.Do(t, req{Method: "POST", Path: "/v1/library/shelves", User: "alice", Body: map[string]any{"name": "  To Read "}})
	resp.Expect(t, http.StatusCreated, "")
	var sh Shelf
	resp.Data(t, &sh)
	if sh.Name != "To Read" || sh.StoryCount != 0 || sh.Stories == nil || len(sh.Stories) != 0 {
		t.Errorf("created %+v", sh)
	}
	resp.ExpectHeader(t, "Location", shelfPath(sh.ID))
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	resp.ExpectHeader(t, "Cache-Purge", "")
	if resp.Header.Get(dbrouter.TokenHeader) == "" {
		t.Error("create set no read-your-writes token")
	}

	// Names are unique per owner in any letter case; other owners may reuse them.
	s.Do(t, req{Method: "POST", Path: "/v1/library/shelves", User: "alice", Body: map[string]any{"name": "to READ"}}).
		Expect(t, http.StatusConflict, "shelf_name_taken")
	createShelf(t, s, "bob", "To Read")
	other := createShelf(t, s, "alice", "Favourites")

	// Rename: the same name in another case is fine; another shelf's name is not.
	resp = s.Do(t, req{Method: "PATCH", Path: shelfPath(sh.ID), User: "alice", Body: map[string]any{"name": "to read"}})
	resp.Expect(t, http.StatusOK, "")
	resp.Data(t, &sh)
	if sh.Name != "to read" || !sh.UpdatedAt.After(sh.CreatedAt) {
		t.Errorf("renamed %+v", sh)
	}
	s.Do(t, req{Method: "PATCH", Path: shelfPath(sh.ID), User: "alice", Body: map[string]any{"name": "FAVOURITES"}}).
		Expect(t, http.StatusConflict, "shelf_name_taken")
	s.Do(t, req{Method: "PATCH", Path: shelfPath(sh.ID), User: "bob", Body: map[string]any{"name": "mine"}}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: shelfPath(sh.ID), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: shelfPath(999999), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: "/v1/library/shelves/abc", User: "alice"}).Expect(t, http.StatusNotFound, "not_found")

	// Delete: the owner's only, once.
	s.Do(t, req{Method: "DELETE", Path: shelfPath(other.ID), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	resp = s.Do(t, req{Method: "DELETE", Path: shelfPath(other.ID), User: "alice"})
	resp.Expect(t, http.StatusNoContent, "")
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	s.Do(t, req{Method: "DELETE", Path: shelfPath(other.ID), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: shelfPath(other.ID), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	// Its name is free again.
	createShelf(t, s, "alice", "Favourites")
}

func TestShelfValidation(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	sh := createShelf(t, s, "alice", "x")
	for _, body := range []any{
		map[string]any{},
		map[string]any{"name": "   "},
		map[string]any{"name": strings.Repeat("é", 101)},
		map[string]any{"name": "tab\there"},
		map[string]any{"name": 5},
	} {
		for _, r := range []req{
			{Method: "POST", Path: "/v1/library/shelves", User: "alice", Body: body},
			{Method: "PATCH", Path: shelfPath(sh.ID), User: "alice", Body: body},
		} {
			resp := s.Do(t, r)
			resp.Expect(t, http.StatusBadRequest, "invalid_request")
			if d := resp.Err().Details; len(d) != 1 || d["name"] == "" {
				t.Errorf("%s %v: details %v", r.Method, body, d)
			}
		}
	}
	createShelf(t, s, "alice", strings.Repeat("é", 100))
	s.Do(t, req{Method: "POST", Path: "/v1/library/shelves", User: "alice", Body: `{"name": "a", "extra": 1}`}).Expect(t, http.StatusBadRequest, "invalid_json")
	for _, q := range []string{"limit=0", "limit=101", "cursor=!!"} {
		s.Do(t, req{Method: "GET", Path: "/v1/library?" + q, User: "alice"}).Expect(t, http.StatusBadRequest, "invalid_request")
		s.Do(t, req{Method: "GET", Path: shelfPath(sh.ID, "/stories?", q), User: "alice"}).Expect(t, http.StatusBadRequest, "invalid_request")
	}
}

func TestShelfStories(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	public := story(t, s, "bob", "Public", true)
	draft := story(t, s, "bob", "Bob's draft", false)
	own := story(t, s, "alice", "Alice's draft", false)
	gone := story(t, s, "bob", "Gone soon", true)
	sh := createShelf(t, s, "alice", "Mine")
	second := createShelf(t, s, "alice", "Second")

	for _, id := range []int64{public, public, own, gone} { // adding twice is fine
		resp := s.Do(t, req{Method: "PUT", Path: shelfPath(sh.ID, "/stories/", id), User: "alice"})
		resp.Expect(t, http.StatusNoContent, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	}
	s.Do(t, req{Method: "PUT", Path: shelfPath(second.ID, "/stories/", public), User: "alice"}).Expect(t, http.StatusNoContent, "")
	// Someone else's draft, a story that does not exist, someone else's shelf: 404.
	s.Do(t, req{Method: "PUT", Path: shelfPath(sh.ID, "/stories/", draft), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "PUT", Path: shelfPath(sh.ID, "/stories/999999"), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "PUT", Path: shelfPath(sh.ID, "/stories/", public), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "DELETE", Path: shelfPath(sh.ID, "/stories/", public), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "PUT", Path: shelfPath(999999, "/stories/", public), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")

	got := getShelfOf(t, s, "alice", sh.ID)
	if got.StoryCount != 3 || !slices.Equal(storyIDs(got.Stories), []int64{gone, own, public}) {
		t.Errorf("shelf %+v, want 3 stories, last added first", got)
	}
	if it := got.Stories[1]; it.Title != "Alice's draft" || it.Status != stories.StatusDraft || it.Author.Handle == "" {
		t.Errorf("item %+v", it)
	}
	if it := got.Stories[2]; it.Status != stories.StatusPublished {
		t.Errorf("item %+v", it)
	}

	// A story deleted by its author drops out of the shelf.
	s.Do(t, req{Method: "DELETE", Path: fmt.Sprintf("/v1/stories/%d", gone), User: "bob"}).Expect(t, http.StatusNoContent, "")
	got = getShelfOf(t, s, "alice", sh.ID)
	if got.StoryCount != 2 || !slices.Equal(storyIDs(got.Stories), []int64{own, public}) {
		t.Errorf("after deletion of a story: %+v", got)
	}

	// Removing is idempotent and leaves the other shelves alone.
	for range 2 {
		resp := s.Do(t, req{Method: "DELETE", Path: shelfPath(sh.ID, "/stories/", public), User: "alice"})
		resp.Expect(t, http.StatusNoContent, "")
	}
	if got = getShelfOf(t, s, "alice", sh.ID); !slices.Equal(storyIDs(got.Stories), []int64{own}) {
		t.Errorf("after removal: %+v", got)
	}
	if got = getShelfOf(t, s, "alice", second.ID); !slices.Equal(storyIDs(got.Stories), []int64{public}) {
		t.Errorf("the other shelf: %+v", got)
	}

	// Deleting a shelf deletes its items.
	s.Do(t, req{Method: "DELETE", Path: shelfPath(sh.ID), User: "alice"}).Expect(t, http.StatusNoContent, "")
	var items int
	if err := s.DB.Primary().QueryRow(context.Background(), "select count(*) from shelf_items where shelf_id = $1", sh.ID).Scan(&items); err != nil || items != 0 {
		t.Errorf("%d items (%v) left of a deleted shelf", items, err)
	}
}

func TestLibraryPages(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	var ids []int64
	for i := range PreviewStories + 3 {
		ids = append(ids, story(t, s, "bob", fmt.Sprint("story ", i), true))
	}
	names := []string{"delta", "Alpha", "charlie", "Echo", "bravo"}
	shelves := map[string]int64{}
	for _, n := range names {
		shelves[n] = createShelf(t, s, "alice", n).ID
	}
	createShelf(t, s, "bob", "aaa bob's")
	for _, id := range ids {
		s.Do(t, req{Method: "PUT", Path: shelfPath(shelves["charlie"], "/stories/", id), User: "alice"}).Expect(t, http.StatusNoContent, "")
	}

	// The library: shelves by name in any letter case, two at a time, each with its preview.
	var got []string
	path := "/v1/library?limit=2"
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		resp := s.Do(t, req{Method: "GET", Path: path, User: "alice"})
		resp.Expect(t, http.StatusOK, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		var page struct {
			Data       []Shelf `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		apitest.DecodeJSON(t, resp, &page)
		for _, sh := range page.Data {
			got = append(got, sh.Name)
			wantCount, wantPreview := 0, 0
			if sh.Name == "charlie" {
				wantCount, wantPreview = len(ids), PreviewStories
			}
			if sh.StoryCount != wantCount || len(sh.Stories) != wantPreview {
				t.Errorf("shelf %s: story_count %d with %d stories, want %d with %d", sh.Name, sh.StoryCount, len(sh.Stories), wantCount, wantPreview)
			}
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/library?limit=2&cursor=" + *page.NextCursor
	}
	if want := []string{"Alpha", "bravo", "charlie", "delta", "Echo"}; !slices.Equal(got, want) {
		t.Errorf("library %v, want %v", got, want)
	}

	// A shelf's stories, all of them, last added first.
	var order []int64
	path = shelfPath(shelves["charlie"], "/stories?limit=10")
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		resp := s.Do(t, req{Method: "GET", Path: path, User: "alice"})
		resp.Expect(t, http.StatusOK, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		var page struct {
			Data       []Item  `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		apitest.DecodeJSON(t, resp, &page)
		order = append(order, storyIDs(page.Data)...)
		if page.NextCursor == nil {
			break
		}
		path = shelfPath(shelves["charlie"], "/stories?limit=10&cursor=", *page.NextCursor)
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(order, want) {
		t.Errorf("shelf stories %v, want %v", order, want)
	}
	s.Do(t, req{Method: "GET", Path: shelfPath(shelves["charlie"], "/stories"), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
}

func TestAuthRequired(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	sh := createShelf(t, s, "alice", "x")
	untrusted := apitest.Start(t, apitest.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, register)
	routes := []struct{ method, path string }{
		{"GET", "/v1/library"},
		{"POST", "/v1/library/shelves"},
		{"GET", shelfPath(sh.ID)},
		{"PATCH", shelfPath(sh.ID)},
		{"DELETE", shelfPath(sh.ID)},
		{"GET", shelfPath(sh.ID, "/stories")},
		{"PUT", shelfPath(sh.ID, "/stories/1")},
		{"DELETE", shelfPath(sh.ID, "/stories/1")},
	}
	for _, rt := range routes {
		s.Do(t, req{Method: rt.method, Path: rt.path, Body: `{}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
		untrusted.Do(t, req{Method: rt.method, Path: rt.path, User: "alice", Body: `{}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	}
}

// TestConcurrentShelfNames: of simultaneous creations of one name, in various letter cases,
// exactly one wins.
func TestConcurrentShelfNames(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	const n = 10
	codes := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		name := "Later"
		if i%2 == 1 {
			name = "LATER"
		}
		wg.Go(func() {
			<-start
			codes[i] = s.Do(t, req{Method: "POST", Path: "/v1/library/shelves", User: "alice", Body: map[string]any{"name": name}}).Status
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(codes)
	want := slices.Repeat([]int{http.StatusConflict}, n)
	want[0] = http.StatusCreated
	if !slices.Equal(codes, want) {
		t.Errorf("statuses %v, want one 201 and the rest 409", codes)
	}
}
