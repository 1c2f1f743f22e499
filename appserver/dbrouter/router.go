// Package dbrouter gives the app server's handlers a PostgreSQL handle that sends writes and
// transactions to the primary and reads to a healthy replica.
//
// One pgxpool pool is kept per node. A monitor checks every node each CheckInterval for
// reachability, role (pg_is_in_recovery) and replication lag, so a dead or lagging replica
// leaves the read rotation within one interval and a promoted replica becomes the write target
// without a restart. Reads go to the healthiest replica whose lag is under MaxLag, else to the
// primary; a read failing with a connection error is retried once on another node. Writes
// fail fast with ErrPrimaryUnavailable when no primary is reachable. A committed transaction
// yields a Token (its commit LSN): reads whose context carries it only use nodes that have
// replayed it.
package dbrouter

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/rywtoken"
)

// Node is one PostgreSQL server of the cluster.
type Node struct {
	// Name labels the node in metrics, logs and health reports ("primary", "replica-1").
	// It is the configured name: after a failover a node named "replica-1" may be the primary.
	Name string
	// Config is the node's parsed pool configuration (pgxpool.ParseConfig). The router copies
	// it and applies the pool settings of Config.
	Config *pgxpool.Config
}

// Config configures a Router. The zero value of every field but Nodes means its default.
type Config struct {
	// Nodes are the servers: the configured primary first, then the replicas. Roles are
	// discovered, so the order only matters until the first check.
	Nodes []Node
	// MaxConns is the size of each node's pool. Default: 10.
	MaxConns int32
	// MinConns is the number of connections each pool keeps open. Default: 0.
	MinConns int32
	// ConnectTimeout bounds opening one connection. Default: 5s.
	ConnectTimeout time.Duration
	// StatementTimeout is the server's statement_timeout and the deadline given to every
	// query whose context has none. Default: 10s.
	StatementTimeout time.Duration
	// MaxConnLifetime is how long a connection is used before it is replaced, which also
	// bounds how long a rotated password goes unnoticed. Default: 30m.
	MaxConnLifetime time.Duration
	// PoolHealthCheckPeriod is how often each pool checks its idle connections. Default: 30s.
	PoolHealthCheckPeriod time.Duration
	// CheckInterval is how often the monitor checks every node. Default: 1s.
	CheckInterval time.Duration
	// CheckTimeout bounds one node check. A check that fails without a connection error
	// (a timeout, say) takes the node out only if the next check fails too; a refused or
	// broken connection takes it out at once. Default: 1s.
	CheckTimeout time.Duration
	// MaxLag is the replication lag above which a replica serves no reads. Default: 10s.
	MaxLag time.Duration
	// SlowQuery is the duration above which a query is logged (normalized SQL, never the
	// parameter values). Default: 200ms. Negative disables the log.
	SlowQuery time.Duration
	// TokenTTL is how long a read-your-writes token is honoured. Default: 30s.
	TokenTTL time.Duration
	// TokenKeys sign the read-your-writes tokens the router hands out (EncodeToken) and verify
	// those requests carry (Middleware): the app server's READ_YOUR_WRITES_KEY, which the
	// edge verifies too. Default: a random key of this router's own, whose tokens no one else
	// accepts (a test, a single process).
	TokenKeys *rywtoken.Keys
	// TxMaxAttempts bounds the attempts of WithTx on serialization failures and deadlocks.
	// Default: 5.
	TxMaxAttempts int
	// TxBackoff is the first wait between WithTx attempts; it doubles each time (with
	// jitter), capped at 1s. Default: 10ms.
	TxBackoff time.Duration
	// Password, if set, is called before each new connection and its result replaces the
	// password of the node's URL. It is where a secrets resolver plugs in.
	Password func(ctx context.Context) (string, error)
	// OnAuthFailure, if set, is called when a new connection is refused because of its
	// password (SQLSTATE 28P01), so the password source can refresh before the router
	// retries that connection once.
	OnAuthFailure func()
	// Logger receives failovers, node state changes and slow queries. Default: no logs.
	Logger *zap.Logger
	// Registerer, if set, receives the muejam_db_* metrics.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxConns == 0 {
		c.MaxConns = 10
	}
	def(&c.ConnectTimeout, 5*time.Second)
	def(&c.StatementTimeout, 10*time.Second)
	def(&c.MaxConnLifetime, 30*time.Minute)
	def(&c.PoolHealthCheckPeriod, 30*time.Second)
	def(&c.CheckInterval, time.Second)
	def(&c.CheckTimeout, time.Second)
	def(&c.MaxLag, 10*time.Second)
	def(&c.SlowQuery, 200*time.Millisecond)
	def(&c.TokenTTL, 30*time.Second)
	def(&c.TxBackoff, 10*time.Millisecond)
	if c.TxMaxAttempts == 0 {
		c.TxMaxAttempts = 5
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.TokenKeys == nil {
		c.TokenKeys = randomKeys()
	}
}

