package dbrouter

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/reqid"
)

// taggedTx returns opts with a BeginQuery that also sets application_name, for the
// transaction only, to "request_id=ID" when ctx carries a request id (package reqid), so
// that pg_stat_activity, lock waits and the server's logs (%a in log_line_prefix) name the
// request of every write. It costs no round trip: BEGIN and SET LOCAL go as one simple
// query. A comment on the SQL would name it too, but would make every request's statement
// text distinct and defeat the prepared statement cache; reads, served by the pools
// without a transaction, are not tagged.
func taggedTx(ctx context.Context, opts pgx.TxOptions) pgx.TxOptions {
	id := reqid.ID(ctx)
	if id == "" || opts.BeginQuery != "" {
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
	// reqid admits only letters, digits and "-_.:" in an id: nothing to escape.
	b.WriteString("; set local application_name = 'request_id=" + id + "'")
	opts.BeginQuery = b.String()
	return opts
}
