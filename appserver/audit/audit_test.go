package audit_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/appserver/stories"
	"github.com/muejam/edge/internal/pii"
	"github.com/muejam/edge/internal/testenv"
)

type req = apitest.Request

// start serves the story routes, the activity route and /test/appname (the
// application_name of a write transaction) behind a Recorder logging to the returned
// observer, on a fresh database whose primary URL it returns.
func start(t *testing.T, key string) (*apitest.Server, *observer.ObservedLogs, string) {
	t.Helper()
	db := testenv.NewDatabase(t)
	core, logs := observer.New(zapcore.InfoLevel)
	rec, err := audit.NewRecorder(zap.New(core), key)
	if err != nil {
		t.Fatal(err)
	}
	s := apitest.Start(t, apitest.Options{PrimaryURL: db.PrimaryURL, ReplicaURL: db.ReplicaURL, Wrap: rec.Middleware},
		func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger) {
			stories.New(db, log).Register(mux)
			audit.New(db, log).Register(mux)
			mux.HandleFunc("GET /test/appname", func(w http.ResponseWriter, r *http.Request) {
				var name string
				_, err := db.WithTx(r.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
					return tx.QueryRow(r.Context(), "select current_setting('application_name')").Scan(&name)
				})
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				fmt.Fprint(w, name)
			})
		})
	return s, logs, db.PrimaryURL
}

func activity(t *testing.T, s *apitest.Server, user, query string) ([]audit.Entry, *string) {
	t.Helper()
	resp := s.Do(t, req{Method: "GET", Path: "/v1/me/activity" + query, User: user})
	resp.Expect(t, http.StatusOK, "")
	resp.ExpectHeader(t, "Cache-Control", "private, no-store")
	var page struct {
		Data []audit.Entry `json:"data"`
		Next *string       `json:"next_cursor"`
	}
	apitest.DecodeJSON(t, resp, &page)
	return page.Data, page.Next
}

func TestStoryChangesAreAudited(t *testing.T) {
	s, logs, _ := start(t, "0123456789abcdef-test-key")
	ids := map[string]string{} // action → request id the response carried
	do := func(action string, r req, status int) *apitest.Response {
		t.Helper()
		r.User = "alice"
		resp := s.Do(t, r)
		resp.Expect(t, status, "")
		ids[action] = resp.Header.Get(reqid.Header)
		return resp
	}
	var st stories.Story
	do("story.create", req{Method: "POST", Path: "/v1/stories", Body: map[string]any{"title": "One", "tags": []string{"a"}},
		Header: map[string]string{reqid.Header: "edge-req-1", "X-Forwarded-For": "198.51.100.7"}}, http.StatusCreated).Data(t, &st)
	path := fmt.Sprintf("/v1/stories/%d", st.ID)
	do("story.edit", req{Method: "PATCH", Path: path, Body: map[string]any{"title": "Two", "blurb": "", "version": 1}}, http.StatusOK)
	// A change that fails commits no event.
	s.Do(t, req{Method: "PATCH", Path: path, User: "alice", Body: map[string]any{"title": "Three", "version": 1}}).Expect(t, http.StatusConflict, "version_conflict")
	do("story.delete", req{Method: "DELETE", Path: path}, http.StatusNoContent)

	if ids["story.create"] != "edge-req-1" {
		t.Errorf("the edge's request id was not kept: %q", ids["story.create"])
	}
	events, next := activity(t, s, "alice", "")
	if len(events) != 3 || next != nil {
		t.Fatalf("events %+v, next %v", events, next)
	}
	target := audit.Target{Type: "story", ID: fmt.Sprint(st.ID)}
	for i, action := range []string{"story.delete", "story.edit", "story.create"} {
		e := events[i]
		if e.Action != action || e.Target != target || e.Actor != "alice" || e.Outcome != "success" ||
			e.RequestID != ids[action] || e.Client != nil {
			t.Errorf("event %d = %+v, want %s with request id %s", i, e, action, ids[action])
		}
	}
	if string(events[1].Before) != `{"title":"One"}` || string(events[1].After) != `{"title":"Two"}` {
		t.Errorf("edit before %s after %s", events[1].Before, events[1].After)
	}
	if events, _ := activity(t, s, "bob", ""); len(events) != 0 {
		t.Errorf("bob sees %+v", events)
	}
	// Pagination.
	first, next := activity(t, s, "alice", "?limit=2")
	if len(first) != 2 || next == nil {
		t.Fatalf("page 1: %+v %v", first, next)
	}
	if rest, next := activity(t, s, "alice", "?limit=2&cursor="+*next); len(rest) != 1 || rest[0].Action != "story.create" || next != nil {
		t.Errorf("page 2: %+v %v", rest, next)
	}

	pseudonym := fmt.Sprintf("[ip:%s]", hmacHex("0123456789abcdef-test-key", "198.51.100.7"))
	stored, err := audit.Query(context.Background(), s.DB.Primary(), audit.Filter{Target: "story"})
	if err != nil || len(stored) != 3 || stored[2].Client == nil || *stored[2].Client != pseudonym {
		t.Errorf("stored %+v (%v), want the client %s", stored, err, pseudonym)
	}

	// The log stream: one line an event, in order, with the address pseudonymized.
	lines := logs.FilterMessage("audit event").All()
	if len(lines) != 3 {
		t.Fatalf("%d audit lines: %+v", len(lines), lines)
	}
	for i, action := range []string{"story.create", "story.edit", "story.delete"} {
		f := lines[i].ContextMap()
		if f["action"] != action || f["request_id"] != ids[action] || f["actor"] != "alice" {
			t.Errorf("line %d: %v", i, f)
		}
		// The edge's client is pseudonymized; the test client itself is on loopback, no
		// personal data, kept as it is.
		want := "127.0.0.1"
		if i == 0 {
			want = pseudonym
		}
		if f["client"] != want {
			t.Errorf("line %d client = %v, want %s", i, f["client"], want)
		}
	}
}

