package search

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/stories"
	"github.com/muejam/edge/appserver/storylist"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
	"github.com/muejam/edge/appserver/trending"
)

type req = apitest.Request

func start(t *testing.T) *storylisttest.Env { return storylisttest.Start(t, register) }

func register(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger) {
	New(shared.DB, log, shared).Register(mux)
}

func TestSearch(t *testing.T) {
	e := start(t)
	title := e.Story("alice", "The Dragon Queen", "3 days", "fantasy")
	e.Exec("update stories set blurb = 'Court intrigue.' where id = $1", title)
	byAuthor := e.Story("dragon_rider", "Sea of Stars", "2 days")
	inBlurb := e.Story("bob", "Night Garden", "1 day")
	e.Exec("update stories set blurb = 'Where the dragons sleep.' where id = $1", inBlurb)
	tagged := e.Story("bob", "Quiet Hills", "1 day", "dragon")
	e.Story("alice", "Dragon Draft", "")
	gone := e.Story("alice", "Dragon Gone", "1 hour")
	e.Exec("update stories set deleted_at = now() where id = $1", gone)
	// Two equally relevant stories: the trending one first.
	plain := e.Story("carol", "Ember Road", "1 day")
	hot := e.Story("carol", "Ember Lane", "1 day")
	e.Exec("insert into story_trending (story_id, score, computed_at) values ($1, 5, now())", hot)

	ids, resps := e.Pages("/v1/search?q=dragons", "", 20)
	// The title (weight A) first, then the author's handle and the tag (B), then the blurb (C).
	if len(ids) != 4 || ids[0] != title || ids[3] != inBlurb || !slices.Contains(ids, byAuthor) || !slices.Contains(ids, tagged) {
		t.Errorf("results %v, want %d, then %d and %d, then %d", ids, title, byAuthor, tagged, inBlurb)
	}
	resps[0].ExpectHeader(t, "Cache-Control", "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600")
	resps[0].ExpectHeader(t, "Cache-Tags", "search")
	for _, limit := range []int{1, 3} {
		if paged, _ := e.Pages("/v1/search?q=dragons", "", limit); !slices.Equal(paged, ids) {
			t.Errorf("limit %d: %v, want %v", limit, paged, ids)
		}
	}
	if ids, _ := e.Pages("/v1/search?q=ember", "", 1); !slices.Equal(ids, []int64{hot, plain}) {
		t.Errorf("ember: %v, want the trending %d before %d", ids, hot, plain)
	}
	if ids, _ := e.Pages("/v1/search?q=fantasy%20queen", "", 20); !slices.Equal(ids, []int64{title}) {
		t.Errorf("by tag and title: %v, want %d", ids, title)
	}
	if ids, _ := e.Pages("/v1/search?q=the", "", 20); len(ids) != 0 {
		t.Errorf("a stop word matches %v", ids)
	}
	ids, resps = e.Pages("/v1/search?q=dragons", "dave", 20)
	if len(ids) != 4 {
		t.Errorf("signed in: %v", ids)
	}
	resps[0].ExpectHeader(t, "Cache-Control", "private, no-store")

	// Blocks hide the blocked author's stories.
	e.Exec("insert into profiles (user_id, handle) values ('dave', 'dave')")
	e.Exec("insert into blocks (blocker_id, blocked_id) values ('dave', 'alice')")
	if ids, _ := e.Pages("/v1/search?q=dragons", "dave", 20); len(ids) != 3 || slices.Contains(ids, title) {
		t.Errorf("for dave, who blocked alice: %v", ids)
	}

	var page struct{ Data []storylist.Summary }
	apitest.DecodeJSON(t, e.Send(req{Method: "GET", Path: "/v1/search?q=queen"}), &page)
	if len(page.Data) != 1 || page.Data[0].Title != "The Dragon Queen" || page.Data[0].Author.Handle != "alice" ||
		!slices.Equal(page.Data[0].Tags, []string{"fantasy"}) {
		t.Errorf("result %+v", page.Data)
	}
}

func TestQueryValidation(t *testing.T) {
	e := start(t)
	for _, path := range []string{"/v1/search", "/v1/search/suggest"} {
		for _, tt := range []struct{ query, field string }{
			{"", "q"},
			{"q=%20%20", "q"},
			{"q=" + strings.Repeat("x", 101), "q"},
			{"q=a%00b", "q"},
		} {
			resp := e.Send(req{Method: "GET", Path: path + "?" + tt.query})
			resp.Expect(t, http.StatusBadRequest, "invalid_request")
			if d := resp.Err().Details; len(d) != 1 || d[tt.field] == "" {
				t.Errorf("%s?%s: details %v, want %s", path, tt.query, d, tt.field)
			}
			resp.ExpectHeader(t, "Cache-Control", "no-store")
		}
		e.Send(req{Method: "GET", Path: path + "?q=" + strings.Repeat("é", 100)}).Expect(t, http.StatusOK, "")
	}
	for _, tt := range []struct{ query, field string }{{"limit=0", "limit"}, {"limit=x", "limit"}, {"cursor=%25", "cursor"}} {
		resp := e.Send(req{Method: "GET", Path: "/v1/search?q=x&" + tt.query})
		resp.Expect(t, http.StatusBadRequest, "invalid_request")
		if d := resp.Err().Details; d[tt.field] == "" {
			t.Errorf("%s: details %v, want %s", tt.query, d, tt.field)
		}
	}
}

