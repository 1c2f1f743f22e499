package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/internal/testenv"
)

// requestCtx is ctx carrying a fresh request id, as reqid.Middleware gives handlers.
func requestCtx(ctx context.Context) context.Context {
	return reqid.NewContext(ctx, &reqid.Info{ID: reqid.New(), Start: time.Now()})
}

func TestTaggedTx(t *testing.T) {
	ctx := requestCtx(context.Background())
	id := reqid.ID(ctx)
	for _, c := range []struct {
		ctx  context.Context
		opts pgx.TxOptions
		want string
	}{
		{context.Background(), pgx.TxOptions{}, ""},
		{ctx, pgx.TxOptions{}, "begin; set local application_name = 'request_id=" + id + "'"},
		{ctx, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly, DeferrableMode: pgx.Deferrable},
			"begin isolation level serializable read only deferrable; set local application_name = 'request_id=" + id + "'"},
		{ctx, pgx.TxOptions{BeginQuery: "begin priority high"}, "begin priority high"},
	} {
		if got := taggedTx(c.ctx, c.opts).BeginQuery; got != c.want {
			t.Errorf("%+v: %q, want %q", c.opts, got, c.want)
		}
	}
}

// appNameOf waits until a statement whose text contains marker sleeps (pg_sleep) on the
// server of conn and returns that backend's application_name.
func appNameOf(t *testing.T, ctx context.Context, conn *pgx.Conn, marker string) string {
	t.Helper()
	var name string
	testenv.Eventually(t, 5*time.Second, "a statement marked "+marker+" running", func() bool {
		// Sleeping, not only active: a statement is active, its text shown, from its Parse
		// on, which pgx may send before the statements that precede it in a batch run.
		err := conn.QueryRow(ctx, `select application_name from pg_stat_activity
			where state = 'active' and wait_event = 'PgSleep' and pid <> pg_backend_pid() and position($1 in query) > 0`, marker).Scan(&name)
		return err == nil
	})
	return name
}

// TestStatementsNameTheirRequest runs each way of sending a statement outside a transaction
// (reads on the replica, writes on the primary; Exec, Query, QueryRow) with a context
// carrying a request id, and watches pg_stat_activity from another connection while the
// statement sleeps: its application_name is request_id=ID. The pools have one connection,
// so the next statement, sent without a request id, reuses it: its application_name is the
// connection's own again, also after a tagged statement failed.
func TestStatementsNameTheirRequest(t *testing.T) {
	db := testenv.NewDatabase(t)
	core, logs := observer.New(zapcore.WarnLevel)
	r := newRouter(t, db.PrimaryURL, db.ReplicaURL, Config{MaxConns: 1, SlowQuery: 100 * time.Millisecond, Logger: zap.New(core)})
	ctx := testCtx(t)
	watch := map[string]*pgx.Conn{}
	for name, url := range map[string]string{"primary": db.PrimaryURL, "replica": db.ReplicaURL} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		watch[name] = conn
	}
	var base string
	if err := r.Reader(ctx).QueryRow(ctx, "show application_name").Scan(&base); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(base, "request_id") {
		t.Fatalf("base application_name %q", base)
	}

	run := map[string]func(ctx context.Context, sql string) error{
		"Reader.Exec": func(ctx context.Context, sql string) error { _, err := r.Reader(ctx).Exec(ctx, sql); return err },
		"Reader.Query": func(ctx context.Context, sql string) error {
			rows, err := r.Reader(ctx).Query(ctx, sql)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			return rows.Err()
		},
		"Reader.QueryRow": func(ctx context.Context, sql string) error { return r.Reader(ctx).QueryRow(ctx, sql).Scan(new(string)) },
		"Primary.Exec":    func(ctx context.Context, sql string) error { _, err := r.Primary().Exec(ctx, sql); return err },
		"Primary.Query": func(ctx context.Context, sql string) error {
			rows, err := r.Primary().Query(ctx, sql)
			if err == nil {
				_, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			return err
		},
		"Primary.QueryRow": func(ctx context.Context, sql string) error { return r.Primary().QueryRow(ctx, sql).Scan(new(string)) },
	}
	for form, send := range run {
		server := watch["replica"]
		if strings.HasPrefix(form, "Primary") {
			server = watch["primary"]
		}
		rctx := requestCtx(ctx)
		marker := "marker " + form
		done := make(chan error, 1)
		go func() { done <- send(rctx, "select pg_sleep(0.3)::text || '"+marker+"'") }()
		if got, want := appNameOf(t, ctx, server, marker), "request_id="+reqid.ID(rctx); got != want {
			t.Errorf("%s with a request id runs as %q, want %q", form, got, want)
		}
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		// The one connection, reused without a request id.
		marker = "untagged " + form
		go func() { done <- send(ctx, "select pg_sleep(0.3)::text || '"+marker+"'") }()
		if got := appNameOf(t, ctx, server, marker); got != base {
			t.Errorf("%s without a request id, after one with, runs as %q, want %q", form, got, base)
		}
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		// A failed tagged statement leaves nothing behind either.
		if err := send(rctx, "select (1/0)::text"); err == nil {
			t.Errorf("%s: 1/0 did not fail", form)
		}
		q := r.Reader(ctx)
		if strings.HasPrefix(form, "Primary") {
			q = r.Primary()
		}
		var name string
		if err := q.QueryRow(ctx, "show application_name").Scan(&name); err != nil || name != base {
			t.Errorf("after a failed %s: application_name %q (%v), want %q", form, name, err, base)
		}
	}

	// The slow-query log sees the statements of the tagged batches, never the tag. (The
	// router's own health checks may be slow too on a loaded machine: they are not counted.)
	var sleeps int
	for _, e := range logs.FilterMessage("slow query").All() {
		switch sql, _ := e.ContextMap()["sql"].(string); {
		case sql == "select pg_sleep(?)::text || ?":
			sleeps++
		case strings.Contains(sql, "set_config"):
			t.Errorf("slow query log holds the tag: %q", sql)
		}
	}
	if sleeps != 2*len(run) {
		t.Errorf("%d slow-query entries of the sleeping statements, want %d", sleeps, 2*len(run))
	}

	// A write transaction names its request too, and its commit LSN read leaves the
	// connection as it was.
	rctx := requestCtx(ctx)
	var inTx string
	if _, err := r.WithTx(rctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		return tx.QueryRow(rctx, "show application_name").Scan(&inTx)
	}); err != nil || inTx != "request_id="+reqid.ID(rctx) {
		t.Errorf("in a transaction: application_name %q (%v)", inTx, err)
	}
	var after string
	if err := r.Primary().QueryRow(ctx, "show application_name").Scan(&after); err != nil || after != base {
		t.Errorf("after a transaction: application_name %q (%v), want %q", after, err, base)
	}
}

