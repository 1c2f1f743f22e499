package secrets_test

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/muejam/edge/appserver/secrets"
)

// The database password comes from Secrets Manager at every new connection (from the cache
// while it is fresh); when PostgreSQL rejects it (SQLSTATE 28P01, after a rotation), the
// reference is invalidated so that the next connection attempt fetches the rotated value.
func ExampleResolver_Func() {
	const ref = "aws-sm:muejam/production/database#password"
	resolver := secrets.New(secrets.Options{})
	password := resolver.Func(ref)

	pc, err := pgxpool.ParseConfig("postgres://muejam@db.internal:5432/muejam")
	if err != nil {
		panic(err)
	}
	pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) (err error) {
		cc.Password, err = password(ctx)
		return err
	}

	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// Wherever a connection error surfaces (Acquire, Ping, a query, a health check):
	if err := pool.Ping(ctx); err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "28P01" {
			resolver.Invalidate(ref)
		}
	}
}
