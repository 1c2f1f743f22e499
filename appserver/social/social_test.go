package social

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/profiles"
	"github.com/muejam/edge/internal/blockers"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

func register(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
	profiles.New(db, log).Register(mux)
	New(db, log, nil).Register(mux)
}

type req = apitest.Request

// handle creates user's profile (GET /v1/me) and returns its handle.
func handle(t *testing.T, s *apitest.Server, user string) string {
	t.Helper()
	resp := s.Do(t, req{Method: "GET", Path: "/v1/me", User: user})
	resp.Expect(t, http.StatusOK, "")
	var p profiles.Profile
	resp.Data(t, &p)
	return p.Handle
}

// list returns the handles of every page of a list route, limit at a time.
func list(t *testing.T, s *apitest.Server, user, path string, limit int) []string {
	t.Helper()
	var handles []string
	next := fmt.Sprintf("%s?limit=%d", path, limit)
	for range 100 {
		resp := s.Do(t, req{Method: "GET", Path: next, User: user})
		resp.Expect(t, http.StatusOK, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		var page struct {
			Data       []User  `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		apitest.DecodeJSON(t, resp, &page)
		for _, u := range page.Data {
			handles = append(handles, u.Handle)
		}
		if page.NextCursor == nil {
			return handles
		}
		next = fmt.Sprintf("%s?limit=%d&cursor=%s", path, limit, *page.NextCursor)
	}
	t.Fatal("pagination does not end")
	return nil
}

func TestFollow(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	alice, bob := handle(t, s, "alice"), handle(t, s, "bob")

	for range 2 { // idempotent
		resp := s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/follow", User: "alice"})
		resp.Expect(t, http.StatusNoContent, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
		if resp.Header.Get(dbrouter.TokenHeader) == "" {
			t.Error("follow set no read-your-writes token")
		}
	}
	if got := list(t, s, "alice", "/v1/me/following", 20); !slices.Equal(got, []string{bob}) {
		t.Errorf("alice follows %v, want [%s]", got, bob)
	}
	if got := list(t, s, "bob", "/v1/me/followers", 20); !slices.Equal(got, []string{alice}) {
		t.Errorf("bob's followers %v, want [%s]", got, alice)
	}
	if got := list(t, s, "bob", "/v1/me/following", 20); len(got) != 0 {
		t.Errorf("bob follows %v, want nobody", got)
	}
	// Handles are found in any letter case.
	for range 2 {
		s.Do(t, req{Method: "DELETE", Path: "/v1/users/" + strings.ToUpper(bob) + "/follow", User: "alice"}).Expect(t, http.StatusNoContent, "")
	}
	if got := list(t, s, "bob", "/v1/me/followers", 20); len(got) != 0 {
		t.Errorf("bob's followers after unfollow %v", got)
	}

	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + alice + "/follow", User: "alice"}).Expect(t, http.StatusUnprocessableEntity, "self_follow")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/nobody_here/follow", User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, req{Method: "DELETE", Path: "/v1/users/no!/follow", User: "alice"}).Expect(t, http.StatusNotFound, "not_found")
	// A first request of a user without a profile yet creates it.
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/follow", User: "carol"}).Expect(t, http.StatusNoContent, "")
	if got := list(t, s, "bob", "/v1/me/followers", 20); len(got) != 1 || got[0] != handle(t, s, "carol") {
		t.Errorf("bob's followers %v, want carol", got)
	}
}

func TestListsPaginate(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	star := handle(t, s, "star")
	var want []string
	for i := range 5 {
		user := fmt.Sprint("fan", i)
		want = append([]string{handle(t, s, user)}, want...)
		s.Do(t, req{Method: "PUT", Path: "/v1/users/" + star + "/follow", User: user}).Expect(t, http.StatusNoContent, "")
		s.Do(t, req{Method: "PUT", Path: "/v1/users/" + want[0] + "/block", User: "star"}).Expect(t, http.StatusNoContent, "")
	}
	// Blocking each fan after they followed removed every follow.
	if got := list(t, s, "star", "/v1/me/followers", 2); len(got) != 0 {
		t.Errorf("followers %v after blocking them all", got)
	}
	if got := list(t, s, "star", "/v1/me/blocks", 2); !slices.Equal(got, want) {
		t.Errorf("blocks %v, want %v (newest first)", got, want)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=!!", "cursor=bm90IGpzb24"} {
		resp := s.Do(t, req{Method: "GET", Path: "/v1/me/following?" + q, User: "star"})
		resp.Expect(t, http.StatusBadRequest, "invalid_request")
		if len(resp.Err().Details) != 1 {
			t.Errorf("%s: details %v", q, resp.Err().Details)
		}
	}
}

func TestBlock(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	alice, bob := handle(t, s, "alice"), handle(t, s, "bob")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/follow", User: "alice"}).Expect(t, http.StatusNoContent, "")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + alice + "/follow", User: "bob"}).Expect(t, http.StatusNoContent, "")

	for range 2 { // idempotent
		resp := s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/block", User: "alice"})
		resp.Expect(t, http.StatusNoContent, "")
		resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	}
	for _, u := range []string{"alice", "bob"} {
		if got := list(t, s, u, "/v1/me/following", 20); len(got) != 0 {
			t.Errorf("%s still follows %v after the block", u, got)
		}
	}
	if got := list(t, s, "alice", "/v1/me/blocks", 20); !slices.Equal(got, []string{bob}) {
		t.Errorf("alice blocks %v", got)
	}
	if got := list(t, s, "bob", "/v1/me/blocks", 20); len(got) != 0 {
		t.Errorf("bob blocks %v", got)
	}
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + alice + "/follow", User: "bob"}).Expect(t, http.StatusForbidden, "blocked")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/follow", User: "alice"}).Expect(t, http.StatusConflict, "user_blocked")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + alice + "/block", User: "alice"}).Expect(t, http.StatusUnprocessableEntity, "self_block")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/nobody_here/block", User: "alice"}).Expect(t, http.StatusNotFound, "not_found")

	for range 2 {
		s.Do(t, req{Method: "DELETE", Path: "/v1/users/" + bob + "/block", User: "alice"}).Expect(t, http.StatusNoContent, "")
	}
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + alice + "/follow", User: "bob"}).Expect(t, http.StatusNoContent, "")
	if got := list(t, s, "alice", "/v1/me/followers", 20); !slices.Equal(got, []string{bob}) {
		t.Errorf("alice's followers after unblock %v", got)
	}
}

// TestHidingHelpers checks the SQL helpers other packages filter with.
func TestHidingHelpers(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	handle(t, s, "alice")
	bob := handle(t, s, "bob")
	handle(t, s, "carol")
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/block", User: "alice"}).Expect(t, http.StatusNoContent, "")
	ctx := context.Background()
	q := s.DB.Primary()
	for viewer, want := range map[string][]string{"alice": {"alice", "carol"}, "carol": {"alice", "bob", "carol"}, "": {"alice", "bob", "carol"}} {
		rows, err := q.Query(ctx, "select user_id from profiles pr where "+NotBlocked("pr.user_id", "$1")+" order by user_id", viewer)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			got = append(got, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("authors visible to %q: %v, want %v", viewer, got, want)
		}
	}
	for _, c := range []struct {
		blocker, blocked string
		want             bool
	}{{"alice", "bob", true}, {"bob", "alice", false}, {"alice", "carol", false}} {
		if got, err := Blocked(ctx, q, c.blocker, c.blocked); err != nil || got != c.want {
			t.Errorf("Blocked(%s, %s) = %v, %v", c.blocker, c.blocked, got, err)
		}
	}
}

func TestAuthRequired(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	bob := handle(t, s, "bob")
	untrusted := apitest.Start(t, apitest.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, register)
	routes := []struct{ method, path string }{
		{"PUT", "/v1/users/" + bob + "/follow"},
		{"DELETE", "/v1/users/" + bob + "/follow"},
		{"PUT", "/v1/users/" + bob + "/block"},
		{"DELETE", "/v1/users/" + bob + "/block"},
		{"GET", "/v1/me/following"},
		{"GET", "/v1/me/followers"},
		{"GET", "/v1/me/blocks"},
	}
	for _, rt := range routes {
		s.Do(t, req{Method: rt.method, Path: rt.path}).Expect(t, http.StatusUnauthorized, "unauthenticated")
		untrusted.Do(t, req{Method: rt.method, Path: rt.path, User: "alice"}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	}
}

// TestConcurrentFollows: many users follow one at once, one of them many times: one row each.
func TestConcurrentFollows(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	star := handle(t, s, "star")
	const fans, repeats = 16, 6
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range fans + repeats {
		user := fmt.Sprint("fan", i)
		if i >= fans {
			user = "fan0"
		}
		wg.Go(func() {
			<-start
			if resp := s.Do(t, req{Method: "PUT", Path: "/v1/users/" + star + "/follow", User: user}); resp.Status != http.StatusNoContent {
				t.Errorf("follow: %d %s", resp.Status, resp.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := list(t, s, "star", "/v1/me/followers", 100); len(got) != fans {
		t.Errorf("%d followers listed, want %d", len(got), fans)
	}
	var rows int
	if err := s.DB.Primary().QueryRow(context.Background(), "select count(*) from follows").Scan(&rows); err != nil || rows != fans {
		t.Errorf("%d follow rows (%v), want %d", rows, err, fans)
	}
}

// TestFollowRacingBlock: a follow sent while the followee blocks the follower never survives
// the block, whichever commits first.
func TestFollowRacingBlock(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	alice, bob := handle(t, s, "alice"), handle(t, s, "bob")
	for round := range 10 {
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			if resp := s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/block", User: "alice"}); resp.Status != http.StatusNoContent {
				t.Errorf("block: %d %s", resp.Status, resp.Body)
			}
		})
		wg.Go(func() {
			<-start
			// Before the block: 204 (and the block removes it); after: 403.
			if resp := s.Do(t, req{Method: "PUT", Path: "/v1/users/" + alice + "/follow", User: "bob"}); resp.Status != http.StatusNoContent && resp.Status != http.StatusForbidden {
				t.Errorf("follow: %d %s", resp.Status, resp.Body)
			}
		})
		close(start)
		wg.Wait()
		if got := list(t, s, "alice", "/v1/me/followers", 20); len(got) != 0 {
			t.Fatalf("round %d: bob follows alice despite her block: %v", round, got)
		}
		s.Do(t, req{Method: "DELETE", Path: "/v1/users/" + bob + "/block", User: "alice"}).Expect(t, http.StatusNoContent, "")
	}
}

// TestBlockTellsTheEdgeFirst: a block adds its user to the set of users who block anyone
// (internal/blockers, in a real Valkey) before it is made; with Valkey down it is refused
// with 503 and Retry-After and nothing is blocked, so no edge node can take the user for
// someone who blocks nobody while their block is in force.
func TestBlockTellsTheEdgeFirst(t *testing.T) {
	v := testenv.StartValkey(t)
	conn, err := valkeyconn.New(valkeyconn.Config{Addresses: []string{v.Addr}}, valkeyconn.Options{Name: "social test", OpenFor: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	s := apitest.Start(t, apitest.Options{}, func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
		profiles.New(db, log).Register(mux)
		bw := blockers.NewWriter(conn, time.Second, func(ctx context.Context) ([]string, error) { return ListBlockers(ctx, db.Primary()) }, log)
		t.Cleanup(bw.Close)
		New(db, log, bw).Register(mux)
	})
	bob, carl := handle(t, s, "bob"), handle(t, s, "carl")
	handle(t, s, "alice")

	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{v.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	member := func(user string) bool {
		ok, err := client.Do(t.Context(), client.B().Sismember().Key("muejam:{blockers}:set").Member(user).Build()).AsBool()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for deadline := time.Now().Add(5 * time.Second); !conn.Available(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not connected to valkey within 5s")
		}
	}
	s.Do(t, req{Method: "PUT", Path: "/v1/users/" + bob + "/block", User: "alice"}).Expect(t, http.StatusNoContent, "")
	if !member("alice") || member("bob") {
		t.Errorf("after alice's block: alice in the set %v, bob %v; want true, false", member("alice"), member("bob"))
	}

	v.Stop(t)
	resp := s.Do(t, req{Method: "PUT", Path: "/v1/users/" + carl + "/block", User: "alice"})
	resp.Expect(t, http.StatusServiceUnavailable, "unavailable")
	resp.ExpectHeader(t, "Retry-After", "5")
	if got := list(t, s, "alice", "/v1/me/blocks", 20); !slices.Equal(got, []string{bob}) {
		t.Errorf("alice blocks %v after a refused block, want [%s]", got, bob)
	}
}