func TestSuggest(t *testing.T) {
	e := start(t)
	dragon := e.Story("drew", "Dragon Queen", "1 day", "drama")
	e.Story("drew", "drift", "1 day")
	e.Story("bob", "Draft only", "", "dread")
	gone := e.Story("bob", "Drowned", "1 day")
	e.Exec("update stories set deleted_at = now() where id = $1", gone)
	e.Story("drake", "Unpublished", "")
	e.Story("alice", "Dr. Who", "2 days", "dr-who")

	get := func(q, user string) (Suggestions, *apitest.Response) {
		t.Helper()
		resp := e.Send(req{Method: "GET", Path: "/v1/search/suggest?q=" + q, User: user})
		resp.Expect(t, http.StatusOK, "")
		var s Suggestions
		resp.Data(t, &s)
		return s, resp
	}
	s, resp := get("DR", "")
	titles := func(s Suggestions) (out []string) {
		for _, st := range s.Stories {
			out = append(out, st.Title)
		}
		return out
	}
	if !slices.Equal(titles(s), []string{"Dr. Who", "Dragon Queen", "drift"}) || s.Stories[1].ID != dragon {
		t.Errorf("stories %+v", s.Stories)
	}
	if !slices.Equal(s.Tags, []string{"dr-who", "drama"}) {
		t.Errorf("tags %v, want the tags of public stories", s.Tags)
	}
	if !slices.Equal(s.Authors, []stories.Author{{Handle: "drew", DisplayName: "Drew"}}) {
		t.Errorf("authors %v, want those with public stories", s.Authors)
	}
	resp.ExpectHeader(t, "Cache-Control", "public, max-age=600, stale-while-revalidate=600, stale-if-error=21600")
	resp.ExpectHeader(t, "Cache-Tags", "search:suggest")

	s, _ = get("dragon%20q", "")
	if !slices.Equal(titles(s), []string{"Dragon Queen"}) || len(s.Tags) != 0 || len(s.Authors) != 0 {
		t.Errorf("dragon q: %+v", s)
	}
	s, _ = get("zzz", "")
	if s.Stories == nil || s.Tags == nil || s.Authors == nil || len(s.Stories)+len(s.Tags)+len(s.Authors) != 0 {
		t.Errorf("no match: %+v, want empty lists", s)
	}
	for i := range 7 {
		e.Story("drew", "Dune "+string(rune('a'+i)), "1 hour")
	}
	if s, _ = get("du", ""); len(s.Stories) != SuggestLimit {
		t.Errorf("%d suggestions, want %d", len(s.Stories), SuggestLimit)
	}

	// A user who blocked drew sees neither drew nor drew's stories, privately.
	e.Exec("insert into profiles (user_id, handle) values ('carol', 'carol')")
	e.Exec("insert into blocks (blocker_id, blocked_id) values ('carol', 'drew')")
	s, resp = get("dr", "carol")
	if !slices.Equal(titles(s), []string{"Dr. Who"}) || !slices.Equal(s.Tags, []string{"dr-who"}) || len(s.Authors) != 0 {
		t.Errorf("for carol: %+v", s)
	}
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	_, resp = get("dr", "dave")
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	_, resp = get("dr", "")
	resp.ExpectHeader(t, "Cache-Control", "public, max-age=600, stale-while-revalidate=600, stale-if-error=21600")
}

// TestHotQueriesUseIndexes explains every query of this package on a seeded database of
// realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	e := storylisttest.StartSeeded(t, register)
	if _, err := trending.New(e.DB, 0, zaptest.NewLogger(t)).Compute(context.Background()); err != nil {
		t.Fatal(err)
	}
	handle := apitest.Scalar[string](t, e.DB, "select handle from profiles where user_id = 'u17'")
	for _, q := range []string{"dragon", "silver dragon", "fantasy -romance", handle} {
		sql, args := searchQuery(q, nil, 21)
		apitest.AssertIndexed(t, e.DB, "search "+q, sql, args...)
		sql, args = searchQuery(q, &resultCursor{Rank: 0.5, ID: 1000}, 21)
		apitest.AssertIndexed(t, e.DB, "search "+q+", next page", sql, args...)
	}
	for _, v := range []sharedlist.Viewer{{}, {User: "u5", Hidden: map[string]bool{"u6": true}}} {
		for _, q := range []string{"d", "the", "dragon", "fantasy", "rusty-a", handle[:4]} {
			storiesSQL, tagsSQL, authorsSQL, args := suggestQueries(q, v)
			apitest.AssertIndexed(t, e.DB, "suggest stories "+q, storiesSQL, args...)
			apitest.AssertIndexed(t, e.DB, "suggest tags "+q, tagsSQL, args...)
			apitest.AssertIndexed(t, e.DB, "suggest authors "+q, authorsSQL, args...)
		}
	}
}
