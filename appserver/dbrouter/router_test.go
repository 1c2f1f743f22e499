package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/internal/rywtoken"
	"github.com/muejam/edge/internal/testenv"
)

const testInterval = 100 * time.Millisecond

// newRouter opens a router on a primary and one replica with short intervals; cfg may set
// other fields.
func newRouter(t testing.TB, primaryURL, replicaURL string, cfg Config) *Router {
	t.Helper()
	for _, n := range []struct{ name, url string }{{"primary", primaryURL}, {"replica-1", replicaURL}} {
		pc, err := pgxpool.ParseConfig(n.url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Nodes = append(cfg.Nodes, Node{Name: n.name, Config: pc})
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = testInterval
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// port is the server-side proof of where a query ran.
func port(ctx context.Context, q Querier) (int, error) {
	var p int
	err := q.QueryRow(ctx, "select inet_server_port()").Scan(&p)
	return p, err
}

func urlPort(t testing.TB, url string) int {
	t.Helper()
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return int(pc.Port)
}

// readsOn reports whether a fresh read is served by the server on port p.
func readsOn(ctx context.Context, r *Router, p int) func() bool {
	return func() bool {
		got, err := port(ctx, r.Reader(ctx))
		return err == nil && got == p
	}
}

func TestRoutesReadsToReplicaAndWritesToPrimary(t *testing.T) {
	db := testenv.NewDatabase(t)
	r := newRouter(t, db.PrimaryURL, db.ReplicaURL, Config{})
	ctx := testCtx(t)
	primaryPort, replicaPort := urlPort(t, db.PrimaryURL), urlPort(t, db.ReplicaURL)
	if _, err := r.Primary().Exec(ctx, "create table notes (id bigserial primary key, body text not null)"); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var failures atomic.Int64
	fail := func(format string, args ...any) { failures.Add(1); t.Errorf(format, args...) }
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				var where int
				if _, err := r.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, "insert into notes (body) values ($1) returning inet_server_port()", "w").Scan(&where)
				}); err != nil || where != primaryPort {
					fail("write %d/%d on port %d (err %v), want the primary %d", w, i, where, err, primaryPort)
				}
				if got, err := port(ctx, r.Reader(ctx)); err != nil || got != replicaPort {
					fail("read %d/%d on port %d (err %v), want the replica %d", w, i, got, err, replicaPort)
				}
				rows, err := r.Reader(ctx).Query(ctx, "select inet_server_port() from generate_series(1, 3)")
				if err != nil {
					fail("query: %v", err)
					continue
				}
				ports, err := pgx.CollectRows(rows, pgx.RowTo[int32])
				if err != nil || len(ports) != 3 || int(ports[0]) != replicaPort {
					fail("rows %v, err %v", ports, err)
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	if n := testutil.ToFloat64(r.metrics.queries.WithLabelValues("replica-1", "read")); n < 400 {
		t.Errorf("replica reads counted %v, want 400", n)
	}
	if n := testutil.ToFloat64(r.metrics.queries.WithLabelValues("primary", "write")); n < 201 {
		t.Errorf("primary writes counted %v, want 201", n)
	}
	// Once the replica has caught up, its lag is zero in bytes and in time.
	testenv.Eventually(t, 5*time.Second, "replica caught up", func() bool {
		s := r.Status()[1]
		return s.Up && !s.Primary && s.LagBytes == 0 && s.LagSeconds == 0 && s.InRotation
	})
	if s := r.Status()[0]; !s.Up || !s.Primary || s.Role() != "primary" {
		t.Errorf("primary status %+v", s)
	}
}

// TestReplicaStoppedUnderReadLoad stops the replica of a private cluster while readers run:
// no read fails, reads move to the primary within a check interval and come back after the
// replica restarts.
func TestReplicaStoppedUnderReadLoad(t *testing.T) {
	c := testenv.NewCluster(t)
	r := newRouter(t, c.PrimaryURL, c.ReplicaURL, Config{})
	ctx := testCtx(t)

	var reads, failures, onPrimary, onReplica atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var p int
				var err error
				if w%2 == 0 {
					p, err = port(ctx, r.Reader(ctx))
				} else {
					var rows pgx.Rows
					if rows, err = r.Reader(ctx).Query(ctx, "select inet_server_port()"); err == nil {
						var ps []int32
						ps, err = pgx.CollectRows(rows, pgx.RowTo[int32])
						if err == nil {
							p = int(ps[0])
						}
					}
				}
				reads.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					t.Errorf("read failed: %v", err)
				case p == c.PrimaryPort:
					onPrimary.Add(1)
				case p == c.ReplicaPort:
					onReplica.Add(1)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	testenv.Eventually(t, 5*time.Second, "reads served by the replica", func() bool { return onReplica.Load() >= 100 })
	if onPrimary.Load() != 0 {
		t.Errorf("%d reads went to the primary while the replica was healthy", onPrimary.Load())
	}
	c.StopReplica(t)
	// Out of rotation within one check interval (plus scheduling slack on a busy machine).
	out := testenv.Eventually(t, 5*time.Second, "replica out of rotation", func() bool { return !r.Status()[1].InRotation })
	if out > testInterval+100*time.Millisecond {
		t.Errorf("replica left the rotation %s after it stopped, want within one check interval (%s)", out, testInterval)
	}
	testenv.Eventually(t, 5*time.Second, "reads moved to the primary", readsOn(ctx, r, c.PrimaryPort))
	before := onPrimary.Load()
	testenv.Eventually(t, 5*time.Second, "load served by the primary", func() bool { return onPrimary.Load() >= before+100 })

	c.StartReplica(t)
	testenv.Eventually(t, 10*time.Second, "reads back on the replica", readsOn(ctx, r, c.ReplicaPort))
	if failures.Load() != 0 {
		t.Errorf("%d of %d reads failed", failures.Load(), reads.Load())
	}
	t.Logf("%d reads: %d on the replica, %d on the primary, %d retried", reads.Load(), onReplica.Load(), onPrimary.Load(),
		int(testutil.ToFloat64(r.metrics.retries.WithLabelValues("read"))))
}

// TestLaggingReplicaLeavesRotation pauses replay on a private replica until its lag passes
// MaxLag: reads go to the primary; resumed, they come back.
func TestLaggingReplicaLeavesRotation(t *testing.T) {
	c := testenv.NewCluster(t)
	const maxLag = 500 * time.Millisecond
	r := newRouter(t, c.PrimaryURL, c.ReplicaURL, Config{MaxLag: maxLag})
	ctx := testCtx(t)
	if _, err := r.Primary().Exec(ctx, "create table t (n int)"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "replica in rotation", func() bool { return r.Status()[1].InRotation })

	// An idle primary does not make the replica look late.
	idleUntil := time.Now().Add(2 * maxLag)
	for time.Now().Before(idleUntil) {
		if s := r.Status()[1]; !s.InRotation || s.LagSeconds > maxLag.Seconds() {
			t.Fatalf("idle replica out of rotation: %+v", s)
		}
		if !readsOn(ctx, r, c.ReplicaPort)() {
			t.Fatal("read on an idle, caught-up replica went elsewhere")
		}
	}

	c.PauseReplay(t)
	wrote := time.Now()
	if _, err := r.Primary().Exec(ctx, "insert into t values (1)"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "reads moved to the primary", readsOn(ctx, r, c.PrimaryPort))
	if since := time.Since(wrote); since < maxLag {
		t.Errorf("reads left the replica %s after the write, before its lag could pass %s", since, maxLag)
	}
	if s := r.Status()[1]; s.InRotation || s.LagBytes <= 0 || s.LagSeconds <= maxLag.Seconds() || !s.Up {
		t.Errorf("paused replica status %+v", s)
	}
	if v := testutil.ToFloat64(r.metrics.lagBytes.WithLabelValues("replica-1")); v <= 0 {
		t.Errorf("lag bytes metric %v", v)
	}

	c.ResumeReplay(t)
	testenv.Eventually(t, 5*time.Second, "reads back on the replica", readsOn(ctx, r, c.ReplicaPort))
}

// TestReadYourWrites pauses replay: a read carrying the write's token sees the row (from the
// primary), a read without it does not (from the replica).
func TestReadYourWrites(t *testing.T) {
	c := testenv.NewCluster(t)
	r := newRouter(t, c.PrimaryURL, c.ReplicaURL, Config{})
	ctx := testCtx(t)
	if _, err := r.Primary().Exec(ctx, "create table t (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "table replayed", func() bool {
		_, err := r.Reader(ctx).Exec(ctx, "select * from t")
		return err == nil && readsOn(ctx, r, c.ReplicaPort)()
	})
	c.PauseReplay(t)
	tok, err := r.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "insert into t values (7)")
		return err
	})
	if err != nil || tok.IsZero() {
		t.Fatalf("WithTx: token %v, err %v", tok, err)
	}

	// The token travels through HTTP as a client would carry it.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: TokenCookie, Value: r.EncodeToken(tok)})
	var pinned context.Context
	r.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) { pinned = req.Context() })).ServeHTTP(rec, req)

	found := func(ctx context.Context) (bool, int) {
		var ok bool
		var p int
		if err := r.Reader(ctx).QueryRow(ctx, "select exists (select 1 from t where id = 7), inet_server_port()").Scan(&ok, &p); err != nil {
			t.Fatal(err)
		}
		return ok, p
	}
	if ok, p := found(pinned); !ok || p != c.PrimaryPort {
		t.Errorf("read with the token: found %v on port %d, want the row from the primary %d", ok, p, c.PrimaryPort)
	}
	if ok, p := found(ctx); ok || p != c.ReplicaPort {
		t.Errorf("read without the token: found %v on port %d, want no row from the paused replica %d", ok, p, c.ReplicaPort)
	}
	// The same write position signed with another key: a forged token, which pins nothing.
	other, err := rywtoken.NewKeys(strings.Repeat("o", rywtoken.MinKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	forgedReq := httptest.NewRequest("GET", "/", nil)
	forgedReq.Header.Set(TokenHeader, other.Sign(rywtoken.Claims{LSN: tok.lsn, Issued: time.Now()}))
	forged := ctx
	r.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) { forged = req.Context() })).ServeHTTP(httptest.NewRecorder(), forgedReq)
	if ok, p := found(forged); ok || p != c.ReplicaPort || r.Pins(forged) {
		t.Errorf("read with a forged token: found %v on port %d (pins %v), want no row from the paused replica %d", ok, p, r.Pins(forged), c.ReplicaPort)
	}
	bad := WithToken(ctx, Token{lsn: 1 << 62, issued: time.Now().Add(-time.Hour)}) // expired: ignored
	if _, p := found(bad); p != c.ReplicaPort {
		t.Errorf("expired token pinned the read to port %d", p)
	}

	c.ResumeReplay(t)
	testenv.Eventually(t, 5*time.Second, "token satisfied by the replica", func() bool {
		ok, p := found(pinned)
		return ok && p == c.ReplicaPort
	})
}

