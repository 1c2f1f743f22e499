package stories

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/internal/testenv"
)

func register(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) { New(db, log).Register(mux) }

type req = apitest.Request

// createStory creates a story of user and returns it.
func createStory(t *testing.T, s *apitest.Server, user string, body any) Story {
	t.Helper()
	resp := s.Do(t, req{Method: "POST", Path: "/v1/stories", User: user, Body: body})
	resp.Expect(t, http.StatusCreated, "")
	var st Story
	resp.Data(t, &st)
	return st
}

func storyPath(id int64, rest ...string) string {
	return fmt.Sprintf("/v1/stories/%d", id) + strings.Join(rest, "")
}

func addChapter(t *testing.T, s *apitest.Server, user string, id int64, title, content string) Chapter {
	t.Helper()
	resp := s.Do(t, req{Method: "POST", Path: storyPath(id, "/chapters"), User: user, Body: map[string]any{"title": title, "content": content}})
	resp.Expect(t, http.StatusCreated, "")
	var c Chapter
	resp.Data(t, &c)
	return c
}

func TestStoryLifecycle(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)

	// Create a draft.
	resp := s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice",
		Body: map[string]any{"title": "  The Long Night ", "blurb": "Dark.", "tags": []string{"Fantasy", "slow-burn", "fantasy"}}})
	resp.Expect(t, http.StatusCreated, "")
	var st Story
	resp.Data(t, &st)
	if st.Title != "The Long Night" || st.Status != StatusDraft || st.Version != 1 || !slices.Equal(st.Tags, []string{"fantasy", "slow-burn"}) ||
		st.PublishedAt != nil || !strings.HasPrefix(st.Author.Handle, "user_") {
		t.Errorf("created %+v", st)
	}
	resp.ExpectHeader(t, "Location", storyPath(st.ID))
	resp.ExpectHeader(t, "ETag", `"v1"`)
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(st.ID))
	if resp.Header.Get(dbrouter.TokenHeader) == "" {
		t.Error("create set no read-your-writes token")
	}

	// A draft is the author's only.
	resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice"})
	resp.Expect(t, http.StatusOK, "")
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID)}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters")}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "bob", Body: map[string]any{"title": "x", "version": 1}}).
		Expect(t, http.StatusNotFound, "not_found")

	// Publishing needs a chapter.
	s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/publish"), User: "alice"}).Expect(t, http.StatusUnprocessableEntity, "no_chapters")
	addChapter(t, s, "alice", st.ID, "One", "It began.")
	resp = s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/publish"), User: "alice"})
	resp.Expect(t, http.StatusOK, "")
	resp.Data(t, &st)
	if st.Status != StatusPublished || st.PublishedAt == nil || st.Version != 2 || st.ChapterCount != 1 {
		t.Errorf("published %+v", st)
	}
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(st.ID)+" feed:new")
	// Publishing again changes nothing.
	resp = s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/publish"), User: "alice"})
	resp.Expect(t, http.StatusOK, "")
	resp.ExpectHeader(t, "Cache-Purge", "")

	// Public now: cacheable by the edge for everyone but the author.
	for _, viewer := range []string{"", "bob"} {
		resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: viewer})
		resp.Expect(t, http.StatusOK, "")
		resp.ExpectHeader(t, "Cache-Control", "public, max-age=300, stale-while-revalidate=300, stale-if-error=21600")
		resp.ExpectHeader(t, "Cache-Tags", CacheTag(st.ID))
		resp.ExpectHeader(t, "ETag", api.ContentETag(resp.Body)) // the bytes', not the version's
	}
	resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice"})
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	resp.ExpectHeader(t, "ETag", `"v2"`) // what the author sends back in If-Match

	// Edits: only the author, always with the version edited.
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "bob", Body: map[string]any{"title": "Mine", "version": 2}}).
		Expect(t, http.StatusForbidden, "forbidden")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice", Body: map[string]any{"title": "New"}}).
		Expect(t, http.StatusPreconditionRequired, "precondition_required")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice", Body: map[string]any{"title": "New", "version": 1}}).
		Expect(t, http.StatusConflict, "version_conflict")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice", Body: map[string]any{"title": "New"}, Header: map[string]string{"If-Match": `"v1"`}}).
		Expect(t, http.StatusPreconditionFailed, "precondition_failed")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice", Body: map[string]any{"title": "New"}, Header: map[string]string{"If-Match": `W/"v2"`}}).
		Expect(t, http.StatusPreconditionFailed, "precondition_failed")
	resp = s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice", Body: map[string]any{"title": "New", "tags": []string{"horror"}},
		Header: map[string]string{"If-Match": `"v2"`}})
	resp.Expect(t, http.StatusOK, "")
	resp.Data(t, &st)
	if st.Title != "New" || st.Blurb != "Dark." || st.Version != 3 || !slices.Equal(st.Tags, []string{"horror"}) {
		t.Errorf("edited %+v", st)
	}
	resp.ExpectHeader(t, "ETag", `"v3"`)
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(st.ID)+" feed:new")

	// Soft delete: gone for everyone but the author, and from the feeds.
	s.Do(t, req{Method: "DELETE", Path: storyPath(st.ID), User: "bob"}).Expect(t, http.StatusForbidden, "forbidden")
	s.Do(t, req{Method: "DELETE", Path: storyPath(st.ID), User: "alice", Header: map[string]string{"If-Match": `"v2"`}}).
		Expect(t, http.StatusPreconditionFailed, "precondition_failed")
	resp = s.Do(t, req{Method: "DELETE", Path: storyPath(st.ID), User: "alice"})
	resp.Expect(t, http.StatusNoContent, "")
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(st.ID)+" feed:new")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID)}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters/1"), User: "bob"}).Expect(t, http.StatusNotFound, "not_found")
	resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice"})
	resp.Expect(t, http.StatusOK, "")
	resp.Data(t, &st)
	if st.Status != StatusDeleted || st.DeletedAt == nil {
		t.Errorf("deleted story as its author sees it: %+v", st)
	}
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice", Body: map[string]any{"title": "x", "version": st.Version}}).
		Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "DELETE", Path: storyPath(st.ID), User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/chapters"), User: "alice", Body: map[string]any{"title": "x", "content": "y"}}).
		Expect(t, http.StatusNotFound, "not_found")

	// Deleting a draft leaves the feeds alone.
	draft := createStory(t, s, "alice", map[string]any{"title": "Draft"})
	resp = s.Do(t, req{Method: "DELETE", Path: storyPath(draft.ID), User: "alice"})
	resp.Expect(t, http.StatusNoContent, "")
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(draft.ID))

	s.Do(t, req{Method: "GET", Path: "/v1/stories/abc"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: "/v1/stories/999999"}).Expect(t, http.StatusNotFound, "not_found")
}

