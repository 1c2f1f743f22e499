// Package apitest runs API handlers in tests against real PostgreSQL: a fresh database
// (testenv.NewDatabase) or a given primary and replica, migrated, behind a real dbrouter and
// the same middleware as the app server (request id, read-your-writes token, trusted
// X-Auth-User).
package apitest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/migrate"
	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/appserver/seed"
	"github.com/muejam/edge/internal/testenv"
)

// Options configure Start. Zero values mean a fresh test database on the dev services and
// the default trusted networks (loopback, where the test client runs).
type Options struct {
	PrimaryURL, ReplicaURL string
	// Seeded starts on a copy of the seeded template instead of the migrated one: PlanSizes
	// of seed data (seed.Run with seed 1), vacuumed and analyzed, for the query plan tests.
	Seeded  bool
	Trusted []netip.Prefix
	// Wrap, when not nil, wraps the routes in middleware of the test's own (inside the
	// identity and read-your-writes middleware, as the app server's are).
	Wrap func(http.Handler) http.Handler
}

// Server is a running test server.
type Server struct {
	URL string
	DB  *dbrouter.Router

	primaryURL string

	client *http.Client // keeps the read-your-writes cookie, like a browser
}

// Start migrates the database (a fresh copy of the migrated or the seeded template unless
// opts names one), opens a router on it and serves the routes register adds.
func Start(t testing.TB, opts Options, register func(mux *http.ServeMux, db *dbrouter.Router, log *zap.Logger)) *Server {
	t.Helper()
	if opts.PrimaryURL == "" {
		db := testenv.NewDatabaseFrom(t, template(t, opts.Seeded))
		opts.PrimaryURL, opts.ReplicaURL = db.PrimaryURL, db.ReplicaURL
	}
	if opts.Trusted == nil {
		opts.Trusted = identity.DefaultTrusted
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, opts.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Up(ctx, pool)
	if err != nil {
		pool.Close()
		t.Fatalf("migrating: %v", err)
	}
	// The insert position, not the write position: with synchronous_commit off (the dev
	// services) a commit can return before its record is written.
	var lsn string
	err = pool.QueryRow(ctx, "select pg_current_wal_insert_lsn()::text").Scan(&lsn)
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	if opts.ReplicaURL != "" {
		waitReplayed(ctx, t, opts.ReplicaURL, lsn)
	}
	nodes := []dbrouter.Node{{Name: "primary", Config: mustParse(t, opts.PrimaryURL)}}
	if opts.ReplicaURL != "" {
		nodes = append(nodes, dbrouter.Node{Name: "replica-1", Config: mustParse(t, opts.ReplicaURL)})
	}
	db, err := dbrouter.New(ctx, dbrouter.Config{Nodes: nodes, CheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	mux := http.NewServeMux()
	register(mux, db, zaptest.NewLogger(t))
	var h http.Handler = reqid.Observe(mux)
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	srv := httptest.NewServer(reqid.Middleware(opts.Trusted, nil)(db.Middleware(identity.Middleware(opts.Trusted)(h))))
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{URL: srv.URL, DB: db, primaryURL: opts.PrimaryURL, client: &http.Client{Jar: jar}}
}

// waitReplayed waits until the replica has replayed the primary's WAL up to lsn (the
// migrations), so that tests start from the same schema on both.
func waitReplayed(ctx context.Context, t testing.TB, url, lsn string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := migrate.WaitReplayed(ctx, conn, lsn); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t testing.TB, url string) *pgxpool.Config {
	t.Helper()
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// Response is a response read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// ExpectHeader fails the test unless the response's header field name is want.
func (r *Response) ExpectHeader(t testing.TB, name, want string) {
	t.Helper()
	if got := r.Header.Get(name); got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

// Request is one request of a test.
type Request struct {
	Method, Path string
	User         string // X-Auth-User; none when ""
	Body         any    // sent as JSON unless nil; a string is sent as is
	Header       map[string]string
	// WithoutToken sends the request without the read-your-writes cookie of earlier
	// responses: what a client other than the writer sees.
	WithoutToken bool
}

// Do sends req and reads the response.
func (s *Server) Do(t testing.TB, req Request) *Response {
	t.Helper()
	var body io.Reader
	switch b := req.Body.(type) {
	case nil:
	case string:
		body = bytes.NewBufferString(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	hr, err := http.NewRequest(req.Method, s.URL+req.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	if req.User != "" {
		hr.Header.Set(identity.Header, req.User)
	}
	for k, v := range req.Header {
		hr.Header.Set(k, v)
	}
	client := s.client
	if req.WithoutToken {
		client = http.DefaultClient
	}
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Data decodes the "data" member of the body into dst, failing the test on an error body.
func (r *Response) Data(t testing.TB, dst any) {
	t.Helper()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Data == nil {
		t.Fatalf("status %d, body %s: no data (%v)", r.Status, r.Body, err)
	}
	if err := json.Unmarshal(env.Data, dst); err != nil {
		t.Fatalf("decoding data %s: %v", env.Data, err)
	}
}

// Error is the error member of an error body.
type Error struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details map[string]string `json:"details"`
}

// Err decodes the error body; the zero Error when there is none.
func (r *Response) Err() Error {
	var env struct {
		Error Error `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &env)
	return env.Error
}

// Expect fails the test unless the response has the status and, when code is not "", the
// error code.
func (r *Response) Expect(t testing.TB, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.Err().Code != code) {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, status, code)
	}
}

// DecodeJSON decodes the whole body into dst.
func DecodeJSON(t testing.TB, r *Response, dst any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, dst); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// templates are the databases Start copies for each test, each made once per test process
// when first asked for: copying one costs a fraction of migrating (and seeding) a fresh
// database.
var templates struct {
	migrated, seeded made
}

// made is a database name made once.
type made struct {
	once sync.Once
	name string
	err  error
}

func (m *made) get(build func() (string, error)) (string, error) {
	m.once.Do(func() { m.name, m.err = build() })
	return m.name, m.err
}

// template returns the name of the migrated template on the dev primary, or with seeded the
// template that also holds PlanSizes of seed data, making it when the primary has none.
func template(t testing.TB, seeded bool) string {
	t.Helper()
	name, err := templates.migrated.get(migratedTemplate)
	if err == nil && seeded {
		name, err = templates.seeded.get(func() (string, error) { return seededTemplate(t, name) })
	}
	if err != nil {
		t.Fatalf("the template database: %v", err)
	}
	return name
}

// migratedTemplate returns the template of the embedded migrations, named by their hash.
func migratedTemplate() (string, error) {
	all, err := migrate.All()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range all {
		fmt.Fprintf(h, "%d %s\n%s\n", m.Version, m.Name, m.SQL)
	}
	name := "muejam_template_" + hex.EncodeToString(h.Sum(nil))[:16]
	return name, makeTemplate(name, "", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := migrate.Up(ctx, pool)
		return err
	})
}

// seededTemplate returns the template of the query plan tests: a copy of migrated filled
// by seed.Run with PlanSizes and seed 1, vacuumed and analyzed (the planner knows the
// tables, as autovacuum would have told it), named by migrated, the sizes and the seed
// package's source.
func seededTemplate(t testing.TB, migrated string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%+v\n", migrated, PlanSizes)
	src, err := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "appserver", "seed", "*.go"))
	if err != nil || len(src) == 0 {
		return "", fmt.Errorf("the seed package's source: %v (%d files)", err, len(src))
	}
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\n%s\n", filepath.Base(f), b)
	}
	name := "muejam_seeded_" + hex.EncodeToString(h.Sum(nil))[:16]
	return name, makeTemplate(name, migrated, func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := seed.Run(ctx, pool, seed.Config{Sizes: PlanSizes, Seed: 1})
		return err
	})
}

// makeTemplate makes the database name, a copy of from ("" for an empty one) that fill
// completes, unless the primary has it. It is made under a name of this process's and then
// renamed, so that a process killed meanwhile leaves no half-made template behind, and under
// an advisory lock on the name, so that test processes beside this one wait for it instead of
// making it too. It stays on the dev services for the next runs; other migrations or seed
// code get other names.
func makeTemplate(name, from string, fill func(ctx context.Context, pool *pgxpool.Pool) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, testenv.PrimaryURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx) // which releases the lock too
	if _, err := admin.Exec(ctx, "select pg_advisory_lock(hashtext($1))", name); err != nil {
		return err
	}
	var exists bool
	if err := admin.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil || exists {
		return err
	}
	tmp := fmt.Sprintf("%s_%d", name, os.Getpid())
	if _, err := admin.Exec(ctx, "drop database if exists "+tmp+" with (force)"); err != nil {
		return err
	}
	create := "create database " + tmp
	if from != "" {
		create += " template " + pgx.Identifier{from}.Sanitize()
	}
	if _, err := admin.Exec(ctx, create); err != nil {
		return err
	}
	u, err := url.Parse(testenv.PrimaryURL)
	if err != nil {
		return err
	}
	u.Path = "/" + tmp
	pool, err := pgxpool.New(ctx, u.String())
	if err == nil {
		err = fill(ctx, pool)
		pool.Close()
	}
	if err == nil {
		_, err = admin.Exec(ctx, "alter database "+tmp+" rename to "+name)
	}
	if err != nil {
		_, _ = admin.Exec(ctx, "drop database if exists "+tmp+" with (force)") // best effort: err matters
	}
	return err
}
