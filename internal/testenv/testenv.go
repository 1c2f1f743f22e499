// Package testenv gives tests the real services of the dev stack (scripts/services.sh): the
// PostgreSQL primary and streaming replica and Valkey, plus a TCP proxy that a test can cut
// to take a dependency down and bring it back. Tests fail, never skip, when a service is
// missing: `make test` starts them.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/internal/freeport"
)

// Addresses of the dev services; the environment variables the app server reads override them.
var (
	PrimaryURL = envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:55432/muejam?sslmode=disable")
	ReplicaURL = envOr("DATABASE_REPLICA_URLS", "postgres://postgres@127.0.0.1:55433/muejam?sslmode=disable")
	ValkeyAddr = envOr("VALKEY_ADDR", "127.0.0.1:56379")
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// rootModule is the first line of the repository's own go.mod; the modules of the tests
// whose dependencies the edge must not carry (infra/terraform, ...) sit below it.
const rootModule = "module github.com/muejam/edge\n"

// RepoRoot returns the repository's root: the nearest directory above the working
// directory whose go.mod is the root module's.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), rootModule) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("the go.mod of github.com/muejam/edge is not above the working directory")
		}
		dir = parent
	}
}

// Database is a fresh, empty database on the primary, visible on the replica through
// streaming replication.
type Database struct {
	Name       string
	PrimaryURL string
	ReplicaURL string
}

// NewDatabase creates a database for one test and drops it when the test ends.
func NewDatabase(t testing.TB) Database {
	t.Helper()
	return NewDatabaseFrom(t, "")
}

// NewDatabaseFrom is NewDatabase with a copy of the database template instead of an empty
// database ("" is PostgreSQL's default template). Nobody may be connected to template.
func NewDatabaseFrom(t testing.TB, template string) Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, PrimaryURL)
	if err != nil {
		t.Fatalf("PostgreSQL primary at %s is not reachable (run `make services-up`): %v", PrimaryURL, err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "muejam_test_" + hex.EncodeToString(b)
	create := "create database " + name
	if template != "" {
		create += " template " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, PrimaryURL)
		if err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "drop database if exists "+name+" with (force)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	waitReplayed(ctx, t, name)
	return Database{Name: name, PrimaryURL: withDB(t, PrimaryURL, name), ReplicaURL: withDB(t, ReplicaURL, name)}
}

// waitReplayed waits until the replica has replayed the creation of database name.
func waitReplayed(ctx context.Context, t testing.TB, name string) {
	t.Helper()
	replica, err := pgx.Connect(ctx, ReplicaURL)
	if err != nil {
		t.Fatalf("PostgreSQL replica at %s is not reachable (run `make services-up`): %v", ReplicaURL, err)
	}
	defer replica.Close(ctx)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		if err := replica.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", name).Scan(&ok); err != nil {
			t.Fatalf("waiting for the replica to replay database %s: %v", name, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replica did not replay the creation of database %s: %v", name, ctx.Err())
		case <-tick.C:
		}
	}
}

func withDB(t testing.TB, raw, name string) string {
	u := parseURL(t, raw)
	u.Path = "/" + name
	return u.String()
}

// Host returns the host:port of a URL.
func Host(t testing.TB, raw string) string {
	return parseURL(t, raw).Host
}

// WithHost returns the URL with its host:port replaced, to route it through a Proxy.
func WithHost(t testing.TB, raw, hostport string) string {
	u := parseURL(t, raw)
	u.Host = hostport
	return u.String()
}

func parseURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	return u
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of the call, which no
// other test process gets while this one lives (freeport).
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Proxy forwards TCP connections from its own address to a target. Down closes the listener
// and every open connection, as a crashed server would; Up listens again on the same address.
type Proxy struct {
	Addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to target on a free loopback port; it stops when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{target: target, conns: map[net.Conn]struct{}{}}
	// A port from FreeAddr, not one the kernel picks: Up listens on it again after Down, and
	// no other test process may be given it meanwhile.
	ln, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	p.start(ln)
	t.Cleanup(func() { p.Down(); p.wg.Wait() })
	return p
}

// Up listens again after Down.
func (p *Proxy) Up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		t.Fatalf("proxy up on %s: %v", p.Addr, err)
	}
	p.start(ln)
}

// Down refuses new connections and cuts the open ones.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) start(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.pipe(c) })
		}
	})
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) pipe(client net.Conn) {
	if !p.track(client) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(server) {
		client.Close()
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			dst.Close()
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
	client.Close()
	server.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}
