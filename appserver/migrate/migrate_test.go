package migrate

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/muejam/edge/internal/testenv"
)

func TestLoadOrdersAndValidatesNames(t *testing.T) {
	ms, err := load(fstest.MapFS{
		"sql/0010_ten.sql": {Data: []byte("select 10")},
		"sql/0002_two.sql": {Data: []byte("select 2")},
	}, "sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 2 || ms[1].Version != 10 || ms[1].Name != "ten" {
		t.Errorf("load = %+v", ms)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"no number":   {"sql/init.sql": {}},
		"no name":     {"sql/0001.sql": {}},
		"duplicate":   {"sql/0001_a.sql": {}, "sql/0001_b.sql": {}},
		"not sql":     {"sql/0001_a.txt": {}},
		"zero number": {"sql/0000_a.sql": {}},
	} {
		if _, err := load(fsys, "sql"); err == nil {
			t.Errorf("%s: load accepted %v", name, fsys)
		}
	}
}

func TestEmbeddedMigrationsLoad(t *testing.T) {
	ms, err := All()
	if err != nil || len(ms) == 0 {
		t.Fatalf("All() = %d migrations, %v", len(ms), err)
	}
}

func pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := testenv.NewDatabase(t)
	p, err := pgxpool.New(context.Background(), db.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestUpIsIdempotent(t *testing.T) {
	ctx := context.Background()
	p := pool(t)
	all, _ := All()
	applied, err := Up(ctx, p)
	if err != nil || len(applied) != len(all) {
		t.Fatalf("first Up applied %v, err %v; want all %d", applied, err, len(all))
	}
	applied, err = Up(ctx, p)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Up applied %v, err %v; want none", applied, err)
	}
	var n int
	if err := p.QueryRow(ctx, "select count(*) from schema_migrations").Scan(&n); err != nil || n != len(all) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", n, err, len(all))
	}
	// The first migration's table exists and enforces its handle rule.
	if _, err := p.Exec(ctx, "insert into profiles (user_id, handle) values ('u1', 'no spaces allowed')"); err == nil {
		t.Error("profiles accepted an invalid handle")
	}
}

func TestConcurrentUpAppliesEachMigrationOnce(t *testing.T) {
	ctx := context.Background()
	p := pool(t)
	ms := []Migration{
		{Version: 1, Name: "counter", SQL: "create table counter (n int)"},
		{Version: 2, Name: "bump", SQL: "insert into counter values (1)"},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	total := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			applied, err := apply(ctx, p, ms)
			errs <- err
			total <- len(applied)
		})
	}
	wg.Wait()
	close(errs)
	close(total)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent apply: %v", err)
		}
	}
	sum := 0
	for n := range total {
		sum += n
	}
	if sum != len(ms) {
		t.Errorf("migrations applied %d times in all, want %d", sum, len(ms))
	}
	var rows int
	if err := p.QueryRow(ctx, "select count(*) from counter").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("counter has %d rows (%v), want 1", rows, err)
	}
}

func TestFailedMigrationRollsBackAndStops(t *testing.T) {
	ctx := context.Background()
	p := pool(t)
	ms := []Migration{
		{Version: 1, Name: "ok", SQL: "create table a (n int)"},
		{Version: 2, Name: "broken", SQL: "create table b (n int); select * from no_such_table"},
		{Version: 3, Name: "after", SQL: "create table c (n int)"},
	}
	applied, err := apply(ctx, p, ms)
	if err == nil || !strings.Contains(err.Error(), "migration 0002_broken") {
		t.Fatalf("err = %v, want it to name migration 0002_broken", err)
	}
	if len(applied) != 1 || applied[0] != 1 {
		t.Errorf("applied = %v, want [1]", applied)
	}
	var b, c bool
	p.QueryRow(ctx, "select to_regclass('b') is not null, to_regclass('c') is not null").Scan(&b, &c)
	if b || c {
		t.Errorf("tables b=%v c=%v exist after a failed migration", b, c)
	}
}
