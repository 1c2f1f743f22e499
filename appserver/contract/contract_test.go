// Package contract holds the app server's contract tests: the OpenAPI document against the
// routes registered and the answers served, and the cache contract of every route. They are a
// module of their own so that the OpenAPI libraries they use stay out of the app server's
// go.mod.
package contract

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/health"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/routes"
	"github.com/muejam/edge/appserver/sharedlist"
)

type req = apitest.Request

// world is what the contract tests read and write: alice's published story with a chapter,
// her whispers (global, a reply, one about the story) and a shelf.
type world struct {
	s                                   *apitest.Server
	handle                              string
	story, whisper, storyWhisper, shelf int64
	version                             int64 // the story's
}

// newWorld starts the app server's routes on a fresh database and fills it.
func newWorld(t *testing.T) *world {
	t.Helper()
	s := apitest.Start(t, apitest.Options{}, func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
		routes.Register(mux, health.New(time.Second), db, &sharedlist.Shared{Cache: apitest.Cache(t), DB: db, TTL: apitest.CacheTTLs}, log)
	})
	w := &world{s: s}
	var out struct {
		ID      int64  `json:"id"`
		Handle  string `json:"handle"`
		Version int64  `json:"version"`
	}
	do := func(method, path string, body any, status int) {
		t.Helper()
		resp := s.Do(t, req{Method: method, Path: path, User: "alice", Body: body})
		resp.Expect(t, status, "")
		out.ID = 0
		resp.Data(t, &out)
	}
	do("GET", "/v1/me", nil, http.StatusOK)
	w.handle = out.Handle
	do("POST", "/v1/stories", map[string]any{"title": "The Long Night", "blurb": "Dark.", "tags": []string{"horror"}}, http.StatusCreated)
	w.story = out.ID
	do("POST", w.path("/v1/stories/{id}/chapters"), map[string]any{"title": "One", "content": "It *began*."}, http.StatusCreated)
	do("POST", w.path("/v1/stories/{id}/publish"), nil, http.StatusOK)
	w.version = out.Version
	do("POST", "/v1/whispers", map[string]any{"body": "hello"}, http.StatusCreated)
	w.whisper = out.ID
	do("POST", fmt.Sprintf("/v1/whispers/%d/replies", w.whisper), map[string]any{"body": "hi back"}, http.StatusCreated)
	do("POST", w.path("/v1/stories/{id}/whispers"), map[string]any{"body": "what a story"}, http.StatusCreated)
	w.storyWhisper = out.ID
	do("POST", "/v1/library/shelves", map[string]any{"name": "Favourites"}, http.StatusCreated)
	w.shelf = out.ID
	return w
}

// path fills a route's path parameters with the world's ids: {id} is the story's, or the
// whisper's or the shelf's under /v1/whispers and /v1/library.
func (w *world) path(route string) string {
	id := w.story
	switch {
	case strings.HasPrefix(route, "/v1/whispers/"):
		id = w.whisper
	case strings.HasPrefix(route, "/v1/library/"):
		id = w.shelf
	}
	return strings.NewReplacer("{id}", fmt.Sprint(id), "{n}", "1", "{story_id}", fmt.Sprint(w.story), "{handle}", w.handle).Replace(route)
}

// The Cache-Control of each kind of public answer.
const (
	feedControl     = "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600"
	whispersControl = "public, max-age=30, stale-while-revalidate=30, stale-if-error=900"
	storyControl    = "public, max-age=300, stale-while-revalidate=300, stale-if-error=21600"
	suggestControl  = "public, max-age=600, stale-while-revalidate=600, stale-if-error=21600"
	documentControl = "public, max-age=300, stale-while-revalidate=300, stale-if-error=86400"
)

