package caddyfiles_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muejam/edge/internal/promtext"
)

// reader is who reads in the app cache tests: a viewer address and a token (none: anonymous),
// and the user id the token names, for reads sent straight to an app server.
type reader struct {
	name, viewer, token, user string
}

// titles returns the titles (of stories) or bodies (of whispers) in the "data" of a list
// answer.
func titles(t *testing.T, what string, r result) []string {
	t.Helper()
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("%s = %d %v %s", what, r.status, r.err, r.body)
	}
	var page struct {
		Data []struct{ Title, Body string } `json:"data"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatalf("%s: %v in %s", what, err, r.body)
	}
	out := []string{}
	for _, s := range page.Data {
		out = append(out, s.Title+s.Body)
	}
	return out
}

// direct sends GET path to the app server at addr as user ("": anonymous), the way an edge
// node does (X-Auth-User from a trusted address).
func direct(addr, path, user string) result {
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return result{err: err}
	}
	if user != "" {
		req.Header.Set("X-Auth-User", user)
	}
	return do(http.DefaultClient, req)
}

// everywhere reads path as r through the front tier (twice per edge node) and straight
// from every app server, and fails unless every answer lists exactly want.
func (s *prodStack) everywhere(t *testing.T, when, path string, r reader, want []string) {
	t.Helper()
	for i := range 2 * len(s.nodes) {
		if got := titles(t, path, s.call("GET", path, r.viewer, r.token, "")); !slices.Equal(got, want) {
			t.Errorf("%s, %s through the front tier (read %d): %v, want %v", when, r.name, i+1, got, want)
		}
	}
	for i, a := range s.apps {
		if got := titles(t, path, direct(a.addr, path, r.user)); !slices.Equal(got, want) {
			t.Errorf("%s, %s on app server %d: %v, want %v", when, r.name, i+1, got, want)
		}
	}
}

// send sends method path through the front tier as r (its viewer address and token, if
// any), with body as JSON when not "", and the header fields given as name, value pairs.
func (s *prodStack) send(r reader, method, path, body string, header ...string) result {
	req, err := http.NewRequest(method, s.front.url+path, strings.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("X-Test-Viewer", r.viewer)
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(s.client, req)
}

// appCacheMetric sums a metric of the app server at i's internal listener.
func (s *prodStack) appCacheMetric(t *testing.T, i int, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.apps[i].metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return promtext.Sum(string(b), name, labels)
}

// TestAppCacheAsDeployed runs production's shape (the front tier, two edge nodes, two app
// servers sharing one Valkey Cluster) and checks the app's cache end to end: the feeds and
// search results are computed once for everyone and kept in the app's cache; an edit purges
// them on every app server and edge node before the next read, even when reads right after
// the edit came from a replica that had not replayed it; a block hides the blocked author
// from the blocker at once, everywhere, while the shared pages stay cached for the others;
// signed-in readers who block nobody get the edge's copy for anonymous readers, and the
// answers of those who block anyone are private, so no edge keeps a copy per reader.
func TestAppCacheAsDeployed(t *testing.T) {
	s := startProdStack(t, prodOptions{apps: 2})
	run := randomHex(t, 4)
	user := func(name string) reader {
		id := "appcache-" + name + "-" + run
		return reader{name: name, viewer: s.viewer(false), token: s.signer.token(id, 10*time.Minute), user: id}
	}
	alice, carol, dave := user("alice"), user("carol"), user("dave")
	anon := reader{name: "anonymous", viewer: s.viewer(false)}

	write := func(r reader, method, path, body string, status int, header ...string) result {
		t.Helper()
		res := s.send(r, method, path, body, header...)
		if res.err != nil || res.status != status {
			t.Fatalf("%s %s = %d %v %s, want %d", method, path, res.status, res.err, res.body, status)
		}
		return res
	}
	var story struct {
		ID     int64 `json:"id"`
		Author struct {
			Handle string `json:"handle"`
		} `json:"author"`
	}
	decode := func(r result, dst any) {
		t.Helper()
		var env struct{ Data json.RawMessage }
		if err := json.Unmarshal(r.body, &env); err != nil || json.Unmarshal(env.Data, dst) != nil {
			t.Fatalf("no data in %s", r.body)
		}
	}
	decode(write(alice, "POST", "/v1/stories", `{"title":"Harbour Lights","blurb":"Boats.","tags":["sea"]}`, http.StatusCreated), &story)
	path := fmt.Sprintf("/v1/stories/%d", story.ID)
	write(alice, "POST", path+"/chapters", `{"title":"One","content":"The tide."}`, http.StatusCreated)
	published := write(alice, "POST", path+"/publish", "", http.StatusOK)
	write(alice, "POST", "/v1/whispers", `{"body":"Out at sea."}`, http.StatusCreated)
	waitReplayed(t, s.primaryURL, s.replicaURL)

	const feed, search, whispers = "/v1/discover?tab=new", "/v1/search?q=harbour", "/v1/whispers"
	before := []string{"Harbour Lights"}
	for _, r := range []reader{anon, carol, dave} {
		s.everywhere(t, "after the publish", feed, r, before)
		s.everywhere(t, "after the publish", search, r, before)
		s.everywhere(t, "after the publish", whispers, r, []string{"Out at sea."})
	}
	// Carol and dave block nobody: the edge answers them from the copy it keeps for
	// anonymous readers (viewer_filter), with no request to the app, once every node has
	// loaded the set of blockers the app servers keep (a second after they start, at most).
	for _, r := range []reader{carol, dave} {
		var res result
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			res = s.call("GET", feed, r.viewer, r.token, "")
			if strings.Contains(res.header.Get("Cache-Status"), "hit") || time.Now().After(deadline) {
				break
			}
		}
		if cs := res.header.Get("Cache-Status"); !strings.Contains(cs, "hit") || !strings.HasPrefix(res.header.Get("Cache-Control"), "public") {
			t.Errorf("%s (who blocks nobody), feed: Cache-Status %q, Cache-Control %q; want a hit on the public copy anonymous readers share", r.name, cs, res.header.Get("Cache-Control"))
		}
	}
	var hits float64
	for i := range s.apps {
		hits += s.appCacheMetric(t, i, "muejam_app_cache_lookups_total", `outcome="hit"`)
	}
	if hits == 0 {
		t.Error("the app servers' caches answered no lookup: muejam_app_cache_lookups_total{outcome=\"hit\"} is 0")
	}

	// The edit purges feed:new and the story: reads right after it, on a replica that may not
	// have replayed it, are not kept, so once the replica has it every read shows it.
	write(alice, "PATCH", path, `{"title":"Harbour Lights at Dusk"}`, http.StatusOK, "If-Match", published.header.Get("ETag"))
	for _, r := range []reader{anon, dave} {
		s.call("GET", feed, r.viewer, r.token, "")
		direct(s.apps[1].addr, feed, r.user)
	}
	waitReplayed(t, s.primaryURL, s.replicaURL)
	after := []string{"Harbour Lights at Dusk"}
	for _, r := range []reader{anon, carol, dave} {
		s.everywhere(t, "after the edit", feed, r, after)
	}

	// Carol blocks alice: alice's story and whisper are gone from carol's feed, search and
	// whispers at once, on every node, while anonymous readers and dave still get the shared
	// pages.
	write(carol, "PUT", "/v1/users/"+story.Author.Handle+"/block", "", http.StatusNoContent)
	for _, path := range []string{feed, search, whispers} {
		s.everywhere(t, "after carol's block", path, carol, []string{})
		// Hers is no longer the shared copy: a private answer, which no edge keeps.
		if cc := s.call("GET", path, carol.viewer, carol.token, "").header.Get("Cache-Control"); cc != "private, no-store" {
			t.Errorf("after carol's block, her %s: Cache-Control %q, want private, no-store (no edge copy per reader)", path, cc)
		}
	}
	for _, r := range []reader{anon, dave} {
		s.everywhere(t, "after carol's block", feed, r, after)
		s.everywhere(t, "after carol's block", whispers, r, []string{"Out at sea."})
	}
	write(carol, "DELETE", "/v1/users/"+story.Author.Handle+"/block", "", http.StatusNoContent)
	s.everywhere(t, "after carol's unblock", feed, carol, after)
}

// TestAppCacheSurvivesValkeyUnderLoad: production's path with one Valkey server, signed-in
// readers loading the feed the whole time; Valkey is stopped, a story is published (its purge
// reaches the app's L1 without Valkey), and Valkey comes back. No request fails; while Valkey
// is down the app's cache answers from L1 alone and does not ask L2, and once it is back a
// miss asks L2 again.
func TestAppCacheSurvivesValkeyUnderLoad(t *testing.T) {
	s := startProdStack(t, prodOptions{standaloneValkey: true})
	run := randomHex(t, 4)
	author := reader{name: "author", viewer: s.viewer(false), token: s.signer.token("survive-author-"+run, 10*time.Minute)}
	post := func(path, body string) result {
		t.Helper()
		r := s.send(author, "POST", path, body)
		if r.err != nil || r.status >= 300 {
			t.Fatalf("POST %s = %d %v %s", path, r.status, r.err, r.body)
		}
		return r
	}
	publish := func(title string) {
		t.Helper()
		var env struct {
			Data struct{ ID int64 } `json:"data"`
		}
		if r := post("/v1/stories", `{"title":"`+title+`"}`); json.Unmarshal(r.body, &env) != nil {
			t.Fatalf("POST /v1/stories: no data in %s", r.body)
		}
		post(fmt.Sprintf("/v1/stories/%d/chapters", env.Data.ID), `{"title":"One","content":"Text."}`)
		post(fmt.Sprintf("/v1/stories/%d/publish", env.Data.ID), "")
		waitReplayed(t, s.primaryURL, s.replicaURL)
		time.Sleep(2100 * time.Millisecond) // the purge's settle, at the edge and in the app
	}
	lookups := func(outcome string) float64 {
		return s.appCacheMetric(t, 0, "muejam_app_cache_lookups_total", `layer="l2",outcome="`+outcome+`"`)
	}
	const feed = "/v1/discover?tab=new"
	publish("Before")

	readers := make([]reader, 100)
	for i := range readers {
		id := fmt.Sprintf("survive-reader-%s-%d", run, i)
		readers[i] = reader{name: id, viewer: s.viewer(false), token: s.signer.token(id, 10*time.Minute), user: id}
	}
	stop := make(chan struct{})
	var load counts
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				r := readers[i%len(readers)]
				load.add(s.call("GET", feed, r.viewer, r.token, ""))
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	time.Sleep(time.Second)
	s.valkey.Stop(t)
	unavailable := lookups("unavailable")
	publish("During") // its purge empties the app's L1; the next reads miss it, and L2 is down
	if got := titles(t, feed, s.call("GET", feed, readers[0].viewer, readers[0].token, "")); len(got) == 0 || got[0] != "During" {
		t.Errorf("while Valkey is down, a signed-in reader's feed starts %v, want the story published meanwhile", got)
	}
	if lookups("unavailable") <= unavailable {
		t.Error("while Valkey was down, no L2 lookup was skipped as unavailable: the app's cache did not fall back to L1")
	}

	s.valkey.Start(t)
	asked := lookups("hit") + lookups("miss")
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; lookups("hit")+lookups("miss") <= asked; n++ {
		if time.Now().After(deadline) {
			t.Fatal("10s after Valkey came back, the app's cache had not asked L2 again")
		}
		publish(fmt.Sprintf("After %d", n)) // a purge, and misses after it that ask L2
	}
	close(stop)
	wg.Wait()
	t.Logf("signed-in load through the outage: %v", &load)
	if load.get(200) == 0 || load.String() != fmt.Sprint(map[int]int{200: load.get(200)}) {
		t.Errorf("signed-in reads through the Valkey outage: %v, want only 200s", &load)
	}
}