// randomKeys returns Keys with a fresh random key.
func randomKeys() *rywtoken.Keys {
	k, err := rywtoken.NewKeys(crand.Text() + crand.Text())
	if err != nil {
		panic(err) // two rand.Text are 52 bytes, over MinKeyLen
	}
	return k
}

// Querier is what Reader and Primary return: the query methods of a pgx connection.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Router routes queries between the nodes. It is safe for concurrent use.
type Router struct {
	cfg       Config
	nodes     []*node
	metrics   *metrics
	primary   atomic.Pointer[node] // the current write target; nil when none is up
	recheck   chan struct{}
	checkMu   sync.Mutex // serializes checks and guards the fields below
	hist      lsnHistory
	checked   bool      // a check has run: later primary changes are failovers
	lastCheck time.Time // when the last check started

	stop context.CancelFunc
	done chan struct{}
}

// New opens one lazily connecting pool per node, checks every node once (bounded by
// CheckTimeout, so New does not fail when a node is down) and starts the monitor. Close
// releases everything.
func New(ctx context.Context, cfg Config) (*Router, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("dbrouter: no nodes")
	}
	cfg.setDefaults()
	r := &Router{cfg: cfg, recheck: make(chan struct{}, 1), done: make(chan struct{})}
	r.metrics = newMetrics(r)
	for _, nc := range cfg.Nodes {
		n, err := r.newNode(ctx, nc)
		if err != nil {
			r.closePools()
			return nil, err
		}
		r.nodes = append(r.nodes, n)
	}
	// Until the first check says otherwise, believe the configuration.
	for i, n := range r.nodes {
		n.setRole(i == 0)
	}
	r.primary.Store(r.nodes[0])
	if err := r.metrics.register(cfg.Registerer); err != nil {
		r.closePools()
		return nil, fmt.Errorf("dbrouter: registering metrics: %w", err)
	}
	r.checkAll(ctx)
	mctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = stop
	go r.monitor(mctx)
	return r, nil
}

func (r *Router) newNode(ctx context.Context, nc Node) (*node, error) {
	if nc.Config == nil || nc.Name == "" {
		return nil, errors.New("dbrouter: a node needs a name and a config")
	}
	pc := nc.Config.Copy()
	pc.MaxConns = r.cfg.MaxConns
	pc.MinConns = r.cfg.MinConns
	pc.MaxConnLifetime = r.cfg.MaxConnLifetime
	pc.HealthCheckPeriod = r.cfg.PoolHealthCheckPeriod
	pc.ConnConfig.ConnectTimeout = r.cfg.ConnectTimeout
	if pc.ConnConfig.RuntimeParams == nil {
		pc.ConnConfig.RuntimeParams = map[string]string{}
	}
	pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(r.cfg.StatementTimeout.Milliseconds())
	n := &node{name: nc.Name, router: r}
	pc.ConnConfig.Tracer = &tracer{node: n}
	if pw := r.cfg.Password; pw != nil {
		before := pc.BeforeConnect
		pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			if before != nil {
				if err := before(ctx, cc); err != nil {
					return err
				}
			}
			p, err := pw(ctx)
			if err != nil {
				return fmt.Errorf("dbrouter: password for node %s: %w", n.name, err)
			}
			cc.Password = p
			return nil
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("dbrouter: node %s: %w", nc.Name, err)
	}
	n.pool = pool
	n.reads, n.writes = r.metrics.initNode(n.name)
	return n, nil
}

// Close stops the monitor and closes every pool.
func (r *Router) Close() {
	r.stop()
	<-r.done
	r.closePools()
}

