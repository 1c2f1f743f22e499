package engagement

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
)

type req = apitest.Request

func start(t *testing.T) *storylisttest.Env { return storylisttest.Start(t, register) }

func register(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger) {
	New(shared.DB, log).Register(mux)
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
