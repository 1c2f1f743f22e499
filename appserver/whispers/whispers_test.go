package whispers

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
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/stories"
)

// start starts the whisper routes and those they need, with an app cache (L1 only) that a
// response's Cache-Purge invalidates before it goes out, as in the app server.
func start(t *testing.T) *apitest.Server { return startWith(t, apitest.Options{}) }

// startWith is start with opts (its Wrap is start's).
func startWith(t *testing.T, opts apitest.Options) *apitest.Server {
	t.Helper()
	c := apitest.Cache(t)
	opts.Wrap = api.InvalidateOnPurge(c.Invalidate, zaptest.NewLogger(t))
	return apitest.Start(t, opts,
		func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
			profiles.New(db, log).Register(mux)
			stories.New(db, log).Register(mux)
			social.New(db, log, nil).Register(mux)
			New(db, log, &sharedlist.Shared{Cache: c, DB: db, TTL: apitest.CacheTTLs}).Register(mux)
		})
}

type req = apitest.Request

func whisperPath(id int64, rest ...string) string {
	return fmt.Sprintf("/v1/whispers/%d", id) + strings.Join(rest, "")
}

// post posts body to path as user and returns the new whisper.
func post(t *testing.T, s *apitest.Server, user, path, body string) Whisper {
	t.Helper()
	resp := s.Do(t, req{Method: "POST", Path: path, User: user, Body: map[string]any{"body": body}})
	resp.Expect(t, http.StatusCreated, "")
	var w Whisper
	resp.Data(t, &w)
	return w
}

// publicStory creates and publishes a story of user and returns its id.
func publicStory(t *testing.T, s *apitest.Server, user string) int64 {
	t.Helper()
	resp := s.Do(t, req{Method: "POST", Path: "/v1/stories", User: user, Body: map[string]any{"title": "t"}})
	resp.Expect(t, http.StatusCreated, "")
	var st stories.Story
	resp.Data(t, &st)
	path := fmt.Sprintf("/v1/stories/%d", st.ID)
	s.Do(t, req{Method: "POST", Path: path + "/chapters", User: user, Body: map[string]any{"title": "One", "content": "text"}}).
		Expect(t, http.StatusCreated, "")
	s.Do(t, req{Method: "POST", Path: path + "/publish", User: user}).Expect(t, http.StatusOK, "")
	return st.ID
}

// feedPage is one page of a feed.
type feedPage struct {
	Data       []Whisper `json:"data"`
	NextCursor *string   `json:"next_cursor"`
}

func getFeed(t *testing.T, s *apitest.Server, user, path string) (feedPage, *apitest.Response) {
	t.Helper()
	resp := s.Do(t, req{Method: "GET", Path: path, User: user})
	resp.Expect(t, http.StatusOK, "")
	var page feedPage
	apitest.DecodeJSON(t, resp, &page)
	return page, resp
}

func ids(list []Whisper) []int64 {
	out := make([]int64, len(list))
	for i, w := range list {
		out[i] = w.ID
	}
	return out
}

func getWhisperOf(t *testing.T, s *apitest.Server, id int64) Whisper {
	t.Helper()
	resp := s.Do(t, req{Method: "GET", Path: whisperPath(id)})
	resp.Expect(t, http.StatusOK, "")
	var w Whisper
	resp.Data(t, &w)
	return w
}