func (r *Router) closePools() {
	for _, n := range r.nodes {
		n.pool.Close()
	}
}

// Reader returns a Querier for reads, bound to the best node for them at the time of the
// call: a replica under MaxLag that has replayed the read-your-writes Token carried by ctx,
// if any, else the primary. A query failing with a connection error is retried once on
// another node, so use Reader only for statements that are safe to repeat.
func (r *Router) Reader(ctx context.Context) Querier {
	tok, _ := TokenFrom(ctx)
	return &reader{r: r, tok: tok, n: r.pickReader(tok, nil)}
}

// Primary returns a Querier for writes. Each call goes to the node that is the primary at
// that moment and fails with ErrPrimaryUnavailable when none is reachable. Statements are
// not retried. Use WithTx to get a read-your-writes Token.
func (r *Router) Primary() Querier { return writer{r} }

// WithTx runs fn in a transaction on the primary and commits it. On a serialization failure
// (40001) or a deadlock (40P01) the whole transaction, fn included, is retried with a growing
// backoff, up to TxMaxAttempts attempts. It returns the Token of the commit for
// read-your-writes (one more round trip reads the WAL position after COMMIT).
//
// When ctx has no deadline, StatementTimeout bounds BEGIN and COMMIT; the statements of fn
// run under the context fn passes them, and the server's statement_timeout. Connection
// errors, and a primary found in recovery, are returned as ErrPrimaryUnavailable.
func (r *Router) WithTx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) (Token, error) {
	backoff := r.cfg.TxBackoff
	for attempt := 1; ; attempt++ {
		tok, err := r.tx(ctx, opts, fn)
		if err == nil || attempt >= r.cfg.TxMaxAttempts || !isRetryableTx(err) {
			return tok, err
		}
		r.metrics.retries.WithLabelValues("tx").Inc()
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, time.Second)
		select {
		case <-ctx.Done():
			return Token{}, err
		case <-time.After(wait):
		}
	}
}

