package caddyfiles_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAnonymousCannotEvictOrBypass floods production's path (the front tier, two edge nodes
// on one Valkey Cluster, the app) with what an anonymous client could try against a cached
// page: forged read-your-writes tokens in the header and in the cookie, a cookie whose name
// only contains "ryw", request no-cache, and unsafe requests on the page's URL. It counts the
// page's requests at the app: forged tokens and cookies bring none (the edge serves its
// copy), no-cache brings conditional revalidations only (304s, each one an admitted request
// of the limit), and unsafe anonymous requests evict nothing.
func TestAnonymousCannotEvictOrBypass(t *testing.T) {
	s := startProdStack(t)
	author := reader{viewer: s.viewer(false), token: s.signer.token("abuse-author-"+randomHex(t, 4), 10*time.Minute)}
	send := s.send
	r := send(author, "POST", "/v1/stories", `{"title":"Popular","blurb":"Everyone reads it."}`)
	var story struct {
		ID int64 `json:"id"`
	}
	var env struct{ Data json.RawMessage }
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &env) != nil || json.Unmarshal(env.Data, &story) != nil {
		t.Fatalf("POST /v1/stories = %d %s", r.status, r.body)
	}
	path := fmt.Sprintf("/v1/stories/%d", story.ID)
	if r = send(author, "POST", path+"/chapters", `{"title":"One","content":"Text."}`); r.status != http.StatusCreated {
		t.Fatalf("POST chapters = %d %s", r.status, r.body)
	}
	if r = send(author, "POST", path+"/publish", ""); r.status != http.StatusOK {
		t.Fatalf("publish = %d %s", r.status, r.body)
	}
	waitReplayed(t, s.primaryURL, s.replicaURL)
	time.Sleep(2100 * time.Millisecond) // the publish's purge_settle

	// Both nodes hold the page: every plain anonymous read is a hit.
	warm := reader{viewer: s.viewer(false)}
	hits := 0
	for range 10 {
		if r = send(warm, "GET", path, ""); r.status == http.StatusOK && strings.HasPrefix(r.header.Get("Cache-Status"), "muejam-edge; hit") {
			hits++
		}
	}
	if hits < 8 {
		t.Fatalf("%d of 10 warm reads were hits; want the page cached on both nodes", hits)
	}
	const route = `route="GET /v1/stories/{id}"`
	atApp := func() float64 { return s.appCacheMetric(t, 0, "muejam_app_http_requests_total", route) }

	// A token of the right shape, signed with a key the edge does not have.
	forged := base64.RawURLEncoding.EncodeToString(append([]byte{2}, make([]byte, 32)...))
	tricks := []struct {
		name   string
		header []string
	}{
		{"forged X-Read-Your-Writes", []string{"X-Read-Your-Writes", forged}},
		{"garbage X-Read-Your-Writes", []string{"X-Read-Your-Writes", "x"}},
		{"forged ryw cookie", []string{"Cookie", "ryw=" + forged}},
		{"cookie named xryw", []string{"Cookie", "xryw=1; a=ryw=2"}},
	}
	for _, tr := range tricks {
		before, v := atApp(), reader{viewer: s.viewer(false)}
		for range 30 {
			if r = send(v, "GET", path, "", tr.header...); r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Cache-Status"), "muejam-edge; hit") {
				t.Errorf("%s: %d, Cache-Status %q; want a hit", tr.name, r.status, r.header.Get("Cache-Status"))
				break
			}
		}
		if got := atApp() - before; got != 0 {
			t.Errorf("%s: 30 requests reached the app %v times, want 0", tr.name, got)
		}
	}

	// no-cache: revalidations, at most one per admitted request, and the page stays cached.
	before, v := atApp(), reader{viewer: s.viewer(false)}
	admitted := 0
	for range 80 {
		if r = send(v, "GET", path, "", "Cache-Control", "no-cache", "Pragma", "no-cache"); r.status == http.StatusOK {
			admitted++
		}
	}
	got := atApp() - before
	t.Logf("no-cache: %d of 80 requests admitted, %v revalidations at the app", admitted, got)
	if got > float64(admitted) || admitted > 60 {
		t.Errorf("no-cache: %d of 80 admitted (limit 60/min), the app answered %v; want at most one revalidation per admitted request", admitted, got)
	}

	// Unsafe anonymous requests on the page's URL are refused and evict nothing: the reads
	// after them are hits, and none reaches the app.
	v = reader{viewer: s.viewer(false)}
	for _, m := range []string{"DELETE", "PATCH", "POST"} {
		for range 5 {
			if r = send(v, m, path, `{"title":"x"}`); r.status < 400 {
				t.Errorf("anonymous %s %s = %d, want refused", m, path, r.status)
			}
		}
	}
	before = atApp()
	for range 4 {
		if r = send(reader{viewer: s.viewer(false)}, "GET", path, ""); !strings.HasPrefix(r.header.Get("Cache-Status"), "muejam-edge; hit") {
			t.Errorf("after anonymous unsafe requests: Cache-Status %q, want a hit (nothing evicted)", r.header.Get("Cache-Status"))
		}
	}
	if got := atApp() - before; got != 0 {
		t.Errorf("reads after anonymous unsafe requests reached the app %v times, want 0", got)
	}
}