func TestGlobalFeed(t *testing.T) {
	s := start(t)
	resp := s.Do(t, req{Method: "POST", Path: "/v1/whispers", User: "alice", Body: map[string]any{"body": "  hello\nworld  "}})
	resp.Expect(t, http.StatusCreated, "")
	var first Whisper
	resp.Data(t, &first)
	if first.Body != "hello\nworld" || first.Author == nil || !strings.HasPrefix(first.Author.Handle, "user_") ||
		first.StoryID != nil || first.ParentID != nil || first.Deleted || first.ReplyCount != 0 || first.LikeCount != 0 {
		t.Errorf("created %+v", first)
	}
	resp.ExpectHeader(t, "Location", whisperPath(first.ID))
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	resp.ExpectHeader(t, "Cache-Purge", GlobalTag)
	if resp.Header.Get(dbrouter.TokenHeader) == "" {
		t.Error("post set no read-your-writes token")
	}
	want := []int64{first.ID}
	for i := range 4 {
		want = append([]int64{post(t, s, []string{"alice", "bob"}[i%2], "/v1/whispers", fmt.Sprint("whisper ", i)).ID}, want...)
	}
	// A story's whispers stay out of the global feed.
	post(t, s, "bob", fmt.Sprintf("/v1/stories/%d/whispers", publicStory(t, s, "bob")), "about a story")

	// Newest first, two at a time; cacheable, tagged with every whisper shown and, on the
	// first page only, the feed's tag.
	var got []int64
	path := "/v1/whispers?limit=2"
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		page, resp := getFeed(t, s, "", path)
		got = append(got, ids(page.Data)...)
		resp.ExpectHeader(t, "Cache-Control", "public, max-age=30, stale-while-revalidate=30, stale-if-error=900")
		tags := strings.Fields(resp.Header.Get("Cache-Tags"))
		if slices.Contains(tags, GlobalTag) != (pages == 0) {
			t.Errorf("page %d tags %v: %s only on the first page", pages, tags, GlobalTag)
		}
		for _, w := range page.Data {
			if !slices.Contains(tags, CacheTag(w.ID)) {
				t.Errorf("page %d tags %v lack %s", pages, tags, CacheTag(w.ID))
			}
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/whispers?limit=2&cursor=" + *page.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Errorf("feed %v, want %v", got, want)
	}

	resp = s.Do(t, req{Method: "GET", Path: whisperPath(first.ID)})
	resp.Expect(t, http.StatusOK, "")
	resp.ExpectHeader(t, "Cache-Control", "public, max-age=30, stale-while-revalidate=30, stale-if-error=900")
	resp.ExpectHeader(t, "Cache-Tags", CacheTag(first.ID)+" "+LikesTag(first.ID))
	resp = s.Do(t, req{Method: "GET", Path: whisperPath(first.ID), User: "carol"})
	resp.Expect(t, http.StatusOK, "")
	resp.ExpectHeader(t, "Cache-Control", "private, no-store") // no edge copy per reader
	s.Do(t, req{Method: "GET", Path: whisperPath(999999)}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: "/v1/whispers/abc"}).Expect(t, http.StatusNotFound, "not_found")
	for _, q := range []string{"limit=0", "limit=101", "cursor=!!", "cursor=bm90IGpzb24"} {
		s.Do(t, req{Method: "GET", Path: "/v1/whispers?" + q}).Expect(t, http.StatusBadRequest, "invalid_request")
	}
}

func TestValidation(t *testing.T) {
	s := start(t)
	parent := post(t, s, "alice", "/v1/whispers", "parent")
	story := publicStory(t, s, "alice")
	paths := []string{"/v1/whispers", fmt.Sprintf("/v1/stories/%d/whispers", story), whisperPath(parent.ID, "/replies")}
	for _, body := range []any{
		map[string]any{},
		map[string]any{"body": " \n "},
		map[string]any{"body": strings.Repeat("é", MaxBody+1)},
		map[string]any{"body": "bell\a"},
		map[string]any{"body": 5},
	} {
		for _, path := range paths {
			resp := s.Do(t, req{Method: "POST", Path: path, User: "bob", Body: body})
			resp.Expect(t, http.StatusBadRequest, "invalid_request")
			if d := resp.Err().Details; len(d) != 1 || d["body"] == "" {
				t.Errorf("POST %s %v: details %v", path, body, d)
			}
		}
	}
	for _, path := range paths {
		post(t, s, "bob", path, strings.Repeat("é", MaxBody))
		s.Do(t, req{Method: "POST", Path: path, User: "bob", Body: `{"body": "x", "parent_id": 1}`}).Expect(t, http.StatusBadRequest, "invalid_json")
	}
}