func (r *Router) tx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) (Token, error) {
	n, err := r.writeNode()
	if err != nil {
		return Token{}, err
	}
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	n.writes.Inc()
	conn, err := r.acquire(ctx, n)
	if err != nil {
		return Token{}, r.writeError(n, err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, taggedTx(ctx, opts))
	if err != nil {
		return Token{}, r.writeError(n, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return Token{}, r.writeError(n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Token{}, r.writeError(n, err)
	}
	var lsn int64
	if err := scanTagged(ctx, conn, "select (pg_current_wal_insert_lsn() - '0/0')::int8", nil, &lsn); err != nil {
		// Committed, but without a token; reads simply are not pinned.
		r.cfg.Logger.Warn("reading the commit LSN", zap.String("node", n.name), zap.Error(err))
		return Token{}, nil
	}
	return Token{lsn: uint64(lsn), issued: time.Now()}, nil
}

// acquire takes a connection of n, retrying once after a password refusal so that a
// refreshed password (OnAuthFailure) is used at once.
func (r *Router) acquire(ctx context.Context, n *node) (*pgxpool.Conn, error) {
	c, err := n.pool.Acquire(ctx)
	if err != nil && isAuthFailure(err) {
		c, err = n.pool.Acquire(ctx)
	}
	return c, err
}

// writeNode is the current primary, or ErrPrimaryUnavailable.
func (r *Router) writeNode() (*node, error) {
	n := r.primary.Load()
	if n == nil || !n.up.Load() {
		return nil, &PrimaryUnavailableError{RetryAfter: r.retryAfter()}
	}
	return n, nil
}

// writeError turns a connection error on the primary into ErrPrimaryUnavailable and takes
// the node out of service until the next check.
func (r *Router) writeError(n *node, err error) error {
	if isReadOnly(err) {
		// The node was demoted: find the new primary now.
		r.requestCheck()
		return &PrimaryUnavailableError{RetryAfter: r.retryAfter(), Err: err}
	}
	if isConnError(err) {
		r.markDown(n, err)
		return &PrimaryUnavailableError{RetryAfter: r.retryAfter(), Err: err}
	}
	return err
}

func (r *Router) retryAfter() time.Duration {
	return max(time.Second, r.cfg.CheckInterval)
}

// withDeadline gives ctx the StatementTimeout deadline unless it has one.
func (r *Router) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.cfg.StatementTimeout)
}

// pickReader chooses the node for a read: the replica with the least lag among those up,
// under MaxLag and past tok; else the primary; else, with the primary down, the least
// lagging replica that is up whatever its lag. not is a node to avoid (nil for none).
// It never returns nil.
func (r *Router) pickReader(tok Token, not *node) *node {
	maxLag := r.cfg.MaxLag.Seconds()
	tok = r.validToken(tok)
	var best, anyUp *node
	for _, n := range r.nodes {
		if n == not || !n.up.Load() {
			continue
		}
		s := n.status.Load()
		if s.Primary {
			continue
		}
		if anyUp == nil || s.LagBytes < anyUp.status.Load().LagBytes {
			anyUp = n
		}
		if s.LagSeconds > maxLag || s.LSN < tok.lsn {
			continue
		}
		if best == nil || s.LagBytes < best.status.Load().LagBytes ||
			(s.LagBytes == best.status.Load().LagBytes && n.pool.Stat().AcquiredConns() < best.pool.Stat().AcquiredConns()) {
			best = n
		}
	}
	if best != nil {
		return best
	}
	if p := r.primary.Load(); p != nil && p != not && p.up.Load() {
		return p
	}
	if anyUp != nil {
		return anyUp
	}
	// Nothing is known to be up: try the last primary, or any other node.
	if p := r.primary.Load(); p != nil && p != not {
		return p
	}
	for _, n := range r.nodes {
		if n != not {
			return n
		}
	}
	return r.nodes[0]
}

// markDown takes n out of rotation after a connection error and asks for a check now.
func (r *Router) markDown(n *node, err error) {
	if n.up.CompareAndSwap(true, false) {
		r.cfg.Logger.Warn("database node down", zap.String("node", n.name), zap.Error(err))
		r.metrics.up.WithLabelValues(n.name).Set(0)
	}
	r.requestCheck()
}

// requestCheck asks the monitor for a check now.
func (r *Router) requestCheck() {
	select {
	case r.recheck <- struct{}{}:
	default:
	}
}

// node is one server, its pool and its last known state.
type node struct {
	name   string
	router *Router
	pool   *pgxpool.Pool
	reads  prometheus.Counter // muejam_db_queries_total{kind="read"} of this node
	writes prometheus.Counter // muejam_db_queries_total{kind="write"} of this node
	up     atomic.Bool
	status atomic.Pointer[NodeStatus]
	missed bool // the last check failed without a connection error; guarded by checkMu
}

func (n *node) setRole(primary bool) {
	s := NodeStatus{Name: n.name, Up: true, Primary: primary}
	n.status.Store(&s)
	n.up.Store(true)
}

// reader is the Querier of Reader.
type reader struct {
	r   *Router
	tok Token
	n   *node
}

// retryNode is the node for the second attempt of a read that failed on n with err, or nil
// when the read must not be retried.
//
// A refused password is retried on another node if there is one (a replica may not have
// replayed a password change yet), else on the same node, whose next connection uses the
// password refreshed by OnAuthFailure. A connection error takes the node out of rotation
// until the next check and is retried on another node.
func (q *reader) retryNode(n *node, err error) *node {
	if isAuthFailure(err) {
		q.r.metrics.retries.WithLabelValues("auth").Inc()
		return q.r.pickReader(q.tok, n)
	}
	if !isConnError(err) {
		return nil
	}
	q.r.markDown(n, err)
	other := q.r.pickReader(q.tok, n)
	if other == n {
		return nil
	}
	q.r.metrics.retries.WithLabelValues("read").Inc()
	return other
}

func (q *reader) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	ctx, cancel := q.r.withDeadline(ctx)
	defer cancel()
	q.n.reads.Inc()
	tag, err := execTagged(ctx, q.n.pool, sql, args...)
	if err != nil && ctx.Err() == nil {
		if n := q.retryNode(q.n, err); n != nil {
			n.reads.Inc()
			return execTagged(ctx, n.pool, sql, args...)
		}
	}
	return tag, err
}