func TestStoryValidation(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	tags := make([]string, 11)
	for i := range tags {
		tags[i] = fmt.Sprint("t", i)
	}
	tests := []struct {
		name   string
		body   any
		fields []string
	}{
		{"no title", map[string]any{"blurb": "b"}, []string{"title"}},
		{"blank title", map[string]any{"title": "   "}, []string{"title"}},
		{"long title, long blurb", map[string]any{"title": strings.Repeat("x", 201), "blurb": strings.Repeat("x", 2001)}, []string{"title", "blurb"}},
		{"bad tag", map[string]any{"title": "t", "tags": []string{"ok", "not ok"}}, []string{"tags"}},
		{"too many tags", map[string]any{"title": "t", "tags": tags}, []string{"tags"}},
		{"version on create", map[string]any{"title": "t", "version": 3}, []string{"version"}},
		{"wrong type", map[string]any{"title": 5}, []string{"title"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: tt.body})
			resp.Expect(t, http.StatusBadRequest, "invalid_request")
			d := resp.Err().Details
			for _, f := range tt.fields {
				if d[f] == "" {
					t.Errorf("details %v lack %q", d, f)
				}
			}
			if len(d) != len(tt.fields) {
				t.Errorf("details %v, want only %v", d, tt.fields)
			}
		})
	}
	s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: `{"title": "t", "extra": 1}`}).Expect(t, http.StatusBadRequest, "invalid_json")
	s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: `{"title": "t"}`, Header: map[string]string{"Content-Type": "text/plain"}}).
		Expect(t, http.StatusUnsupportedMediaType, "unsupported_media_type")
	st := createStory(t, s, "alice", map[string]any{"title": "t"})
	resp := s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/chapters"), User: "alice", Body: map[string]any{"content": " "}})
	resp.Expect(t, http.StatusBadRequest, "invalid_request")
	if d := resp.Err().Details; d["title"] == "" || d["content"] == "" {
		t.Errorf("chapter details %v", d)
	}
}