// TestTaggedStatementsKeepRouting checks what the tagged path must keep of the plain one:
// pgx.ErrNoRows, arguments, an empty result, a cancelled statement, and a read retried on
// another node after a connection error.
func TestTaggedStatementsKeepRouting(t *testing.T) {
	db := testenv.NewDatabase(t)
	r := newRouter(t, db.PrimaryURL, db.ReplicaURL, Config{MaxConns: 2})
	ctx := requestCtx(testCtx(t))
	var n int
	if err := r.Reader(ctx).QueryRow(ctx, "select 1 where $1::int > 1", 1).Scan(&n); !errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("no row: %v", err)
	}
	rows, err := r.Reader(ctx).Query(ctx, "select g from generate_series(1, $1::int) g", 3)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("rows %v (%v)", got, err)
	}
	if tag, err := r.Primary().Exec(ctx, "create table t (n int)"); err != nil || tag.String() != "CREATE TABLE" {
		t.Errorf("exec: %q %v", tag, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := r.Reader(short).Exec(short, "select pg_sleep(1)"); err == nil {
		t.Error("a cancelled statement succeeded")
	}
	// Both pools are whole again: every connection can be acquired.
	for _, nd := range r.nodes {
		testenv.Eventually(t, 5*time.Second, nd.name+" connections released", func() bool { return nd.pool.Stat().AcquiredConns() == 0 })
	}
}

// BenchmarkReadWithRequestID weighs the ways of naming the request of a primary-key SELECT
// on the replica. Through the router: without a request id (router-untagged) and with one
// (router-batch: set_config and the statement pipelined, the router's way). On a bare
// pgxpool pool, as references: the same two (untagged, batch), a separate SET round trip
// before the statement (set-roundtrip), and a /* request_id=... */ comment, unique per
// request, in the default statement cache mode (comment-cache: every request prepares a new
// statement and evicts an old one), with QueryExecModeExec (comment-exec: an unnamed
// statement parsed and planned each time, one round trip, argument types guessed from Go
// types) and with QueryExecModeDescribeExec (comment-describe: two round trips). Every
// tagged read has a new request id. The variants alternate in one loop, so that all see the
// same load on the machine; each reports its mean time as <variant>-ns/op.
func BenchmarkReadWithRequestID(b *testing.B) {
	ctx, r, raw := kvFixture(b)
	comment := func(mode pgx.QueryExecMode) func(ctx context.Context, i int, v *string) error {
		return func(ctx context.Context, i int, v *string) error {
			return raw.QueryRow(ctx, "/* request_id="+reqid.ID(ctx)+" */ "+kvSelect, mode, i).Scan(v)
		}
	}
	router := func(ctx context.Context, i int, v *string) error {
		return r.Reader(ctx).QueryRow(ctx, kvSelect, i).Scan(v)
	}
	variants := []struct {
		name   string
		tagged bool
		read   func(ctx context.Context, i int, v *string) error
		total  time.Duration
	}{
		{name: "router-untagged", read: router},
		{name: "router-batch", tagged: true, read: router},
		{name: "untagged", read: func(ctx context.Context, i int, v *string) error { return raw.QueryRow(ctx, kvSelect, i).Scan(v) }},
		{name: "batch", tagged: true, read: func(ctx context.Context, i int, v *string) error { return scanTagged(ctx, raw, kvSelect, []any{i}, v) }},
		{name: "set-roundtrip", tagged: true, read: func(ctx context.Context, i int, v *string) error {
			conn, err := raw.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "select set_config('application_name', $1, false)", appName(ctx)); err != nil {
				return err
			}
			return conn.QueryRow(ctx, kvSelect, i).Scan(v)
		}},
		{name: "comment-cache", tagged: true, read: comment(pgx.QueryExecModeCacheStatement)},
		{name: "comment-exec", tagged: true, read: comment(pgx.QueryExecModeExec)},
		{name: "comment-describe", tagged: true, read: comment(pgx.QueryExecModeDescribeExec)},
	}
	var v string
	i := 0
	for b.Loop() {
		i = i%1000 + 1
		for k := range variants {
			c := &variants[k]
			rctx := ctx
			if c.tagged {
				rctx = requestCtx(ctx)
			}
			start := time.Now()
			if err := c.read(rctx, i, &v); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			c.total += time.Since(start)
		}
	}
	for _, c := range variants {
		b.ReportMetric(float64(c.total.Nanoseconds())/float64(b.N), c.name+"-ns/op")
	}
}