// TestCacheContract checks the headers of every cacheable answer (stale windows, tags, a
// strong ETag of the bytes, Vary), that a conditional GET with its ETag is a 304 carrying
// the same headers, and that every other GET route, private answers and errors carry no
// public cache headers and no stale windows.
func TestCacheContract(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		route, query string // query is appended to the route's path
		control, tag string
		perViewer    bool
	}{
		{route: "GET /v1/openapi.json", control: documentControl},
		{route: "GET /v1/users/{handle}", control: storyControl, tag: "user:" + strings.ToLower(w.handle)},
		{route: "GET /v1/stories/{id}", control: storyControl, tag: fmt.Sprintf("story:%d", w.story)},
		{route: "GET /v1/stories/{id}/chapters", control: storyControl, tag: fmt.Sprintf("story:%d", w.story)},
		{route: "GET /v1/stories/{id}/chapters/{n}", control: storyControl, tag: fmt.Sprintf("story:%d", w.story)},
		{route: "GET /v1/discover", query: "?tab=new", control: feedControl, tag: "feed:new", perViewer: true},
		{route: "GET /v1/discover", query: "?tab=trending&tag=horror", control: feedControl, tag: "tag:horror", perViewer: true},
		{route: "GET /v1/search", query: "?q=night", control: feedControl, tag: "search", perViewer: true},
		{route: "GET /v1/search/suggest", query: "?q=the", control: suggestControl, tag: "search:suggest", perViewer: true},
		{route: "GET /v1/whispers", control: whispersControl, tag: "whispers:global", perViewer: true},
		{route: "GET /v1/stories/{id}/whispers", control: whispersControl, tag: fmt.Sprintf("whisper:%d", w.storyWhisper), perViewer: true},
		{route: "GET /v1/whispers/{id}", control: whispersControl, tag: fmt.Sprintf("whisper:%d", w.whisper), perViewer: true},
		{route: "GET /v1/whispers/{id}/replies", control: whispersControl, tag: fmt.Sprintf("whisper:%d", w.whisper), perViewer: true},
	}
	hexETag := regexp.MustCompile(`^"[0-9a-f]{32}"$`)
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.route] = true
		t.Run(tt.route+tt.query, func(t *testing.T) {
			_, p, _ := strings.Cut(tt.route, " ")
			path := w.path(p) + tt.query
			for _, user := range []string{"", "bob"} { // anonymous, and signed in but not the author
				resp := w.s.Do(t, req{Method: "GET", Path: path, User: user})
				resp.Expect(t, http.StatusOK, "")
				if tt.perViewer && user != "" {
					// What depends on the viewer is private for a signed-in one: the edge
					// keeps one copy, the anonymous one, not one per reader.
					resp.ExpectHeader(t, "Cache-Control", "private, no-store")
					for _, h := range []string{"ETag", api.HeaderCacheTags} {
						resp.ExpectHeader(t, h, "")
					}
					continue
				}
				resp.ExpectHeader(t, "Cache-Control", tt.control)
				if tags := strings.Fields(resp.Header.Get(api.HeaderCacheTags)); tt.tag != "" && !slices.Contains(tags, tt.tag) {
					t.Errorf("Cache-Tags %q, want %s among them", tags, tt.tag)
				}
				etag := resp.Header.Get("ETag")
				if !hexETag.MatchString(etag) || etag != api.ContentETag(resp.Body) {
					t.Errorf("ETag %s, want the strong tag of the body, %s", etag, api.ContentETag(resp.Body))
				}
				vary := ""
				if tt.perViewer {
					vary = "X-Viewer-Filter"
				}
				resp.ExpectHeader(t, "Vary", vary)

				// Revalidation: the same ETag (weak or strong, alone or in a list) is a 304 with
				// the 200's cache headers and no body.
				for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag} {
					nm := w.s.Do(t, req{Method: "GET", Path: path, User: user, Header: map[string]string{"If-None-Match": inm}})
					if nm.Status != http.StatusNotModified || len(nm.Body) != 0 {
						t.Fatalf("If-None-Match %s: %d %.80q, want 304 without a body", inm, nm.Status, nm.Body)
					}
					for _, h := range []string{"ETag", "Cache-Control", api.HeaderCacheTags, "Vary"} {
						nm.ExpectHeader(t, h, resp.Header.Get(h))
					}
				}
				w.s.Do(t, req{Method: "GET", Path: path, User: user, Header: map[string]string{"If-None-Match": `"nope"`}}).
					Expect(t, http.StatusOK, "")
			}
		})
	}

	// Every other GET route is never public, anonymous or signed in, whatever it answers.
	routes, _ := registeredRoutes(t)
	for _, route := range routes {
		method, p, _ := strings.Cut(route, " ")
		if method != "GET" || covered[route] {
			continue
		}
		for _, user := range []string{"", "alice"} {
			resp := w.s.Do(t, req{Method: "GET", Path: w.path(p), User: user, Header: map[string]string{"If-None-Match": "*"}})
			if cc := resp.Header.Get("Cache-Control"); resp.Status == http.StatusNotModified || strings.Contains(cc, "public") || strings.Contains(cc, "stale") {
				t.Errorf("%s as %q: %d, Cache-Control %q: a route missing from the table above?", route, user, resp.Status, cc)
			}
		}
	}

	// Private answers and errors: no store, no stale window, no content ETag or tags.
	private := []struct {
		name   string
		req    req
		status int
		etag   string
	}{
		{"the author's story", req{Method: "GET", Path: w.path("/v1/stories/{id}"), User: "alice"}, http.StatusOK, fmt.Sprintf(`"v%d"`, w.version)},
		{"the author's chapter", req{Method: "GET", Path: w.path("/v1/stories/{id}/chapters/1"), User: "alice"}, http.StatusOK, `"v1"`},
		{"own profile", req{Method: "GET", Path: "/v1/me", User: "alice"}, http.StatusOK, ""},
		{"signed-in search", req{Method: "GET", Path: "/v1/search?q=night", User: "alice"}, http.StatusOK, ""},
		{"no such story", req{Method: "GET", Path: "/v1/stories/999999"}, http.StatusNotFound, ""},
		{"no such chapter", req{Method: "GET", Path: w.path("/v1/stories/{id}/chapters/9")}, http.StatusNotFound, ""},
		{"bad tab", req{Method: "GET", Path: "/v1/discover?tab=old"}, http.StatusBadRequest, ""},
		{"bad cursor", req{Method: "GET", Path: "/v1/whispers?cursor=nope"}, http.StatusBadRequest, ""},
		{"no query", req{Method: "GET", Path: "/v1/search/suggest"}, http.StatusBadRequest, ""},
		{"not signed in", req{Method: "GET", Path: "/v1/library"}, http.StatusUnauthorized, ""},
	}
	for _, tt := range private {
		tt.req.Header = map[string]string{"If-None-Match": "*"}
		resp := w.s.Do(t, tt.req)
		cc := resp.Header.Get("Cache-Control")
		if resp.Status != tt.status || !strings.Contains(cc, "no-store") || strings.Contains(cc, "stale") ||
			resp.Header.Get("ETag") != tt.etag || resp.Header.Get(api.HeaderCacheTags) != "" {
			t.Errorf("%s: %d, Cache-Control %q, ETag %q, Cache-Tags %q; want %d, no-store, ETag %q, no tags",
				tt.name, resp.Status, cc, resp.Header.Get("ETag"), resp.Header.Get(api.HeaderCacheTags), tt.status, tt.etag)
		}
	}
}

