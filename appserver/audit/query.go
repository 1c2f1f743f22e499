package audit

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Filter selects events for operators; zero fields select everything.
type Filter struct {
	Actor  string
	Target string // TYPE or TYPE:ID
	Since  time.Time
	Limit  int // at most this many, newest first; 0 for 100
}

// querySQL is the operators' query, also in docs/operators.md: the events of an actor, a target (type,
// optionally id) and since a time, newest first.
const querySQL = `select ` + entryColumns + ` from audit_events
	where ($1 = '' or actor = $1) and ($2 = '' or target_type = $2) and ($3 = '' or target_id = $3)
	  and at >= $4
	order by at desc, id desc limit $5`

// Query returns the events f selects, newest first.
func Query(ctx context.Context, q Querier, f Filter) ([]Entry, error) {
	typ, id, _ := strings.Cut(f.Target, ":")
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := q.Query(ctx, querySQL, f.Actor, typ, id, f.Since, f.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanEntry)
}
