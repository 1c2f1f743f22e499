package caddyfiles_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/migrate"
	"github.com/muejam/edge/internal/testenv"
)

// TestLibraryThroughTheEdge is the end-to-end test of the MueJam Library API (issue 6):
// real HTTP through bin/caddy running dev.Caddyfile, with tokens from `make token`
// (scripts/devtoken, the dev key in .run/dev-jwt/), to bin/appserver on real PostgreSQL.
// Two users write, read, whisper and like; the edge caches the public reads, purges them
// when the app server says so, and refuses anonymous and forged callers.
func TestLibraryThroughTheEdge(t *testing.T) {
	alice, bob, anon := caller{t, makeToken(t, "alice")}, caller{t, makeToken(t, "bob")}, caller{t: t}
	stack := startDevStack(t)

	// Alice writes a story, adds a chapter and publishes it.
	var story storyView
	r := alice.do("POST", "/v1/stories", `{"title":"The Lighthouse","blurb":"A keeper and the sea.","tags":["sea"]}`)
	r.expect(http.StatusCreated, &story)
	if r.header.Get("X-Read-Your-Writes") == "" || r.header.Get("Cache-Purge") != "" {
		t.Errorf("a write through the edge: X-Read-Your-Writes %q (want a token), Cache-Purge %q (want it consumed by the edge)",
			r.header.Get("X-Read-Your-Writes"), r.header.Get("Cache-Purge"))
	}
	path := fmt.Sprintf("/v1/stories/%d", story.ID)
	var chapter struct {
		Number      int    `json:"number"`
		ContentHTML string `json:"content_html"`
	}
	alice.do("POST", path+"/chapters", `{"title":"Landfall","content":"The *light* turned.<script>alert(1)</script>"}`).
		expect(http.StatusCreated, &chapter)
	if chapter.Number != 1 || !strings.Contains(chapter.ContentHTML, "<em>light</em>") || strings.Contains(chapter.ContentHTML, "<script") {
		t.Errorf("chapter %d, content_html %q: want number 1, markdown rendered, the script dropped", chapter.Number, chapter.ContentHTML)
	}
	r = alice.do("POST", path+"/publish", "")
	r.expect(http.StatusOK, &story)
	etag := r.header.Get("ETag")
	if story.Status != "published" || etag != fmt.Sprintf(`"v%d"`, story.Version) {
		t.Fatalf("published story: %+v, ETag %s", story, etag)
	}
	// Publishing purged story:ID and feed:new: for purge_settle the edge stores no answer
	// carrying them (one read from a replica behind the publish would otherwise stay cached).
	time.Sleep(devPurgeSettle)

	// Bob reads it; his second read is an edge cache hit. So is the anonymous discover feed.
	r = bob.do("GET", path, "")
	r.expect(http.StatusOK, nil)
	r.expectCache(false)
	if r.header.Get("Cache-Tags") != "" {
		t.Errorf("Cache-Tags %q reached the client", r.header.Get("Cache-Tags"))
	}
	bob.do("GET", path, "").expectCache(true)
	anon.do("GET", "/v1/discover", "").expectCache(false)
	var feed []storyView
	r = anon.do("GET", "/v1/discover", "")
	r.expect(http.StatusOK, &feed)
	r.expectCache(true)
	if len(feed) != 1 || feed[0].ID != story.ID {
		t.Errorf("discover = %+v, want the story", feed)
	}

	// Alice edits it: on the app server's Cache-Purge (story:ID feed:new) the edge drops the
	// cached story and feed. Bob has no read-your-writes token: his reads right after the
	// edit may come from a replica that has not replayed it, but within purge_settle the edge
	// stores none of them, so once the replica has it every read shows the edit.
	alice.do("PATCH", path, `{"title":"The Lighthouse Keeper"}`, "If-Match", etag).expect(http.StatusOK, nil)
	for range 2 {
		r = bob.do("GET", path, "")
		r.expect(http.StatusOK, nil)
		r.expectCache(false)
		if st := r.header.Get("Cache-Status"); strings.Contains(st, "stored") {
			t.Errorf("a read right after the purge was stored: Cache-Status %q", st)
		}
	}
	stack.waitReplica(t)
	r = bob.do("GET", path, "")
	r.expect(http.StatusOK, &story)
	r.expectCache(false)
	r = anon.do("GET", "/v1/discover", "")
	r.expect(http.StatusOK, &feed)
	r.expectCache(false)
	if story.Title != "The Lighthouse Keeper" || len(feed) != 1 || feed[0].Title != story.Title {
		t.Errorf("after the edit: story %q, discover %+v; want the new title in both", story.Title, feed)
	}

	// Bob whispers about it, and sees his whisper at once with his read-your-writes token
	// (the edge skips its cache); then he likes the story.
	var whisper struct {
		ID int64 `json:"id"`
	}
	r = bob.do("POST", path+"/whispers", `{"body":"Loved the ending."}`)
	r.expect(http.StatusCreated, &whisper)
	var whispers []struct {
		ID int64 `json:"id"`
	}
	r = bob.do("GET", path+"/whispers", "", "X-Read-Your-Writes", r.header.Get("X-Read-Your-Writes"))
	r.expect(http.StatusOK, &whispers)
	if len(whispers) != 1 || whispers[0].ID != whisper.ID || !strings.Contains(r.header.Get("Cache-Status"), "fwd=bypass") {
		t.Errorf("bob's whispers with his token: %+v, Cache-Status %q; want his whisper, fwd=bypass", whispers, r.header.Get("Cache-Status"))
	}
	bob.do("PUT", path+"/like", "").expect(http.StatusNoContent, nil)

	// No token: the app server answers 401 JSON on a protected route, whatever X-Auth-User
	// the client sends (the edge overwrites it).
	r = anon.do("POST", "/v1/stories", `{"title":"Not mine"}`, "X-Auth-User", "alice")
	var apiErr struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &apiErr); r.status != http.StatusUnauthorized || err != nil || apiErr.Error.Code != "unauthenticated" {
		t.Errorf("anonymous POST /v1/stories = %d %s, want 401 unauthenticated", r.status, r.body)
	}
	// Forged tokens: alice's claims with bob's signature, and a well-formed token signed by a
	// key the edge does not trust. The edge refuses both.
	aliceParts, bobParts := strings.Split(alice.token, "."), strings.Split(bob.token, ".")
	foreign, _ := devToken("alice")
	for name, token := range map[string]string{
		"claims swapped": aliceParts[0] + "." + aliceParts[1] + "." + bobParts[2],
		"unknown key":    foreign,
	} {
		r := caller{t, token}.do("GET", "/v1/me", "")
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
			t.Errorf("forged token (%s): %d, WWW-Authenticate %q; want 401 invalid_token", name, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
	stack.stop(t)
}

// devPurgeSettle is dev.Caddyfile's edge_cache purge_settle.
const devPurgeSettle = 2 * time.Second

// storyView is what the test reads of a story or a feed item.
type storyView struct {
	ID      int64  `json:"id"`
	Title   string `json:"title"`
	Status  string `json:"status"`
	Version int64  `json:"version"`
}

// makeToken returns a dev JWT for user as `make token USER=user` prints it: signed by the
// dev key in .run/dev-jwt/ (created on first use), which dev.Caddyfile's jwks_file trusts.
func makeToken(t *testing.T, user string) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	cmd := exec.Command("go", "run", "./scripts/devtoken", "-dir", filepath.Join(root, ".run/dev-jwt"), "-user", user)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/devtoken -user %s: %v", user, err)
	}
	token := strings.TrimSpace(string(out))
	if strings.Count(token, ".") != 2 {
		t.Fatalf("scripts/devtoken printed %q, not a JWT", out)
	}
	return token
}

