package dbrouter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/muejam/edge/internal/testenv"
)

func TestWithTxRetriesSerializationFailures(t *testing.T) {
	db := testenv.NewDatabase(t)
	r := newRouter(t, db.PrimaryURL, db.ReplicaURL, Config{})
	ctx := testCtx(t)
	if _, err := r.Primary().Exec(ctx, "create table seats (n int)"); err != nil {
		t.Fatal(err)
	}
	// Two serializable transactions read the same rows, then both insert: the first
	// attempts cannot both commit.
	var barrier sync.WaitGroup
	barrier.Add(2)
	var mu sync.Mutex
	attempts := 0
	book := func() error {
		_, err := r.WithTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			mu.Lock()
			attempts++
			first := attempts <= 2
			mu.Unlock()
			var taken int
			if err := tx.QueryRow(ctx, "select count(*) from seats").Scan(&taken); err != nil {
				return err
			}
			if first {
				barrier.Done()
				barrier.Wait()
			}
			_, err := tx.Exec(ctx, "insert into seats values ($1)", taken+1)
			return err
		})
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { errs[i] = book() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("WithTx: %v", err)
	}
	if n := testutil.ToFloat64(r.metrics.retries.WithLabelValues("tx")); n < 1 || attempts < 3 {
		t.Errorf("tx retries %v, attempts %d: want a retry", n, attempts)
	}
	var seats []int32
	rows, err := r.Primary().Query(ctx, "select n from seats order by n")
	if err == nil {
		seats, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	}
	if err != nil || len(seats) != 2 || seats[0] != 1 || seats[1] != 2 {
		t.Errorf("seats %v (%v), want [1 2]: the retry must see the other commit", seats, err)
	}

	// Other errors are not retried.
	calls := 0
	boom := errors.New("boom")
	if _, err := r.WithTx(ctx, pgx.TxOptions{}, func(pgx.Tx) error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("WithTx = %v after %d calls, want boom after 1", err, calls)
	}
}

func TestStatementTimeoutAndSlowQueryLog(t *testing.T) {
	db := testenv.NewDatabase(t)
	core, logs := observer.New(zapcore.WarnLevel)
	r := newRouter(t, db.PrimaryURL, db.ReplicaURL, Config{
		// 1 s: the 0.1 s statement below must finish under it on a loaded machine (300 ms
		// did not, in an empty-cache make test).
		StatementTimeout: time.Second,
		SlowQuery:        50 * time.Millisecond,
		Logger:           zap.New(core),
	})
	ctx := testCtx(t)

	var s string
	if err := r.Reader(context.Background()).QueryRow(context.Background(),
		"select pg_sleep(0.1)::text || 'literal-secret' || $1", "param-secret").Scan(&s); err != nil {
		t.Fatal(err)
	}
	// The statement's entry; the router's own health checks may be slow too on a loaded
	// machine, and are not counted.
	var slow []observer.LoggedEntry
	for _, e := range logs.FilterMessage("slow query").All() {
		if sql, _ := e.ContextMap()["sql"].(string); strings.Contains(sql, "pg_sleep") {
			slow = append(slow, e)
		}
	}
	if len(slow) != 1 {
		t.Fatalf("slow-query log entries: %v", logs.All())
	}
	fields := slow[0].ContextMap()
	if fields["node"] != "replica-1" || fields["sql"] != "select pg_sleep(?)::text || ? || $1" {
		t.Errorf("slow-query fields %v", fields)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "secret") {
				t.Errorf("log leaks a value: %+v", e)
			}
		}
	}

	// A query without a deadline gets StatementTimeout; one with a deadline keeps it.
	start := time.Now()
	_, err := r.Primary().Exec(context.Background(), "select pg_sleep(5)")
	var pe *pgconn.PgError
	if err == nil || time.Since(start) > 4*time.Second {
		t.Errorf("5 s query with a 1 s statement timeout: %v after %s", err, time.Since(start))
	} else if !errors.As(err, &pe) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout error %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := r.Reader(short).Exec(short, "select pg_sleep(1)"); !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
		t.Errorf("query under a 50 ms deadline: %v", err)
	}
}

// BenchmarkPrimaryKeySelect compares a primary-key SELECT on the replica through the router
// (Reader, QueryRow, Scan) with the same SELECT through a bare pgxpool pool on the same node.
// The two alternate in one loop so that both see the same load on the machine; the
// router/pgxpool metric is the ratio of their mean times. Both get a cancellable context with
// no deadline, as net/http gives handlers.
func BenchmarkPrimaryKeySelect(b *testing.B) {
	ctx, r, raw := kvFixture(b)
	var v string
	var tRaw, tRouter time.Duration
	i := 0
	for b.Loop() {
		i = i%1000 + 1
		t0 := time.Now()
		if err := raw.QueryRow(ctx, kvSelect, i).Scan(&v); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := r.Reader(ctx).QueryRow(ctx, kvSelect, i).Scan(&v); err != nil {
			b.Fatal(err)
		}
		tRaw += t1.Sub(t0)
		tRouter += time.Since(t1)
	}
	b.ReportMetric(float64(tRaw.Nanoseconds())/float64(b.N), "pgxpool-ns/op")
	b.ReportMetric(float64(tRouter.Nanoseconds())/float64(b.N), "router-ns/op")
	b.ReportMetric(float64(tRouter)/float64(tRaw), "router/pgxpool")
}

// kvSelect is the primary-key SELECT of the read benchmarks, on kvFixture's table.
const kvSelect = "select v from kv where id = $1"

// kvFixture makes a private primary and replica with a table kv of 1,000 rows, replayed on
// the replica, and returns a context cancelled when the benchmark ends, a router on both
// nodes and a bare pgxpool pool on the replica.
func kvFixture(b *testing.B) (context.Context, *Router, *pgxpool.Pool) {
	b.Helper()
	db := testenv.NewDatabase(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	r := newRouter(b, db.PrimaryURL, db.ReplicaURL, Config{CheckInterval: time.Second})
	if _, err := r.Primary().Exec(ctx, `create table kv (id int primary key, v text not null);
		insert into kv select i, md5(i::text) from generate_series(1, 1000) i`); err != nil {
		b.Fatal(err)
	}
	raw, err := pgxpool.New(ctx, db.ReplicaURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(raw.Close)
	testenv.Eventually(b, 5*time.Second, "rows replayed", func() bool {
		var n int
		return raw.QueryRow(ctx, "select count(*) from kv").Scan(&n) == nil && n == 1000
	})
	return ctx, r, raw
}