// snapshot returns a digest of every row of every table: equal snapshots, nothing written.
func snapshot(t *testing.T, db *dbrouter.Router) string {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Primary().Query(ctx, `select quote_ident(table_name) from information_schema.tables
		where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var digest strings.Builder
	for _, table := range tables {
		var sum string
		if err := db.Primary().QueryRow(ctx, "select coalesce(md5(string_agg(t::text, ',' order by t::text)), '') from "+table+" t").Scan(&sum); err != nil {
			t.Fatal(err)
		}
		digest.WriteString(table + "=" + sum + " ")
	}
	return digest.String()
}

// TestUnstorableTextIsABadRequest sends every route that takes a body a string holding NUL
// (\u0000) and one that is not UTF-8, and every text parameter that reaches SQL such a
// value: each is a 400 with the API's error body, and nothing is written.
func TestUnstorableTextIsABadRequest(t *testing.T) {
	w := newWorld(t)
	// A body per route, with NUL in field; the invalid UTF-8 body puts \xff there instead.
	bodies := map[string]struct{ body, field string }{
		"POST /v1/stories":                    {`{"title":"t","blurb":"a\u0000b"}`, "blurb"},
		"PATCH /v1/stories/{id}":              {fmt.Sprintf(`{"blurb":"\u0000","version":%d}`, w.version), "blurb"},
		"POST /v1/stories/{id}/chapters":      {`{"title":"t","content":"a\u0000"}`, "content"},
		"PATCH /v1/stories/{id}/chapters/{n}": {`{"title":"a\u0000","version":1}`, "title"},
		"POST /v1/whispers":                   {`{"body":"a\u0000"}`, "body"},
		"POST /v1/stories/{id}/whispers":      {`{"body":"\u0000"}`, "body"},
		"POST /v1/whispers/{id}/replies":      {`{"body":"a\u0000"}`, "body"},
		"POST /v1/library/shelves":            {`{"name":"a\u0000"}`, "name"},
		"PATCH /v1/library/shelves/{id}":      {`{"name":"\u0000"}`, "name"},
		"PATCH /v1/me":                        {`{"display_name":"x","bio":"a\u0000"}`, "bio"},
	}
	// Every documented route with a body is in the table.
	_, mux := registeredRoutes(t)
	_, model := servedDocument(t, mux)
	for route, o := range documentedRoutes(model) {
		if _, ok := bodies[route]; o.op.RequestBody != nil && !ok {
			t.Errorf("%s takes a body but is not tested here", route)
		}
	}

	before := snapshot(t, w.s.DB)
	for route, tt := range bodies {
		method, p, _ := strings.Cut(route, " ")
		for _, c := range []struct{ name, body, code string }{
			{"NUL", tt.body, "invalid_request"},
			{"invalid UTF-8", strings.Replace(tt.body, `\u0000`, "\xff", 1), "invalid_json"},
		} {
			resp := w.s.Do(t, req{Method: method, Path: w.path(p), User: "alice", Body: c.body})
			e := resp.Err()
			if resp.Status != http.StatusBadRequest || e.Code != c.code || e.Message == "" ||
				resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s with %s: %d %.120s, want 400 %s", route, c.name, resp.Status, resp.Body, c.code)
			}
			if c.code == "invalid_request" && e.Details[tt.field] == "" {
				t.Errorf("%s with %s: details %v, want the problem of %s", route, c.name, e.Details, tt.field)
			}
		}
	}
	cursor := func(raw string) string { return api.Cursor(rawJSON(raw)) }
	for _, path := range []string{
		"/v1/search?q=%FF", "/v1/search?q=a%00", "/v1/search/suggest?q=%FFa", "/v1/search/suggest?q=%00",
		"/v1/library?cursor=" + cursor(`{"n":"a\u0000"}`), "/v1/me/following?cursor=" + cursor(`{"t":"2024-01-01T00:00:00Z","h":"\u0000"}`),
	} {
		resp := w.s.Do(t, req{Method: "GET", Path: path, User: "alice"})
		if e := resp.Err(); resp.Status != http.StatusBadRequest || e.Code != "invalid_request" || len(e.Details) != 1 {
			t.Errorf("GET %s: %d %s, want 400 invalid_request with the parameter's problem", path, resp.Status, resp.Body)
		}
	}
	if after := snapshot(t, w.s.DB); after != before {
		t.Errorf("rejected requests wrote:\nbefore %s\nafter  %s", before, after)
	}
}

// rawJSON is JSON written by hand, encoded as is (api.Cursor marshals its position).
type rawJSON string

// MarshalJSON returns the JSON as written.
func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }
