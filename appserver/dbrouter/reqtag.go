package dbrouter

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/muejam/edge/appserver/reqid"
)

// Every statement the router sends for a request whose context carries a request id
// (package reqid) runs with application_name "request_id=ID", so that pg_stat_activity,
// lock waits and the server's logs (%a in log_line_prefix) name the request.
//
// A transaction sets it with SET LOCAL in its BEGIN (taggedTx). A statement outside a
// transaction goes as a pgx batch of two, sent in one round trip and run by the server in
// one implicit transaction (one Sync): set_config('application_name', 'request_id=ID', true),
// then the statement. The setting is local to that implicit transaction, so the server drops
// it when the statement ends, fails or is cancelled: a pooled connection never carries one
// request's id into the next use, and nothing has to reset it. Both statements are cached
// prepared statements (pgx's statement cache is keyed by SQL text, which the id never
// enters). BenchmarkReadWithRequestID weighs this against SQL comments.
const setAppNameSQL = "select set_config('application_name', $1, true)"

// appName is the application_name of the requests of ctx, "" when ctx carries no request
// id. reqid admits only letters, digits and "-_.:" in an id: nothing to escape.
func appName(ctx context.Context) string {
	if id := reqid.ID(ctx); id != "" {
		return "request_id=" + id
	}
	return ""
}

// taggedTx returns opts with a BeginQuery that also sets application_name, for the
// transaction only, to "request_id=ID" when ctx carries a request id. It costs no round
// trip: BEGIN and SET LOCAL go as one simple query.
func taggedTx(ctx context.Context, opts pgx.TxOptions) pgx.TxOptions {
	name := appName(ctx)
	if name == "" || opts.BeginQuery != "" {
		return opts
	}
	var b strings.Builder
	b.WriteString("begin")
	if opts.IsoLevel != "" {
		b.WriteString(" isolation level " + string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteString(" " + string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		b.WriteString(" " + string(opts.DeferrableMode))
	}
	b.WriteString("; set local application_name = '" + name + "'")
	opts.BeginQuery = b.String()
	return opts
}

// sender is what *pgxpool.Pool and *pgxpool.Conn share: the statements the router sends
// outside a transaction go through execTagged, queryTagged and scanTagged on one of them.
type sender interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// taggedBatch is the batch naming the request of ctx before sql, nil when ctx carries no
// request id or args start with a per-query option (a pgx.QueryExecMode, result formats)
// that a batch does not take: such a statement goes untagged.
func taggedBatch(ctx context.Context, sql string, args []any) *pgx.Batch {
	name := appName(ctx)
	if name == "" {
		return nil
	}
	if len(args) > 0 {
		switch args[0].(type) {
		case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
			return nil
		}
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, 2)}
	b.Queue(setAppNameSQL, name)
	b.Queue(sql, args...)
	return b
}

// execTagged is s.Exec, naming the request of ctx.
func execTagged(ctx context.Context, s sender, sql string, args ...any) (pgconn.CommandTag, error) {
	b := taggedBatch(ctx, sql, args)
	if b == nil {
		return s.Exec(ctx, sql, args...)
	}
	br := s.SendBatch(ctx, b)
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// queryTagged is s.Query, naming the request of ctx, except that it returns nil rows with
// an error. As with s.Query, the rows hold the connection until they are closed or Next
// returns false.
func queryTagged(ctx context.Context, s sender, sql string, args ...any) (pgx.Rows, error) {
	b := taggedBatch(ctx, sql, args)
	if b == nil {
		return s.Query(ctx, sql, args...)
	}
	br := s.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		rows.Close()
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// scanTagged is s.QueryRow(...).Scan(dest...), naming the request of ctx.
func scanTagged(ctx context.Context, s sender, sql string, args []any, dest ...any) error {
	b := taggedBatch(ctx, sql, args)
	if b == nil {
		return s.QueryRow(ctx, sql, args...).Scan(dest...)
	}
	br := s.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(dest...)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// batchRows are the rows of the last statement of a tagged batch; they close the batch
// (which returns its connection to the pool) when closed or done.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error // of closing the batch
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.br == nil {
		return
	}
	r.Rows.Close()
	r.err = r.br.Close()
	r.br = nil
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}