func TestWriteTransactionsNameTheRequest(t *testing.T) {
	s, _, _ := start(t, "")
	resp := s.Do(t, req{Method: "GET", Path: "/test/appname", Header: map[string]string{reqid.Header: "abc-123"}})
	if resp.Status != 200 || string(resp.Body) != "request_id=abc-123" {
		t.Errorf("got %d %s", resp.Status, resp.Body)
	}
}

func TestAuditTableIsAppendOnly(t *testing.T) {
	s, _, url := start(t, "")
	var st stories.Story
	s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: map[string]any{"title": "One"}}).Data(t, &st)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Even the owner (a superuser here) cannot change or remove events.
	for _, sql := range []string{
		"update audit_events set actor = 'mallory'",
		"delete from audit_events",
		"truncate audit_events",
		"update " + partition(t, conn) + " set actor = 'mallory'",
	} {
		if _, err := conn.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", sql, err)
		}
	}
	// The app's role may insert and read, never update or delete.
	if _, err := conn.Exec(ctx, "set role muejam_app"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "insert into audit_events (actor, action, target_type, target_id, request_id) values ('a', 'x.y', 't', '1', 'r')"); err != nil {
		t.Errorf("insert as muejam_app: %v", err)
	}
	for _, sql := range []string{
		"update audit_events set actor = 'mallory'",
		"delete from audit_events",
		"truncate audit_events",
		"delete from " + partition(t, conn),
	} {
		if _, err := conn.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s as muejam_app: %v", sql, err)
		}
	}
	if _, err := conn.Exec(ctx, "reset role"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from audit_events where actor = 'alice'").Scan(&n); err != nil || n != 1 {
		t.Errorf("alice's events: %d %v", n, err)
	}
}

// hmacHex is the pii package's pseudonym of an IP address: the first 8 bytes of
// HMAC-SHA256(key, kind ip and the address), in hex.
func hmacHex(key, addr string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte{byte(pii.KindIP)})
	m.Write([]byte(addr))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// partition is the name of this month's partition.
func partition(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var name string
	if err := conn.QueryRow(context.Background(), "select 'audit_events_' || to_char(now() at time zone 'UTC', 'YYYYMM')").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestMaintainAndQuery(t *testing.T) {
	s, _, url := start(t, "")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `create table audit_events_200001 partition of audit_events
		for values from ('2000-01-01 00:00Z') to ('2000-02-01 00:00Z')`); err != nil {
		t.Fatal(err)
	}
	created, dropped, err := audit.Maintain(ctx, conn, 0)
	if err != nil || len(created) != 1 || len(dropped) != 0 {
		t.Fatalf("created %v dropped %v: %v", created, dropped, err)
	}
	created, dropped, err = audit.Maintain(ctx, conn, 400*24*time.Hour)
	if err != nil || len(created) != 0 || len(dropped) != 1 || dropped[0] != "audit_events_200001" {
		t.Fatalf("created %v dropped %v: %v", created, dropped, err)
	}

	var one, two stories.Story
	s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "alice", Body: map[string]any{"title": "One"}}).Data(t, &one)
	s.Do(t, req{Method: "POST", Path: "/v1/stories", User: "bob", Body: map[string]any{"title": "Two"}}).Data(t, &two)
	for _, c := range []struct {
		f    audit.Filter
		want int
	}{
		{audit.Filter{}, 2},
		{audit.Filter{Actor: "bob"}, 1},
		{audit.Filter{Target: "story"}, 2},
		{audit.Filter{Target: fmt.Sprintf("story:%d", one.ID)}, 1},
		{audit.Filter{Since: time.Now().Add(time.Hour)}, 0},
		{audit.Filter{Limit: 1}, 1},
	} {
		got, err := audit.Query(ctx, conn, c.f)
		if err != nil || len(got) != c.want {
			t.Errorf("%+v: %d events (%v), want %d", c.f, len(got), err, c.want)
		}
	}
}

func TestChanges(t *testing.T) {
	b, a := audit.Changes(map[string]any{"title": "x", "tags": []string{"a"}, "blurb": ""},
		map[string]any{"title": "y", "tags": []string{"a"}, "blurb": ""})
	if got, _ := json.Marshal([]any{b, a}); string(got) != `[{"title":"x"},{"title":"y"}]` {
		t.Errorf("got %s", got)
	}
	if b, a := audit.Changes(map[string]any{"n": 1}, map[string]any{"n": 1}); b != nil || a != nil {
		t.Errorf("no change gave %v %v", b, a)
	}
}