// waitReplica waits until the replica has replayed everything written to the primary so far.
func (s devStack) waitReplica(t *testing.T) { waitReplayed(t, s.db.PrimaryURL, s.db.ReplicaURL) }

// waitReplayed waits until the replica at replicaURL has replayed everything written to the
// primary at primaryURL so far.
func waitReplayed(t *testing.T, primaryURL, replicaURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	primary, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	// The insert position: with synchronous_commit off, a commit can return before its
	// record is written.
	var lsn string
	if err := primary.QueryRow(ctx, "select pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	replica, err := pgx.Connect(ctx, replicaURL)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)
	if err := migrate.WaitReplayed(ctx, replica, lsn); err != nil {
		t.Fatal(err)
	}
}

// caller makes requests to the dev edge on :8080 with a bearer token, or none.
type caller struct {
	t     *testing.T
	token string
}

// answer is a response of the edge, its body read.
type answer struct {
	t      *testing.T
	call   string
	status int
	header http.Header
	body   []byte
}

// do sends method path with body (JSON, none when "") and the header fields given as name,
// value pairs.
func (c caller) do(method, path, body string, header ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://127.0.0.1:8080"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return answer{t: c.t, call: method + " " + path, status: resp.StatusCode, header: resp.Header, body: b}
}

// expect fails the test unless the answer has the status, and decodes its "data" into dst
// (when not nil).
func (a answer) expect(status int, dst any) {
	a.t.Helper()
	if a.status != status {
		a.t.Fatalf("%s = %d %s, want %d", a.call, a.status, bytes.TrimSpace(a.body), status)
	}
	if dst == nil {
		return
	}
	var env struct{ Data json.RawMessage }
	if err := json.Unmarshal(a.body, &env); err != nil || json.Unmarshal(env.Data, dst) != nil {
		a.t.Fatalf("%s: no data in %s", a.call, a.body)
	}
}

// expectCache fails the test unless the edge answered from its cache (hit) or not, as said
// by Cache-Status.
func (a answer) expectCache(hit bool) {
	a.t.Helper()
	status := a.header.Get("Cache-Status")
	if got := strings.HasPrefix(status, "muejam-edge; hit"); got != hit || status == "" {
		a.t.Errorf("%s: Cache-Status %q, want a hit: %v", a.call, status, hit)
	}
}