func TestStoryWhispers(t *testing.T) {
	s := start(t)
	story := publicStory(t, s, "alice")
	path := fmt.Sprintf("/v1/stories/%d/whispers", story)
	resp := s.Do(t, req{Method: "POST", Path: path, User: "bob", Body: map[string]any{"body": "loved it"}})
	resp.Expect(t, http.StatusCreated, "")
	var w Whisper
	resp.Data(t, &w)
	if w.StoryID == nil || *w.StoryID != story {
		t.Errorf("created %+v", w)
	}
	resp.ExpectHeader(t, "Cache-Purge", StoryTag(story))
	second := post(t, s, "carol", path, "me too")
	post(t, s, "carol", whisperPath(w.ID, "/replies"), "a reply, not in the feed")
	post(t, s, "carol", "/v1/whispers", "global, not in the feed")

	page, resp := getFeed(t, s, "dave", path)
	if !slices.Equal(ids(page.Data), []int64{second.ID, w.ID}) {
		t.Errorf("story feed %v", ids(page.Data))
	}
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	page, resp = getFeed(t, s, "", path)
	if !slices.Equal(ids(page.Data), []int64{second.ID, w.ID}) {
		t.Errorf("anonymous story feed %v", ids(page.Data))
	}
	resp.ExpectHeader(t, "Cache-Control", "public, max-age=30, stale-while-revalidate=30, stale-if-error=900")
	tags := strings.Fields(resp.Header.Get("Cache-Tags"))
	for _, tag := range []string{stories.CacheTag(story), StoryTag(story), CacheTag(w.ID), CacheTag(second.ID)} {
		if !slices.Contains(tags, tag) {
			t.Errorf("tags %v lack %s", tags, tag)
		}
	}

	// Drafts, deleted stories and stories that do not exist have no whispers.
	resp = s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: map[string]any{"title": "draft"}})
	var draft stories.Story
	resp.Data(t, &draft)
	for _, p := range []string{fmt.Sprintf("/v1/stories/%d/whispers", draft.ID), "/v1/stories/999999/whispers", "/v1/stories/x/whispers"} {
		s.Do(t, req{Method: "GET", Path: p, User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
		s.Do(t, req{Method: "POST", Path: p, User: "alice", Body: map[string]any{"body": "x"}}).Expect(t, http.StatusNotFound, "not_found")
	}
	s.Do(t, req{Method: "DELETE", Path: fmt.Sprintf("/v1/stories/%d", story), User: "alice"}).Expect(t, http.StatusNoContent, "")
	s.Do(t, req{Method: "GET", Path: path}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: whisperPath(w.ID)}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "PUT", Path: whisperPath(w.ID, "/like"), User: "dave"}).Expect(t, http.StatusNotFound, "not_found")
}

