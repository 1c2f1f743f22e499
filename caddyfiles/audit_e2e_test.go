package caddyfiles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/internal/testenv"
)

// TestAuditAndRequestIDsThroughTheEdge is the end-to-end test of issue 22 through bin/caddy
// (dev.Caddyfile) and bin/appserver: a story created, edited and deleted by a signed-in user
// yields exactly those audit events, with the request ids the edge gave the requests; a
// forced panic yields one error event whose request id is in the edge's access log, the app
// server's log and the 500's body; an admin purge yields an audit event at the edge.
func TestAuditAndRequestIDsThroughTheEdge(t *testing.T) {
	t.Setenv("APP_FAULT_INJECTION", "true")
	alice := caller{t, makeToken(t, "alice")}
	stack := startDevStack(t)

	// Create, edit, delete: the request id of each answer is the edge's.
	var ids []string
	r := alice.do("POST", "/v1/stories", `{"title":"Audited"}`)
	var story storyView
	r.expect(http.StatusCreated, &story)
	ids = append(ids, r.header.Get("X-Request-Id"))
	path := fmt.Sprintf("/v1/stories/%d", story.ID)
	r = alice.do("PATCH", path, `{"title":"Audited twice"}`, "If-Match", r.header.Get("ETag"))
	r.expect(http.StatusOK, nil)
	ids = append(ids, r.header.Get("X-Request-Id"))
	r = alice.do("DELETE", path, "")
	r.expect(http.StatusNoContent, nil)
	ids = append(ids, r.header.Get("X-Request-Id"))
	for _, id := range ids {
		if len(id) != 36 || strings.Count(strings.Join(ids, " "), id) != 1 {
			t.Fatalf("request ids %q: want three distinct UUIDs", ids)
		}
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, stack.db.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "select actor || ' ' || action || ' ' || target_type || ':' || target_id || ' ' || request_id from audit_events order by id")
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("story:%d", story.ID)
	want := []string{"alice story.create " + target + " " + ids[0], "alice story.edit " + target + " " + ids[1], "alice story.delete " + target + " " + ids[2]}
	if !slices.Equal(got, want) {
		t.Errorf("audit events\n%q\nwant\n%q", got, want)
	}
	var activity []struct {
		Action    string `json:"action"`
		RequestID string `json:"request_id"`
	}
	alice.do("GET", "/v1/me/activity", "", "X-Read-Your-Writes", r.header.Get("X-Read-Your-Writes")).expect(http.StatusOK, &activity)
	if len(activity) != 3 || activity[0].Action != "story.delete" || activity[0].RequestID != ids[2] {
		t.Errorf("GET /v1/me/activity through the edge: %+v", activity)
	}
	// The app server's log stream has the same events.
	waitOutput(t, "app server", stack.app.Output, func(out string) bool {
		return strings.Count(out, `"msg":"audit event"`) == 3 && strings.Contains(out, ids[2])
	})

	// A forced panic: one error event, the same id in the 500's body and both logs.
	r = caller{t: t}.do("GET", "/v1/_fault/panic", "")
	var body struct {
		Error struct {
			Code      string `json:"code"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || r.status != http.StatusInternalServerError || body.Error.Code != "internal" {
		t.Fatalf("GET /v1/_fault/panic = %d %s", r.status, r.body)
	}
	id := body.Error.RequestID
	if id == "" || r.header.Get("X-Request-Id") != id {
		t.Errorf("the 500's body names request %q, its X-Request-Id %q", id, r.header.Get("X-Request-Id"))
	}
	waitOutput(t, "app server", stack.app.Output, func(out string) bool {
		return countLines(out, `"msg":"panic recovered"`, id, `"stack":"goroutine`) == 1 &&
			countLines(out, `"msg":"request"`, id, `"status":500`, `"route":"GET /v1/_fault/panic"`) == 1
	})
	waitOutput(t, "edge", stack.edge.Output, func(out string) bool {
		return countLines(out, `"logger":"http.log.access`, `"request_id":"`+id+`"`, `"status":500`) == 1
	})

	// An admin purge is an audit event of the edge's, naming its caller.
	resp, err := http.Post("http://127.0.0.1:2019/edge/cache/purge", "application/json", strings.NewReader(`{"tags":["`+target+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("purge: %d", resp.StatusCode)
	}
	waitOutput(t, "edge", stack.edge.Output, func(out string) bool {
		return countLines(out, `"logger":"muejam.audit"`, `"action":"cache.purge"`, `"caller":"127.0.0.1:`, `"outcome":"success"`) == 1
	})
	stack.stop(t)
}

// countLines counts the lines of out that hold every one of parts.
func countLines(out string, parts ...string) int {
	n := 0
	for line := range strings.Lines(out) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// waitOutput waits up to 5 s (the edge writes its logs in batches, at least every second)
// for the output of a process to satisfy ok.
func waitOutput(t *testing.T, name string, output func() string, ok func(string) bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "what the test waits for in the "+name+"'s log", func() bool { return ok(output()) })
}