func TestAuthRequired(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	st := createStory(t, s, "alice", map[string]any{"title": "t"})
	untrusted := apitest.Start(t, apitest.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, register)
	writes := []struct{ method, path string }{
		{"POST", "/v1/stories"},
		{"GET", "/v1/me/stories"},
		{"PATCH", storyPath(st.ID)},
		{"POST", storyPath(st.ID, "/publish")},
		{"DELETE", storyPath(st.ID)},
		{"POST", storyPath(st.ID, "/chapters")},
		{"PATCH", storyPath(st.ID, "/chapters/1")},
	}
	for _, w := range writes {
		s.Do(t, req{Method: w.method, Path: w.path, Body: `{}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
		// X-Auth-User from an address that is not the edge's counts for nothing.
		untrusted.Do(t, req{Method: w.method, Path: w.path, User: "alice", Body: `{}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	}
}

func TestConcurrentEditsOneWins(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	st := createStory(t, s, "alice", map[string]any{"title": "t"})
	// Rounds of simultaneous edits of the same version: in each, exactly one may win.
	const rounds, n = 4, 8
	for round := range rounds {
		version := int64(round + 1)
		codes := make([]int, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				codes[i] = s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID), User: "alice",
					Body: map[string]any{"title": fmt.Sprint("edit ", round, i), "version": version}}).Status
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for _, c := range codes {
			switch c {
			case http.StatusOK:
				won++
			case http.StatusConflict:
			default:
				t.Errorf("unexpected status %d", c)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d edits of version %d succeeded (%v), want exactly 1", round, won, n, version, codes)
		}
	}
	resp := s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice"})
	resp.Data(t, &st)
	if st.Version != rounds+1 {
		t.Errorf("version %d after %d successful edits, want %d", st.Version, rounds, rounds+1)
	}
}

func TestConcurrentChaptersGetDistinctNumbers(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	st := createStory(t, s, "alice", map[string]any{"title": "t"})
	const n = 12
	numbers := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			resp := s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/chapters"), User: "alice",
				Body: map[string]any{"title": fmt.Sprint("c", i), "content": "text"}})
			if resp.Status != http.StatusCreated {
				t.Errorf("create chapter: %d %s", resp.Status, resp.Body)
				return
			}
			var c Chapter
			resp.Data(t, &c)
			numbers[i] = c.Number
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(numbers)
	for i, got := range numbers {
		if got != i+1 {
			t.Fatalf("chapter numbers %v, want 1..%d each once", numbers, n)
		}
	}
	resp := s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice"})
	resp.Data(t, &st)
	if st.ChapterCount != n {
		t.Errorf("chapter_count %d, want %d", st.ChapterCount, n)
	}
}

func TestChapters(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	st := createStory(t, s, "alice", map[string]any{"title": "t"})
	xss := "# Hello\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n\n*fine*"
	c := addChapter(t, s, "alice", st.ID, "One", xss)
	if c.Number != 1 || c.ContentMarkdown != xss || c.Version != 1 {
		t.Errorf("created chapter %+v", c)
	}
	for _, bad := range []string{"<script", "onerror", "javascript:"} {
		if strings.Contains(strings.ToLower(c.ContentHTML), bad) {
			t.Errorf("content_html %q contains %q", c.ContentHTML, bad)
		}
	}
	if !strings.Contains(c.ContentHTML, "<em>fine</em>") || !strings.Contains(c.ContentHTML, "Hello</h1>") {
		t.Errorf("content_html lost the formatting: %q", c.ContentHTML)
	}
	for i := 2; i <= 5; i++ {
		addChapter(t, s, "alice", st.ID, fmt.Sprint("Chapter ", i), "text")
	}
	s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/chapters"), User: "bob", Body: map[string]any{"title": "x", "content": "y"}}).
		Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "POST", Path: storyPath(st.ID, "/publish"), User: "alice"}).Expect(t, http.StatusOK, "")

	// Public view: HTML, no markdown source; cacheable under the story's tag.
	resp := s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters/1"), User: "bob"})
	resp.Expect(t, http.StatusOK, "")
	var got Chapter
	resp.Data(t, &got)
	if got.ContentHTML != c.ContentHTML || got.ContentMarkdown != "" {
		t.Errorf("public chapter %+v", got)
	}
	resp.ExpectHeader(t, "Cache-Control", "public, max-age=300, stale-while-revalidate=300, stale-if-error=21600")
	resp.ExpectHeader(t, "Cache-Tags", CacheTag(st.ID))
	resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters/1"), User: "alice"})
	resp.Data(t, &got)
	if got.ContentMarkdown != xss {
		t.Errorf("the author does not get the markdown: %+v", got)
	}
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters/9")}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters/0")}).Expect(t, http.StatusNotFound, "not_found")

	// Pages of two, in order, with an opaque cursor.
	var numbers []int
	path := storyPath(st.ID, "/chapters?limit=2")
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		resp = s.Do(t, req{Method: "GET", Path: path})
		resp.Expect(t, http.StatusOK, "")
		var page struct {
			Data       []Chapter `json:"data"`
			NextCursor *string   `json:"next_cursor"`
		}
		apitest.DecodeJSON(t, resp, &page)
		for _, ch := range page.Data {
			numbers = append(numbers, ch.Number)
			if ch.ContentHTML != "" || ch.ContentMarkdown != "" {
				t.Errorf("list carries content: %+v", ch)
			}
		}
		if page.NextCursor == nil {
			break
		}
		path = storyPath(st.ID, "/chapters?limit=2&cursor="+*page.NextCursor)
	}
	if !slices.Equal(numbers, []int{1, 2, 3, 4, 5}) {
		t.Errorf("paged chapter numbers %v", numbers)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=!!", "cursor=bm90IGpzb24"} {
		resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID, "/chapters?"+q)})
		resp.Expect(t, http.StatusBadRequest, "invalid_request")
	}

	// Edits under optimistic concurrency; the content is sanitized again.
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID, "/chapters/1"), User: "alice", Body: map[string]any{"title": "x"}}).
		Expect(t, http.StatusPreconditionRequired, "precondition_required")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID, "/chapters/1"), User: "bob", Body: map[string]any{"title": "x", "version": 1}}).
		Expect(t, http.StatusForbidden, "forbidden")
	resp = s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID, "/chapters/1"), User: "alice",
		Body: map[string]any{"content": `<a href="javascript:alert(1)" onclick="x()">hi</a> **bold**`}, Header: map[string]string{"If-Match": `"v1"`}})
	resp.Expect(t, http.StatusOK, "")
	resp.Data(t, &got)
	if got.Version != 2 || got.Title != "One" || strings.Contains(got.ContentHTML, "javascript") || strings.Contains(got.ContentHTML, "onclick") ||
		!strings.Contains(got.ContentHTML, "<strong>bold</strong>") {
		t.Errorf("edited chapter %+v", got)
	}
	resp.ExpectHeader(t, "Cache-Purge", CacheTag(st.ID))
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID, "/chapters/1"), User: "alice", Body: map[string]any{"title": "y", "version": 1}}).
		Expect(t, http.StatusConflict, "version_conflict")
	s.Do(t, req{Method: "PATCH", Path: storyPath(st.ID, "/chapters/7"), User: "alice", Body: map[string]any{"title": "y", "version": 1}}).
		Expect(t, http.StatusNotFound, "not_found")
}

