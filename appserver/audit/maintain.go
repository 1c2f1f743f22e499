package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Querier is what the operator's functions need: a pool, a connection or the router's
// Primary.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// PartitionsAhead is how many monthly partitions Maintain keeps ready: this month's and the
// next two, so a month never begins without one even if maintenance stalls for weeks.
const PartitionsAhead = 3

// Maintain creates the coming months' partitions and drops those older than retention
// (none when retention is 0), returning the names created and dropped.
func Maintain(ctx context.Context, q Querier, retention time.Duration) (created, dropped []string, err error) {
	if created, err = names(ctx, q, "select audit_ensure_partitions($1)", PartitionsAhead); err != nil {
		return nil, nil, fmt.Errorf("creating audit partitions: %w", err)
	}
	if retention > 0 {
		keep := fmt.Sprintf("%d seconds", int64(retention/time.Second))
		if dropped, err = names(ctx, q, "select audit_drop_partitions($1::interval)", keep); err != nil {
			return created, nil, fmt.Errorf("dropping audit partitions: %w", err)
		}
	}
	return created, dropped, nil
}

func names(ctx context.Context, q Querier, sql string, arg any) ([]string, error) {
	rows, err := q.Query(ctx, sql, arg)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RunMaintenance runs Maintain now and then every interval until ctx is done, logging what
// it changed and its failures.
func RunMaintenance(ctx context.Context, q Querier, retention, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		created, dropped, err := Maintain(ctx, q, retention)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("audit partition maintenance failed", zap.Error(err))
		case len(created)+len(dropped) > 0:
			log.Info("audit partitions", zap.String("created", strings.Join(created, ",")),
				zap.String("dropped", strings.Join(dropped, ",")))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
