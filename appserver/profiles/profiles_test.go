package profiles

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
)

func register(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) { New(db, log).Register(mux) }

func TestMeCreatesProfileOnFirstSight(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	// Concurrent first requests of one user create one profile.
	var wg sync.WaitGroup
	handles := make([]string, 8)
	for i := range handles {
		wg.Go(func() {
			resp := s.Do(t, apitest.Request{Method: "GET", Path: "/v1/me", User: "auth0|alice"})
			var p Profile
			if resp.Status == http.StatusOK {
				resp.Data(t, &p)
			}
			handles[i] = p.Handle
		})
	}
	wg.Wait()
	for _, h := range handles {
		if h != handles[0] || !ValidHandle(h) || !strings.HasPrefix(h, "user_") {
			t.Fatalf("handles of concurrent first requests: %v", handles)
		}
	}
	resp := s.Do(t, apitest.Request{Method: "GET", Path: "/v1/me", User: "auth0|alice"})
	resp.Expect(t, http.StatusOK, "")
	var p Profile
	resp.Data(t, &p)
	if p.UserID != "auth0|alice" || p.Handle != handles[0] {
		t.Errorf("profile %+v", p)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
}

func TestAuth(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	for _, m := range []string{"GET", "PATCH"} {
		s.Do(t, apitest.Request{Method: m, Path: "/v1/me", Body: `{}`}).Expect(t, http.StatusUnauthorized, "unauthenticated")
	}
	// The same header from a network that is not the edge's is ignored.
	untrusted := apitest.Start(t, apitest.Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, register)
	untrusted.Do(t, apitest.Request{Method: "GET", Path: "/v1/me", User: "alice"}).Expect(t, http.StatusUnauthorized, "unauthenticated")
}

func TestPatchMe(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	resp := s.Do(t, apitest.Request{Method: "PATCH", Path: "/v1/me", User: "alice",
		Body: map[string]any{"handle": "Alice_1", "display_name": " Alice ", "bio": "writes <b>things</b>"}})
	resp.Expect(t, http.StatusOK, "")
	var p Profile
	resp.Data(t, &p)
	if p.Handle != "Alice_1" || p.DisplayName != "Alice" || p.Bio != "writes <b>things</b>" {
		t.Errorf("patched profile %+v", p)
	}
	if got := resp.Header.Get("Cache-Purge"); !strings.Contains(got, "user:alice_1") || !strings.Contains(got, "user:user_") {
		t.Errorf("Cache-Purge %q, want the old and new handles", got)
	}
	if resp.Header.Get(dbrouter.TokenHeader) == "" {
		t.Error("no read-your-writes token")
	}

	// Public view, case-insensitive, without the user id.
	resp = s.Do(t, apitest.Request{Method: "GET", Path: "/v1/users/aLiCe_1"})
	resp.Expect(t, http.StatusOK, "")
	var pub Profile
	resp.Data(t, &pub)
	if pub.Handle != "Alice_1" || pub.UserID != "" || strings.Contains(string(resp.Body), "user_id") {
		t.Errorf("public profile %s", resp.Body)
	}
	if resp.Header.Get("Cache-Control") != "public, max-age=300, stale-while-revalidate=300, stale-if-error=21600" || resp.Header.Get("Cache-Tags") != "user:alice_1" {
		t.Errorf("cache headers %v", resp.Header)
	}
	s.Do(t, apitest.Request{Method: "GET", Path: "/v1/users/nobody_here"}).Expect(t, http.StatusNotFound, "not_found")
	s.Do(t, apitest.Request{Method: "GET", Path: "/v1/users/x"}).Expect(t, http.StatusNotFound, "not_found")

	// Another user cannot take the handle in any case; the owner can change its case.
	s.Do(t, apitest.Request{Method: "PATCH", Path: "/v1/me", User: "bob", Body: map[string]any{"handle": "ALICE_1"}}).
		Expect(t, http.StatusConflict, "handle_taken")
	s.Do(t, apitest.Request{Method: "PATCH", Path: "/v1/me", User: "alice", Body: map[string]any{"handle": "ALICE_1"}}).
		Expect(t, http.StatusOK, "")

	// Validation: per-field details.
	resp = s.Do(t, apitest.Request{Method: "PATCH", Path: "/v1/me", User: "alice",
		Body: map[string]any{"handle": "a-b", "display_name": strings.Repeat("x", 51), "bio": strings.Repeat("é", 501)}})
	resp.Expect(t, http.StatusBadRequest, "invalid_request")
	if d := resp.Err().Details; d["handle"] == "" || d["display_name"] == "" || d["bio"] == "" {
		t.Errorf("details %v", d)
	}
	for _, body := range []string{`{"handle": 5}`, `{"nickname": "x"}`, `not json`, ``, `{} {}`} {
		resp = s.Do(t, apitest.Request{Method: "PATCH", Path: "/v1/me", User: "alice", Body: body})
		if resp.Status != http.StatusBadRequest {
			t.Errorf("body %q: %d %s", body, resp.Status, resp.Body)
		}
	}
}

func TestConcurrentHandleClaims(t *testing.T) {
	s := apitest.Start(t, apitest.Options{}, register)
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Go(func() {
			codes[i] = s.Do(t, apitest.Request{Method: "PATCH", Path: "/v1/me", User: "user" + string(rune('a'+i)),
				Body: map[string]any{"handle": "wanted"}}).Status
		})
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			won++
		case http.StatusConflict:
		default:
			t.Errorf("status %d", c)
		}
	}
	if won != 1 {
		t.Errorf("%d users got the same handle: %v", won, codes)
	}
}
