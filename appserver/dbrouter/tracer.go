package dbrouter

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// tracer is the pgx tracer of one node: it logs slow queries (sent alone or in a batch) and
// reports refused passwords.
type tracer struct{ node *node }

type traceKey struct{}

type traceStart struct {
	at  time.Time
	sql string
}

// TraceQueryStart remembers when and what.
func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if t.node.router.cfg.SlowQuery < 0 {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, traceStart{at: time.Now(), sql: data.SQL})
}

// TraceQueryEnd logs the query if it was slow.
func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if st, ok := ctx.Value(traceKey{}).(traceStart); ok {
		t.logSlow(st.at, st.sql, data.CommandTag, data.Err)
	}
}

// TraceBatchStart remembers when: a batch is how the router sends a statement naming its
// request (see setAppNameSQL).
func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if t.node.router.cfg.SlowQuery < 0 {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, traceStart{at: time.Now()})
}

// TraceBatchQuery logs a statement of the batch, but the one naming the request, if the
// batch was slow up to its end.
func (t *tracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if st, ok := ctx.Value(traceKey{}).(traceStart); ok && data.SQL != setAppNameSQL {
		t.logSlow(st.at, data.SQL, data.CommandTag, data.Err)
	}
}

// TraceBatchEnd is required by pgx.BatchTracer.
func (t *tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// logSlow logs a statement started at start if it was slow: normalized SQL, duration and
// SQLSTATE, never the arguments nor the error message (which can quote values).
func (t *tracer) logSlow(start time.Time, sql string, tag pgconn.CommandTag, err error) {
	r := t.node.router
	d := time.Since(start)
	if d < r.cfg.SlowQuery {
		return
	}
	r.metrics.slow.WithLabelValues(t.node.name).Inc()
	if c := r.cfg.Logger.Check(zap.WarnLevel, "slow query"); c != nil {
		fields := []zap.Field{
			zap.String("node", t.node.name),
			zap.Duration("duration", d),
			zap.String("sql", normalizeSQL(sql)),
			zap.Int64("rows", tag.RowsAffected()),
		}
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe):
			fields = append(fields, zap.String("sqlstate", pe.Code))
		case err != nil:
			fields = append(fields, zap.Bool("failed", true))
		}
		c.Write(fields...)
	}
}

// TraceConnectStart is required by pgx.ConnectTracer.
func (t *tracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

// TraceConnectEnd calls OnAuthFailure when the server refused the password.
func (t *tracer) TraceConnectEnd(_ context.Context, data pgx.TraceConnectEndData) {
	if !isAuthFailure(data.Err) {
		return
	}
	r := t.node.router
	r.cfg.Logger.Warn("database refused the password", zap.String("node", t.node.name))
	if r.cfg.OnAuthFailure != nil {
		r.cfg.OnAuthFailure()
	}
}

const maxLoggedSQL = 2000

// normalizeSQL replaces literals (strings, numbers, dollar-quoted bodies) with ?, drops
// comments and collapses whitespace, so that a slow-query log line never holds a value even
// when one was written into the SQL instead of passed as a parameter.
func normalizeSQL(sql string) string {
	var b strings.Builder
	space := false
	emit := func(s string) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(s)
	}
	isIdent := func(c byte) bool {
		return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	for i := 0; i < len(sql) && b.Len() < maxLoggedSQL; {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			space = true
			i++
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			if j := strings.IndexByte(sql[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(sql)
			}
			space = true
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			if j := strings.Index(sql[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(sql)
			}
			space = true
		case c == '\'':
			// A string: '' inside is a quote; so is \' in an E'...' string (the E prefix was
			// emitted as an identifier).
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isIdent(sql[i-2]))
			i++
			for i < len(sql) {
				if escapes && sql[i] == '\\' && i+1 < len(sql) {
					i += 2
					continue
				}
				if sql[i] == '\'' {
					if i+1 < len(sql) && sql[i+1] == '\'' {
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
			emit("?")
		case c == '$' && (i == 0 || !isIdent(sql[i-1])) && i+1 < len(sql) && (sql[i+1] == '$' || isIdent(sql[i+1]) && (sql[i+1] < '0' || sql[i+1] > '9')):
			// Dollar quoting: $$...$$ or $tag$...$tag$.
			end := strings.IndexByte(sql[i+1:], '$')
			if end < 0 {
				emit(sql[i:])
				i = len(sql)
				break
			}
			tag := sql[i : i+end+2]
			if j := strings.Index(sql[i+len(tag):], tag); j >= 0 {
				i += len(tag) + j + len(tag)
			} else {
				i = len(sql)
			}
			emit("?")
		case c >= '0' && c <= '9' && (i == 0 || !isIdent(sql[i-1])):
			j := i
			for j < len(sql) && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.' || sql[j] == 'e' || sql[j] == 'E' || sql[j] == '_') {
				j++
			}
			i = j
			emit("?")
		case isIdent(c):
			j := i
			for j < len(sql) && isIdent(sql[j]) {
				j++
			}
			emit(sql[i:j])
			i = j
		default:
			emit(string(c))
			i++
		}
	}
	out := b.String()
	if len(out) > maxLoggedSQL {
		out = out[:maxLoggedSQL] + "…"
	}
	return out
}

var (
	_ pgx.QueryTracer   = (*tracer)(nil)
	_ pgx.BatchTracer   = (*tracer)(nil)
	_ pgx.ConnectTracer = (*tracer)(nil)
)
