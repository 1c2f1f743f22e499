package audit_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/engagement"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/library"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/stories"
	"github.com/muejam/edge/appserver/whispers"
)

// TestEveryMutationIsAudited walks through every kind of change of the API and checks the
// author's activity lists exactly those, in order; reads and failures list nothing.
func TestEveryMutationIsAudited(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
		shared := &sharedlist.Shared{Cache: apitest.Cache(t), DB: db, TTL: apitest.CacheTTLs}
		profiles.New(db, log).Register(mux)
		stories.New(db, log).Register(mux)
		social.New(db, log, nil).Register(mux)
		library.New(db, log).Register(mux)
		whispers.New(db, log, shared).Register(mux)
		engagement.New(db, log).Register(mux)
		audit.New(db, log).Register(mux)
	})
	step := func(method, path string, body any, status int, dst any) {
		t.Helper()
		resp := s.Do(t, req{Method: method, Path: path, User: "alice", Body: body})
		resp.Expect(t, status, "")
		if dst != nil {
			resp.Data(t, dst)
		}
	}
	s.Do(t, req{Method: "PATCH", Path: "/v1/me", User: "bob", Body: map[string]any{"handle": "bob_b"}}).Expect(t, http.StatusOK, "")
	step("PATCH", "/v1/me", map[string]any{"display_name": "Alice"}, http.StatusOK, nil)
	var st stories.Story
	step("POST", "/v1/stories", map[string]any{"title": "T"}, http.StatusCreated, &st)
	sp := fmt.Sprintf("/v1/stories/%d", st.ID)
	step("POST", sp+"/chapters", map[string]any{"title": "C", "content": "text"}, http.StatusCreated, nil)
	step("PATCH", sp+"/chapters/1", map[string]any{"content": "more text", "version": 1}, http.StatusOK, nil)
	step("POST", sp+"/publish", nil, http.StatusOK, nil)
	step("POST", sp+"/reads", nil, http.StatusNoContent, nil) // a read: no event
	step("PUT", sp+"/like", nil, http.StatusNoContent, nil)
	step("DELETE", sp+"/like", nil, http.StatusNoContent, nil)
	step("PUT", "/v1/users/bob_b/follow", nil, http.StatusNoContent, nil)
	step("DELETE", "/v1/users/bob_b/follow", nil, http.StatusNoContent, nil)
	step("PUT", "/v1/users/bob_b/block", nil, http.StatusNoContent, nil)
	step("DELETE", "/v1/users/bob_b/block", nil, http.StatusNoContent, nil)
	var sh library.Shelf
	step("POST", "/v1/library/shelves", map[string]any{"name": "Fav"}, http.StatusCreated, &sh)
	shp := fmt.Sprintf("/v1/library/shelves/%d", sh.ID)
	step("PATCH", shp, map[string]any{"name": "Best"}, http.StatusOK, nil)
	step("PUT", fmt.Sprintf("%s/stories/%d", shp, st.ID), nil, http.StatusNoContent, nil)
	step("DELETE", fmt.Sprintf("%s/stories/%d", shp, st.ID), nil, http.StatusNoContent, nil)
	step("DELETE", shp, nil, http.StatusNoContent, nil)
	var w, reply whispers.Whisper
	step("POST", "/v1/whispers", map[string]any{"body": "hi"}, http.StatusCreated, &w)
	wp := fmt.Sprintf("/v1/whispers/%d", w.ID)
	step("POST", wp+"/replies", map[string]any{"body": "me too"}, http.StatusCreated, &reply)
	step("PUT", wp+"/like", nil, http.StatusOK, nil)
	step("DELETE", wp+"/like", nil, http.StatusOK, nil)
	step("DELETE", fmt.Sprintf("/v1/whispers/%d", reply.ID), nil, http.StatusNoContent, nil)
	step("DELETE", sp, nil, http.StatusNoContent, nil)
	step("DELETE", sp, nil, http.StatusNotFound, nil) // failed: no event

	events, _ := activity(t, s, "alice", "?limit=100")
	var got []string
	for _, e := range slices.Backward(events) {
		got = append(got, e.Action+" "+e.Target.Type+":"+e.Target.ID)
	}
	story, chapter := fmt.Sprintf("story:%d", st.ID), fmt.Sprintf("chapter:%d/1", st.ID)
	shelf, item := fmt.Sprintf("shelf:%d", sh.ID), fmt.Sprintf("shelf_item:%d/%d", sh.ID, st.ID)
	want := []string{
		"profile.edit profile:alice", "story.create " + story, "chapter.create " + chapter, "chapter.edit " + chapter,
		"story.publish " + story, "story.like " + story, "story.unlike " + story,
		"user.follow user:bob", "user.unfollow user:bob", "user.block user:bob", "user.unblock user:bob",
		"shelf.create " + shelf, "shelf.rename " + shelf, "shelf.add " + item, "shelf.remove " + item, "shelf.delete " + shelf,
		fmt.Sprintf("whisper.post whisper:%d", w.ID), fmt.Sprintf("whisper.reply whisper:%d", reply.ID),
		fmt.Sprintf("whisper.like whisper:%d", w.ID), fmt.Sprintf("whisper.unlike whisper:%d", w.ID),
		fmt.Sprintf("whisper.delete whisper:%d", reply.ID), "story.delete " + story,
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n%q\nwant\n%q", got, want)
	}
	for _, e := range events {
		switch e.Action {
		case "profile.edit":
			if string(e.Before) != `{"display_name":""}` || string(e.After) != `{"display_name":"Alice"}` {
				t.Errorf("profile.edit %s → %s", e.Before, e.After)
			}
		case "shelf.rename":
			if string(e.Before) != `{"name":"Fav"}` || string(e.After) != `{"name":"Best"}` {
				t.Errorf("shelf.rename %s → %s", e.Before, e.After)
			}
		case "chapter.edit":
			if len(e.Before) == 0 || string(e.Before) == string(e.After) {
				t.Errorf("chapter.edit %s → %s", e.Before, e.After)
			}
		}
	}
}
