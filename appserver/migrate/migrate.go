// Package migrate applies the app server's versioned SQL migrations, embedded in the binary,
// to the primary. Each file in sql/ is named NNNN_description.sql and is applied once, in
// order, in its own transaction; applied versions are recorded in schema_migrations. A
// session-level advisory lock serialises concurrent runs, so two instances starting together
// never race.
package migrate

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed sql/*.sql
var files embed.FS

// lockKey is the advisory lock key held while migrating ("muejam" in ASCII).
const lockKey int64 = 0x6d75656a616d

// Migration is one embedded SQL file.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// All returns the embedded migrations in version order.
func All() ([]Migration, error) {
	return load(files, "sql")
}

func load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(body)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migration version %d appears twice", ms[i].Version)
		}
	}
	return ms, nil
}

// Up applies every embedded migration not yet applied and returns the versions it applied.
func Up(ctx context.Context, pool *pgxpool.Pool) ([]int64, error) {
	ms, err := All()
	if err != nil {
		return nil, err
	}
	return apply(ctx, pool, ms)
}

func apply(ctx context.Context, pool *pgxpool.Pool, ms []Migration) (applied []int64, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", lockKey); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		// A failed unlock leaves the lock to die with the session: drop the connection.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", lockKey); uerr != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `create table if not exists schema_migrations (
		version    bigint primary key,
		name       text not null,
		applied_at timestamptz not null default now()
	)`); err != nil {
		return nil, fmt.Errorf("creating schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, "select version from schema_migrations")
	if err != nil {
		return nil, err
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if slices.Contains(done, m.Version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "insert into schema_migrations (version, name) values ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// Position returns the primary's current WAL position: once a replica has replayed it
// (WaitReplayed), the replica has every migration applied before the call.
func Position(ctx context.Context, primary *pgxpool.Pool) (string, error) {
	var lsn string
	err := primary.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&lsn)
	return lsn, err
}

// WaitReplayed waits until the replica behind conn has replayed the WAL up to lsn, polling
// every 10ms, until ctx ends.
func WaitReplayed(ctx context.Context, conn *pgx.Conn, lsn string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var done bool
		if err := conn.QueryRow(ctx, "select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, true)", lsn).Scan(&done); err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica has not replayed %s: %w", lsn, ctx.Err())
		case <-tick.C:
		}
	}
}