func (q *reader) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	ctx, cancel := q.r.withDeadline(ctx)
	rows := &readerRows{q: q, n: q.n, ctx: ctx, cancel: cancel, sql: sql, args: args}
	q.n.reads.Inc()
	var err error
	rows.Rows, err = queryTagged(ctx, q.n.pool, sql, args...)
	if err != nil && ctx.Err() == nil {
		if n := q.retryNode(q.n, err); n != nil {
			rows.n, rows.retried = n, true
			n.reads.Inc()
			rows.Rows, err = queryTagged(ctx, n.pool, sql, args...)
		}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return rows, nil
}

func (q *reader) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &retryRow{q: q, ctx: ctx, sql: sql, args: args}
}

// retryRow runs its query when scanned, so that a connection error can be retried.
type retryRow struct {
	q    *reader
	ctx  context.Context
	sql  string
	args []any
}

func (row *retryRow) Scan(dest ...any) error {
	ctx, cancel := row.q.r.withDeadline(row.ctx)
	defer cancel()
	n := row.q.n
	n.reads.Inc()
	err := scanTagged(ctx, n.pool, row.sql, row.args, dest...)
	if err != nil && ctx.Err() == nil {
		if n := row.q.retryNode(n, err); n != nil {
			n.reads.Inc()
			err = scanTagged(ctx, n.pool, row.sql, row.args, dest...)
		}
	}
	return err
}

// readerRows retries its query once on another node when the first row fails with a
// connection error (pgx reports most errors of a cached statement there, not from Query),
// and releases the query's deadline when done.
type readerRows struct {
	pgx.Rows
	q       *reader
	n       *node
	ctx     context.Context
	cancel  context.CancelFunc
	sql     string
	args    []any
	seen    bool // a row was returned: too late to retry
	retried bool
}

func (rr *readerRows) Next() bool {
	if rr.Rows.Next() {
		rr.seen = true
		return true
	}
	if err := rr.Rows.Err(); err != nil && !rr.seen && !rr.retried && rr.ctx.Err() == nil {
		if n := rr.q.retryNode(rr.n, err); n != nil {
			rr.n, rr.retried = n, true
			n.reads.Inc()
			if rows, err := queryTagged(rr.ctx, n.pool, rr.sql, rr.args...); err == nil {
				rr.Rows.Close()
				rr.Rows = rows
				return rr.Next()
			}
		}
	}
	rr.cancel()
	return false
}

func (rr *readerRows) Close() {
	rr.Rows.Close()
	rr.cancel()
}

// cancelRows releases the deadline of a query when its rows are done.
type cancelRows struct {
	pgx.Rows
	cancel context.CancelFunc
}

func (c *cancelRows) Next() bool {
	if c.Rows.Next() {
		return true
	}
	c.cancel()
	return false
}

func (c *cancelRows) Close() {
	c.Rows.Close()
	c.cancel()
}

// writer is the Querier of Primary.
type writer struct{ r *Router }

func (w writer) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	n, err := w.r.writeNode()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ctx, cancel := w.r.withDeadline(ctx)
	defer cancel()
	n.writes.Inc()
	tag, err := execTagged(ctx, n.pool, sql, args...)
	if err != nil && isAuthFailure(err) {
		tag, err = execTagged(ctx, n.pool, sql, args...)
	}
	return tag, w.r.writeError(n, err)
}

func (w writer) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	n, err := w.r.writeNode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := w.r.withDeadline(ctx)
	n.writes.Inc()
	rows, err := queryTagged(ctx, n.pool, sql, args...)
	if err != nil && isAuthFailure(err) {
		rows, err = queryTagged(ctx, n.pool, sql, args...)
	}
	if err != nil {
		cancel()
		return nil, w.r.writeError(n, err)
	}
	return &cancelRows{Rows: rows, cancel: cancel}, nil
}

func (w writer) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return writerRow{w: w, ctx: ctx, sql: sql, args: args}
}

// writerRow runs its query on the primary when scanned.
type writerRow struct {
	w    writer
	ctx  context.Context
	sql  string
	args []any
}

func (row writerRow) Scan(dest ...any) error {
	r := row.w.r
	n, err := r.writeNode()
	if err != nil {
		return err
	}
	ctx, cancel := r.withDeadline(row.ctx)
	defer cancel()
	n.writes.Inc()
	err = scanTagged(ctx, n.pool, row.sql, row.args, dest...)
	if err != nil && isAuthFailure(err) {
		err = scanTagged(ctx, n.pool, row.sql, row.args, dest...)
	}
	return r.writeError(n, err)
}