func TestMyStories(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	var want []int64
	for i := range 5 {
		st := createStory(t, s, "alice", map[string]any{"title": fmt.Sprint("s", i)})
		want = append([]int64{st.ID}, want...)
	}
	createStory(t, s, "bob", map[string]any{"title": "bob's"})
	gone := createStory(t, s, "alice", map[string]any{"title": "gone"})
	s.Do(t, req{Method: "DELETE", Path: storyPath(gone.ID), User: "alice"}).Expect(t, http.StatusNoContent, "")

	var got []int64
	path := "/v1/me/stories?limit=3"
	for range 3 {
		resp := s.Do(t, req{Method: "GET", Path: path, User: "alice"})
		resp.Expect(t, http.StatusOK, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		var page struct {
			Data       []Story `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		apitest.DecodeJSON(t, resp, &page)
		for _, st := range page.Data {
			got = append(got, st.ID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/me/stories?limit=3&cursor=" + *page.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Errorf("my stories %v, want %v (newest first, none deleted, none of bob's)", got, want)
	}
}

// TestReadYourWrites pauses replay on a private replica: a story just created is not on the
// replica, yet its author, carrying the token of the write, reads it back.
func TestReadYourWrites(t *testing.T) {
	c := testenv.NewCluster(t)
	s := apitest.Start(t, apitest.Options{PrimaryURL: c.PrimaryURL, ReplicaURL: c.ReplicaURL}, register)
	c.PauseReplay(t)
	defer c.ResumeReplay(t)

	resp := s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: map[string]any{"title": "fresh"}})
	resp.Expect(t, http.StatusCreated, "")
	var st Story
	resp.Data(t, &st)
	if resp.Header.Get(dbrouter.TokenHeader) == "" {
		t.Fatal("no read-your-writes token")
	}
	// Without the token the read goes to the replica, which has not replayed the write.
	s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice", WithoutToken: true}).Expect(t, http.StatusNotFound, "not_found")
	// With it (the cookie of the create), the author sees the story.
	resp = s.Do(t, req{Method: "GET", Path: storyPath(st.ID), User: "alice"})
	resp.Expect(t, http.StatusOK, "")
	var got Story
	resp.Data(t, &got)
	if got.ID != st.ID || got.Title != "fresh" {
		t.Errorf("read back %+v", got)
	}
}