// TestPromotionResumesWrites stops the primary of a private cluster: writes fail fast with
// ErrPrimaryUnavailable while reads continue; after the replica is promoted the same router
// writes to it.
func TestPromotionResumesWrites(t *testing.T) {
	c := testenv.NewCluster(t)
	r := newRouter(t, c.PrimaryURL, c.ReplicaURL, Config{})
	ctx := testCtx(t)
	write := func() (int, error) {
		var p int
		_, err := r.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "insert into t values (default) returning inet_server_port()").Scan(&p)
		})
		return p, err
	}
	if _, err := r.Primary().Exec(ctx, "create table t (id serial primary key)"); err != nil {
		t.Fatal(err)
	}
	if p, err := write(); err != nil || p != c.PrimaryPort {
		t.Fatalf("write on %d: %v", p, err)
	}

	c.StopPrimary(t)
	start := time.Now()
	for range 3 {
		if _, err := write(); !errors.Is(err, ErrPrimaryUnavailable) {
			t.Fatalf("write with the primary down: %v, want ErrPrimaryUnavailable", err)
		}
		if _, err := r.Primary().Exec(ctx, "insert into t values (default)"); !errors.Is(err, ErrPrimaryUnavailable) {
			t.Fatalf("Exec with the primary down: %v, want ErrPrimaryUnavailable", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing 6 writes took %s, want fast failures", d)
	}
	_, err := write()
	if pe := (*PrimaryUnavailableError)(nil); !errors.As(err, &pe) || pe.RetryAfter <= 0 || pe.RetryAfter > time.Second {
		t.Errorf("write with the primary down: %v, want a PrimaryUnavailableError retrying within a second", err)
	}
	if p, err := port(ctx, r.Reader(ctx)); err != nil || p != c.ReplicaPort {
		t.Errorf("read with the primary down: port %d, %v", p, err)
	}

	c.PromoteReplica(t)
	testenv.Eventually(t, 10*time.Second, "writes resume on the promoted replica", func() bool {
		p, err := write()
		return err == nil && p == c.ReplicaPort
	})
	if n := testutil.ToFloat64(r.metrics.failovers); n != 1 {
		t.Errorf("failovers %v, want 1", n)
	}
	if s := r.Status()[1]; !s.Primary || !s.Up {
		t.Errorf("promoted node status %+v", s)
	}
}

// TestPasswordRotation changes a role's password on a private cluster under load: the
// Password hook is asked again after OnAuthFailure and no request fails.
func TestPasswordRotation(t *testing.T) {
	c := testenv.NewCluster(t)
	ctx := testCtx(t)
	admin, err := pgx.Connect(ctx, c.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, sql := range []string{
		"create role app login password 'first' in role scram_auth",
		"create table t (n int)",
		"grant select, insert on t to app",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	// The "secret store" holds the current password; the hook caches it until told to
	// refresh, as a secrets resolver would.
	var mu sync.Mutex
	stored, cached, refresh := "first", "first", false
	var authFailures, lookups atomic.Int64
	cfg := Config{
		MaxConnLifetime: 100 * time.Millisecond, // make new connections often
		Password: func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			lookups.Add(1)
			if refresh {
				cached, refresh = stored, false
			}
			return cached, nil
		},
		OnAuthFailure: func() {
			authFailures.Add(1)
			mu.Lock()
			refresh = true
			mu.Unlock()
		},
	}
	appURL := func(port int) string {
		return fmt.Sprintf("postgres://app@127.0.0.1:%d/muejam?sslmode=disable", port)
	}
	r := newRouter(t, appURL(c.PrimaryPort), appURL(c.ReplicaPort), cfg)
	work := func() error {
		if _, err := r.Primary().Exec(ctx, "insert into t values (1)"); err != nil {
			return err
		}
		_, err := port(ctx, r.Reader(ctx))
		return err
	}
	testenv.Eventually(t, 10*time.Second, "role replayed on the replica", readsOn(ctx, r, c.ReplicaPort))
	if err := work(); err != nil {
		t.Fatal(err)
	}

	if _, err := admin.Exec(ctx, "alter role app password 'second'"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	stored = "second"
	mu.Unlock()
	before := lookups.Load()
	testenv.Eventually(t, 10*time.Second, "connections made with the new password", func() bool {
		if err := work(); err != nil {
			t.Fatalf("request failed after the password changed: %v", err)
		}
		return authFailures.Load() > 0 && lookups.Load() > before+3
	})
	mu.Lock()
	defer mu.Unlock()
	if cached != "second" {
		t.Errorf("hook still uses %q", cached)
	}
}