func TestRepliesAndDeletion(t *testing.T) {
	s := start(t)
	story := publicStory(t, s, "alice")
	parent := post(t, s, "alice", "/v1/whispers", "parent")
	onStory := post(t, s, "alice", fmt.Sprintf("/v1/stories/%d/whispers", story), "about the story")

	resp := s.Do(t, req{Method: "POST", Path: whisperPath(parent.ID, "/replies"), User: "bob", Body: map[string]any{"body": "first reply"}})
	resp.Expect(t, http.StatusCreated, "")
	var r1 Whisper
	resp.Data(t, &r1)
	if r1.ParentID == nil || *r1.ParentID != parent.ID || r1.StoryID != nil {
		t.Errorf("reply %+v", r1)
	}
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(parent.ID))
	r2 := post(t, s, "carol", whisperPath(parent.ID, "/replies"), "second reply")
	nested := post(t, s, "alice", whisperPath(r2.ID, "/replies"), "a reply to a reply")
	if storyReply := post(t, s, "bob", whisperPath(onStory.ID, "/replies"), "in the story"); storyReply.StoryID == nil || *storyReply.StoryID != story {
		t.Errorf("a reply to a whisper about a story is not in the story: %+v", storyReply)
	}
	if p := getWhisperOf(t, s, parent.ID); p.ReplyCount != 2 {
		t.Errorf("parent reply_count %d, want 2", p.ReplyCount)
	}
	if p := getWhisperOf(t, s, r2.ID); p.ReplyCount != 1 {
		t.Errorf("reply reply_count %d, want 1", p.ReplyCount)
	}
	page, resp := getFeed(t, s, "", whisperPath(parent.ID, "/replies"))
	if !slices.Equal(ids(page.Data), []int64{r2.ID, r1.ID}) {
		t.Errorf("replies %v", ids(page.Data))
	}
	resp.ExpectHeader(t, "Cache-Tags", strings.Join([]string{CacheTag(parent.ID), CacheTag(r2.ID), CacheTag(r1.ID)}, " "))
	if page, _ := getFeed(t, s, "", "/v1/whispers"); !slices.Equal(ids(page.Data), []int64{parent.ID}) {
		t.Errorf("global feed %v: replies are not in it", ids(page.Data))
	}
	s.Do(t, req{Method: "GET", Path: whisperPath(999999, "/replies")}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "POST", Path: whisperPath(999999, "/replies"), User: "bob", Body: map[string]any{"body": "x"}}).Expect(t, http.StatusNotFound, "not_found")

	// Only the author deletes; the replies stay and the parent shows as deleted.
	s.Do(t, req{Method: "DELETE", Path: whisperPath(parent.ID), User: "bob"}).Expect(t, http.StatusForbidden, "forbidden")
	resp = s.Do(t, req{Method: "DELETE", Path: whisperPath(parent.ID), User: "alice"})
	resp.Expect(t, http.StatusNoContent, "")
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(parent.ID))
	resp = s.Do(t, req{Method: "DELETE", Path: whisperPath(parent.ID), User: "alice"})
	resp.Expect(t, http.StatusNoContent, "")
	resp.ExpectHeader(t, "Cache-Purge", "")
	if p := getWhisperOf(t, s, parent.ID); !p.Deleted || p.Body != "" || p.Author != nil || p.ReplyCount != 2 {
		t.Errorf("deleted parent %+v", p)
	}
	if page, _ := getFeed(t, s, "", whisperPath(parent.ID, "/replies")); !slices.Equal(ids(page.Data), []int64{r2.ID, r1.ID}) {
		t.Errorf("replies of a deleted whisper %v", ids(page.Data))
	}
	if page, _ := getFeed(t, s, "", "/v1/whispers"); len(page.Data) != 1 || !page.Data[0].Deleted || page.Data[0].Body != "" {
		t.Errorf("global feed %+v: the deleted parent shows, without its body, while it has replies", page.Data)
	}
	s.Do(t, req{Method: "POST", Path: whisperPath(parent.ID, "/replies"), User: "bob", Body: map[string]any{"body": "x"}}).Expect(t, http.StatusConflict, "whisper_deleted")
	s.Do(t, req{Method: "PUT", Path: whisperPath(parent.ID, "/like"), User: "bob"}).Expect(t, http.StatusConflict, "whisper_deleted")

	// Deleting replies counts down; a deleted reply with a reply still shows.
	resp = s.Do(t, req{Method: "DELETE", Path: whisperPath(r2.ID), User: "carol"})
	resp.Expect(t, http.StatusNoContent, "")
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(r2.ID)+" "+CacheTag(parent.ID))
	if page, _ := getFeed(t, s, "", whisperPath(parent.ID, "/replies")); !slices.Equal(ids(page.Data), []int64{r2.ID, r1.ID}) || !page.Data[0].Deleted {
		t.Errorf("replies %+v", page.Data)
	}
	s.Do(t, req{Method: "DELETE", Path: whisperPath(r1.ID), User: "bob"}).Expect(t, http.StatusNoContent, "")
	if p := getWhisperOf(t, s, parent.ID); p.ReplyCount != 0 {
		t.Errorf("parent reply_count %d after its replies were deleted", p.ReplyCount)
	}
	if page, _ := getFeed(t, s, "", whisperPath(parent.ID, "/replies")); !slices.Equal(ids(page.Data), []int64{r2.ID}) {
		t.Errorf("replies %v: only the deleted one with a reply remains", ids(page.Data))
	}
	// With no replies left, the deleted parent drops out of the feed.
	if page, _ := getFeed(t, s, "", "/v1/whispers"); len(page.Data) != 0 {
		t.Errorf("global feed %+v, want empty", page.Data)
	}
	s.Do(t, req{Method: "DELETE", Path: whisperPath(nested.ID), User: "carol"}).Expect(t, http.StatusForbidden, "forbidden")
	s.Do(t, req{Method: "DELETE", Path: whisperPath(999999), User: "carol"}).Expect(t, http.StatusNotFound, "not_found")
}

func TestLikes(t *testing.T) {
	s := start(t)
	w := post(t, s, "alice", "/v1/whispers", "like me")
	like := func(method, user string, wantCount int, wantPurge bool) {
		t.Helper()
		resp := s.Do(t, req{Method: method, Path: whisperPath(w.ID, "/like"), User: user})
		resp.Expect(t, http.StatusOK, "")
		var l Like
		resp.Data(t, &l)
		if l.WhisperID != w.ID || l.Liked != (method == "PUT") || l.LikeCount != wantCount {
			t.Errorf("%s like by %s: %+v, want like_count %d", method, user, l, wantCount)
		}
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		purge := ""
		if wantPurge {
			purge = LikesTag(w.ID) // the whisper's view, not the feeds showing it
		}
		resp.ExpectHeader(t, "Cache-Purge", purge)
	}
	like("PUT", "bob", 1, true)
	like("PUT", "bob", 1, false)
	like("PUT", "alice", 2, true)
	like("DELETE", "bob", 1, true)
	like("DELETE", "bob", 1, false)
	like("DELETE", "carol", 1, false)
	if got := getWhisperOf(t, s, w.ID); got.LikeCount != 1 {
		t.Errorf("like_count %d, want 1", got.LikeCount)
	}
	s.Do(t, req{Method: "PUT", Path: whisperPath(999999, "/like"), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "DELETE", Path: whisperPath(999999, "/like"), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	// A like of a whisper deleted since can still be taken back.
	s.Do(t, req{Method: "DELETE", Path: whisperPath(w.ID), User: "alice"}).Expect(t, http.StatusNoContent, "")
	like("DELETE", "alice", 0, true)
}

func TestBlockedAuthorsAreHidden(t *testing.T) {
	s := start(t)
	var bob profiles.Profile
	s.Do(t, req{Method: "GET", Path: "/v1/me", User: "bob"}).Data(t, &bob)
	fromAlice := post(t, s, "alice", "/v1/whispers", "alice speaks")
	fromBob := post(t, s, "bob", "/v1/whispers", "bob speaks")
	story := publicStory(t, s, "alice")
	storyPath := fmt.Sprintf("/v1/stories/%d/whispers", story)
	bobOnStory := post(t, s, "bob", storyPath, "bob on the story")
	reply := post(t, s, "bob", whisperPath(fromAlice.ID, "/replies"), "bob replies")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob.Handle + "/block", User: "alice"}).Expect(t, http.StatusNoContent, "")

	// Alice no longer sees bob's whispers, and what she sees is hers alone.
	for _, c := range []struct {
		path string
		want []int64
	}{
		{"/v1/whispers", []int64{fromAlice.ID}},
		{storyPath, nil},
		{whisperPath(fromAlice.ID, "/replies"), nil},
	} {
		page, resp := getFeed(t, s, "alice", c.path)
		if !slices.Equal(ids(page.Data), c.want) {
			t.Errorf("alice's %s: %v, want %v", c.path, ids(page.Data), c.want)
		}
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		resp.ExpectHeader(t, "Cache-Tags", "")
	}
	s.Do(t, req{Method: "GET", Path: whisperPath(fromBob.ID), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: whisperPath(bobOnStory.ID, "/replies"), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "PUT", Path: whisperPath(reply.ID, "/like"), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")

	// Everyone else, signed in or not, sees everything; the anonymous answer is shared and
	// cacheable, a signed-in one private.
	for _, viewer := range []string{"", "carol", "bob"} {
		page, resp := getFeed(t, s, viewer, "/v1/whispers")
		if !slices.Equal(ids(page.Data), []int64{fromBob.ID, fromAlice.ID}) {
			t.Errorf("%q's feed %v", viewer, ids(page.Data))
		}
		want := "public, max-age=30, stale-while-revalidate=30, stale-if-error=900"
		if viewer != "" {
			want = "private, no-store"
		}
		resp.ExpectHeader(t, "Cache-Control", want)
	}

	// Bob cannot reply to, like, or whisper about the stories of alice.
	s.Do(t, req{Method: "POST", Path: whisperPath(fromAlice.ID, "/replies"), User: "bob", Body: map[string]any{"body": "x"}}).Expect(t, http.StatusForbidden, "blocked")
	s.Do(t, req{Method: "PUT", Path: whisperPath(fromAlice.ID, "/like"), User: "bob"}).Expect(t, http.StatusForbidden, "blocked")
	s.Do(t, req{Method: "POST", Path: storyPath, User: "bob", Body: map[string]any{"body": "x"}}).Expect(t, http.StatusForbidden, "blocked")
	// Unblocked, all is back.
	s.Do(t, req{Method: "DELETE", Path: "/v1/users/" + bob.Handle + "/block", User: "alice"}).Expect(t, http.StatusNoContent, "")
	page, resp := getFeed(t, s, "alice", "/v1/whispers")
	if !slices.Equal(ids(page.Data), []int64{fromBob.ID, fromAlice.ID}) {
		t.Errorf("alice's feed after unblocking %v", ids(page.Data))
	}
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
}

func TestAuthRequired(t *testing.T) {
	s := start(t)
	w := post(t, s, "alice", "/v1/whispers", "x")
	story := publicStory(t, s, "alice")
	untrusted := startWith(t, apitest.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	routes := []struct{ method, path string }{
		{"POST", "/v1/whispers"},
		{"POST", fmt.Sprintf("/v1/stories/%d/whispers", story)},
		{"POST", whisperPath(w.ID, "/replies")},
		{"DELETE", whisperPath(w.ID)},
		{"PUT", whisperPath(w.ID, "/like")},
		{"DELETE", whisperPath(w.ID, "/like")},
	}
	for _, rt := range routes {
		s.Do(t, req{Method: rt.method, Path: rt.path, Body: `{"body": "x"}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
		untrusted.Do(t, req{Method: rt.method, Path: rt.path, User: "alice", Body: `{"body": "x"}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	}
}

// count returns the result of a count(*) query.
func count(t *testing.T, s *apitest.Server, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB.Primary().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// concurrently sends n requests at once, made by mk, and fails unless each has status want.
func concurrently(t *testing.T, s *apitest.Server, n, want int, mk func(i int) req) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if resp := s.Do(t, mk(i)); resp.Status != want {
				t.Errorf("%s %s: %d %s", mk(i).Method, mk(i).Path, resp.Status, resp.Body)
			}
		})
	}
	close(start)
	wg.Wait()
}

// TestConcurrentLikes: simultaneous likes, some of them repeated, count each user once.
func TestConcurrentLikes(t *testing.T) {
	s := start(t)
	w := post(t, s, "alice", "/v1/whispers", "popular")
	const users, repeats = 16, 3
	user := func(i int) string { return fmt.Sprint("fan", i%users) }
	concurrently(t, s, users*repeats, http.StatusOK, func(i int) req {
		return req{Method: "PUT", Path: whisperPath(w.ID, "/like"), User: user(i)}
	})
	if got := getWhisperOf(t, s, w.ID).LikeCount; got != users {
		t.Errorf("like_count %d, want %d", got, users)
	}
	if rows := count(t, s, "select count(*) from whisper_likes where whisper_id = $1", w.ID); rows != users {
		t.Errorf("%d like rows, want %d", rows, users)
	}
	concurrently(t, s, users*repeats, http.StatusOK, func(i int) req {
		return req{Method: "DELETE", Path: whisperPath(w.ID, "/like"), User: user(i)}
	})
	if got := getWhisperOf(t, s, w.ID).LikeCount; got != 0 {
		t.Errorf("like_count %d after every unlike, want 0", got)
	}
}

// TestConcurrentReplies: simultaneous replies and deletions keep reply_count exact.
func TestConcurrentReplies(t *testing.T) {
	s := start(t)
	w := post(t, s, "alice", "/v1/whispers", "ask me anything")
	const n = 16
	concurrently(t, s, n, http.StatusCreated, func(i int) req {
		return req{Method: "POST", Path: whisperPath(w.ID, "/replies"), User: fmt.Sprint("user", i), Body: map[string]any{"body": fmt.Sprint("reply ", i)}}
	})
	if got := getWhisperOf(t, s, w.ID).ReplyCount; got != n {
		t.Errorf("reply_count %d, want %d", got, n)
	}
	page, _ := getFeed(t, s, "", whisperPath(w.ID, "/replies?limit=100"))
	if len(page.Data) != n {
		t.Fatalf("%d replies listed, want %d", len(page.Data), n)
	}
	// Half the repliers delete theirs, twice each, while the author deletes the parent.
	replies := page.Data
	concurrently(t, s, n+1, http.StatusNoContent, func(i int) req {
		if i == n {
			return req{Method: "DELETE", Path: whisperPath(w.ID), User: "alice"}
		}
		r := replies[i/2]
		return req{Method: "DELETE", Path: whisperPath(r.ID), User: "user" + strings.TrimPrefix(r.Body, "reply ")}
	})
	if got, want := getWhisperOf(t, s, w.ID).ReplyCount, n/2; got != want {
		t.Errorf("reply_count %d, want %d", got, want)
	}
	if got := count(t, s, "select count(*) from whispers where parent_id = $1 and deleted_at is null", w.ID); got != n/2 {
		t.Errorf("%d replies not deleted, want %d", got, n/2)
	}
}
