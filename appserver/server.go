package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/cache"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/errtrack"
	"github.com/muejam/edge/appserver/health"
	"github.com/muejam/edge/appserver/httpmetrics"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/logscrub"
	"github.com/muejam/edge/appserver/migrate"
	"github.com/muejam/edge/appserver/options"
	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/appserver/routes"
	"github.com/muejam/edge/appserver/secrets"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/appserver/trending"
	"github.com/muejam/edge/internal/blockers"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/pii"
	"github.com/muejam/edge/internal/rywtoken"
	"github.com/muejam/edge/internal/valkeyconn"
)

// piiRedactions counts the values the log scrubber replaces, by kind; never a value.
var piiRedactions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "muejam_app_pii_redactions_total",
	Help: "Values replaced in the app server's log lines by the PII scrubber, by kind of personal data.",
}, []string{"kind"})

// logScrubber scrubs every log line of the app server (the defaults of internal/pii, the
// same detectors as the edge's access logs), counting in piiRedactions.
var logScrubber = func() *pii.Scrubber {
	s, err := pii.New(pii.Config{OnRedact: func(k pii.Kind) { piiRedactions.WithLabelValues(k.String()).Inc() }})
	if err != nil {
		panic(err) // the zero Config always builds
	}
	return s
}()

// newLogger returns the JSON logger of the app server, writing to w; no personal data
// reaches w (see logscrub).
func newLogger(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := logscrub.Wrap(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), level), logScrubber)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w))))
}

// listen opens a TCP listener; failing to is a configuration error (a port in use, an
// address not on this machine).
func listen(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usagef("cannot listen on %s %s: %v", name, addr, errors.Unwrap(err))
	}
	return ln, nil
}

// openRouter opens the database router: the primary first, then the replicas, named as in
// the health report ("primary", "replica-1", ...).
func openRouter(ctx context.Context, cfg config, log *zap.Logger, reg prometheus.Registerer) (*dbrouter.Router, error) {
	nodes := []dbrouter.Node{{Name: "primary", Config: cfg.primary}}
	for i, pc := range cfg.replicas {
		nodes = append(nodes, dbrouter.Node{Name: fmt.Sprintf("replica-%d", i+1), Config: pc})
	}
	password, refresh := passwordHooks(cfg)
	keys, err := tokenKeys(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return dbrouter.New(ctx, dbrouter.Config{
		Nodes:                 nodes,
		MaxConns:              int32(cfg.DBPoolMaxConns),
		ConnectTimeout:        cfg.DBConnectTimeout,
		StatementTimeout:      cfg.DBStatementTimeout,
		PoolHealthCheckPeriod: cfg.DBPoolHealthCheck,
		MaxConnLifetime:       cfg.DBMaxConnLifetime,
		CheckInterval:         cfg.DBCheckInterval,
		CheckTimeout:          min(cfg.HealthTimeout, cfg.DBCheckInterval),
		MaxLag:                cfg.DBMaxLag,
		SlowQuery:             cfg.DBSlowQuery,
		TokenTTL:              cfg.ReadYourWritesTTL,
		TokenKeys:             keys,
		Password:              password,
		OnAuthFailure:         refresh,
		Logger:                log.Named("db"),
		Registerer:            reg,
	})
}

// passwordHooks resolves DATABASE_PASSWORD, when set, through the secrets package: the
// password for each new connection, and the refresh to call when the database refuses it
// (a rotated secret). Both are nil without DATABASE_PASSWORD: the URLs' passwords apply.
func passwordHooks(cfg config) (password func(context.Context) (string, error), refresh func()) {
	if cfg.DatabasePassword == "" {
		return nil, nil
	}
	res := secrets.New(secrets.Options{TTL: cfg.SecretsCacheTTL, Getenv: cfg.getenv})
	return res.Func(cfg.DatabasePassword), func() { res.Invalidate(cfg.DatabasePassword) }
}

// tokenKeys resolves READ_YOUR_WRITES_KEY and READ_YOUR_WRITES_KEY_PREVIOUS, secret
// references, to the keys of the read-your-writes tokens (read once: a new key takes a
// restart, with the old one as the previous key until its tokens have expired). Without
// READ_YOUR_WRITES_KEY, the public development key, with a warning.
func tokenKeys(ctx context.Context, cfg config, log *zap.Logger) (*rywtoken.Keys, error) {
	if cfg.ReadYourWritesKey == "" {
		log.Warn("READ_YOUR_WRITES_KEY is not set: read-your-writes tokens are signed with the public development key, so anyone can forge them; set it outside development")
		return rywtoken.NewKeys(rywtoken.DevKey)
	}
	key, err := resolveSecret(ctx, cfg, "READ_YOUR_WRITES_KEY", cfg.ReadYourWritesKey)
	if err != nil {
		return nil, err
	}
	previous, err := resolveSecret(ctx, cfg, "READ_YOUR_WRITES_KEY_PREVIOUS", cfg.ReadYourWritesKeyPrevious)
	if err != nil {
		return nil, err
	}
	kk, err := rywtoken.NewKeys(key, previous)
	if err != nil {
		return nil, usagef("READ_YOUR_WRITES_KEY/READ_YOUR_WRITES_KEY_PREVIOUS: %v", err)
	}
	return kk, nil
}

// resolveSecret resolves ref, the secret reference of the setting name, through the secrets
// package (once: a new value takes a restart); "" when ref is.
func resolveSecret(ctx context.Context, cfg config, name, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	res := secrets.New(secrets.Options{TTL: cfg.SecretsCacheTTL, Getenv: cfg.getenv})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := res.Get(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", name, err)
	}
	return v, nil
}

// valkeyConfig is the Valkey server or cluster of cfg with its password, when
// VALKEY_PASSWORD names one, resolved through the secrets package.
func valkeyConfig(ctx context.Context, cfg config) (valkeyconn.Config, error) {
	vc := cfg.valkey
	var err error
	vc.Password, err = resolveSecret(ctx, cfg, "VALKEY_PASSWORD", cfg.ValkeyPassword)
	return vc, err
}

// primaryPool opens a pool of its own on the configured primary, for the subcommands.
func primaryPool(ctx context.Context, cfg config) (*pgxpool.Pool, error) {
	pc := cfg.primary.Copy()
	if password, _ := passwordHooks(cfg); password != nil {
		pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) (err error) {
			cc.Password, err = password(ctx)
			return err
		}
	}
	return pgxpool.NewWithConfig(ctx, pc)
}

// migrateUp applies the migrations to the configured primary through a pool of its own.
func migrateUp(ctx context.Context, cfg config) ([]int64, error) {
	pool, err := primaryPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	applied, err := migrate.Up(ctx, pool)
	if err != nil {
		return applied, err
	}
	lsn, err := migrate.Position(ctx, pool)
	if err != nil {
		return applied, err
	}
	return applied, waitReplicas(ctx, cfg, lsn)
}

// replayTimeout bounds how long the app server waits, after migrating, for the replicas to
// have the schema.
const replayTimeout = 30 * time.Second

// waitReplicas waits until every replica has replayed lsn, so that no read routed to a
// replica meets a schema older than the code. A replica that is down or does not catch up
// within replayTimeout is left to the router, which keeps lagging replicas out of rotation.
func waitReplicas(ctx context.Context, cfg config, lsn string) error {
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	password, _ := passwordHooks(cfg)
	for _, rc := range cfg.replicas {
		cc := rc.ConnConfig.Copy()
		if password != nil {
			p, err := password(ctx)
			if err != nil {
				return err
			}
			cc.Password = p
		}
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			continue // down: the router keeps it out of rotation until it is back
		}
		err = migrate.WaitReplayed(ctx, conn, lsn)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func runMigrate(ctx context.Context, cfg config, stdout io.Writer) error {
	applied, err := migrateUp(ctx, cfg)
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %04d\n", v)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
	}
	return nil
}

func serve(ctx context.Context, cfg config, stdout io.Writer) error {
	log := newLogger(stdout, cfg.LogLevel)
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit

	// In a container the Go heap limit follows the cgroup's memory limit (90% of it), so the
	// collector works harder before the kernel would kill the task. GOMEMLIMIT (or
	// AUTOMEMLIMIT=off) in the environment wins.
	if limit, err := memlimit.Set(memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup)); err != nil {
		log.Warn("GOMEMLIMIT not set from the cgroup", zap.Error(err))
	} else if limit < math.MaxInt64 {
		log.Info("GOMEMLIMIT", zap.Int64("bytes", limit))
	}

	apiLn, err := listen("APP_ADDR", cfg.Addr)
	if err != nil {
		return err
	}
	defer apiLn.Close()
	metricsLn, err := listen("APP_METRICS_ADDR", cfg.MetricsAddr)
	if err != nil {
		return err
	}
	defer metricsLn.Close()

	if cfg.Migrate {
		applied, err := migrateUp(ctx, cfg)
		if err != nil {
			return err
		}
		log.Info("migrations applied", zap.Int64s("versions", applied))
	}

	flushErrors, err := enableSentry(ctx, cfg)
	if err != nil {
		return err
	}
	defer flushErrors()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	reg.MustRegister(piiRedactions, errtrack.Collector())
	db, err := openRouter(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer db.Close()

	// The trending job stops before the database router closes.
	trendingCtx, stopTrending := context.WithCancel(ctx)
	trendingDone := make(chan struct{})
	errtrack.Go(log.Named("errors"), "trending", func() {
		defer close(trendingDone)
		trending.New(db, cfg.TrendingInterval, log.Named("trending")).Run(trendingCtx)
	})
	defer func() { stopTrending(); <-trendingDone }()

	rec, err := auditRecorder(ctx, cfg, log.Named("audit"))
	if err != nil {
		return err
	}
	// Audit partitions: this month's and the next ones now and every few hours, and the
	// expired ones dropped; like the trending job, it stops before the router closes.
	auditCtx, stopAudit := context.WithCancel(ctx)
	auditDone := make(chan struct{})
	errtrack.Go(log.Named("errors"), "audit-maintenance", func() {
		defer close(auditDone)
		audit.RunMaintenance(auditCtx, db.Primary(), cfg.AuditRetention, auditMaintenanceInterval, log.Named("audit"))
	})
	defer func() { stopAudit(); <-auditDone }()

	vcfg, err := valkeyConfig(ctx, cfg)
	if err != nil {
		return err
	}
	vk := health.NewValkey(vcfg, cfg.HealthTimeout)
	defer vk.Close()
	var checks []health.Check
	for _, s := range db.Status() {
		checks = append(checks, health.Check{Name: s.Name, Probe: health.DatabaseNode(db, s.Name)})
	}
	checks = append(checks, health.Check{Name: "valkey", Probe: vk.Probe})

	shared, closeCache, err := openCache(vcfg, cfg, db, log.Named("cache"), reg)
	if err != nil {
		return err
	}
	defer closeCache()

	public := &http.Server{
		Handler:           handler(health.New(cfg.HealthTimeout, checks...), httpmetrics.New(reg), db, shared, rec, cfg, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	internal := &http.Server{
		Handler:           internalRoutes(reg),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("internal")),
	}

	log.Info("app server listening",
		zap.String("addr", apiLn.Addr().String()),
		zap.String("metrics_addr", metricsLn.Addr().String()),
		zap.String("database", options.RedactURL(cfg.DatabaseURL)),
		zap.Int("replicas", len(cfg.replicas)),
		zap.Stringer("valkey", vcfg))
	go func() {
		if err := internal.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
			log.Error("internal listener stopped", zap.Error(err))
		}
	}()
	defer internal.Close()
	err = serveUntilDone(ctx, public, apiLn, cfg.ShutdownTimeout)
	log.Info("app server stopped", zap.Error(err))
	return err
}

// openCache opens the app's cache manager on the Valkey of vcfg (L1 alone while Valkey is
// down, as DESIGN.md's degraded modes say), with the lifetimes of cfg, and returns what the
// handlers of answers computed for everyone use, and the function that closes it.
func openCache(vcfg valkeyconn.Config, cfg config, db *dbrouter.Router, log *zap.Logger, reg prometheus.Registerer) (*sharedlist.Shared, func(), error) {
	conn, err := valkeyconn.New(vcfg, valkeyconn.Options{Name: "app-cache", Logger: log})
	if err != nil {
		return nil, nil, err
	}
	m, err := cache.New(conn, cache.Config{L1Bytes: cfg.CacheL1Bytes, Settle: cfg.CacheSettle}, log, reg)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if err := panics.Register(reg, blockers.WhereSubscriber, blockers.WhereAck, blockers.WhereCheck); err != nil {
		m.Close()
		conn.Close()
		return nil, nil, err
	}
	// The edge answers signed-in readers who block nobody from the copy it keeps for
	// anonymous readers (modules/viewerfilter): a user joins the set of blockers, every
	// edge node acknowledging it, before their first block commits.
	bw := blockers.NewWriter(conn, time.Second, func(ctx context.Context) ([]string, error) {
		return social.ListBlockers(ctx, db.Primary())
	}, log.Named("blockers"))
	shared := &sharedlist.Shared{Cache: m, DB: db, Blockers: bw, TTL: map[api.Resource]time.Duration{
		api.Feed:        cfg.CacheTTLFeeds,
		api.Whispers:    cfg.CacheTTLWhispers,
		api.Suggestions: cfg.CacheTTLSuggestions,
	}}
	return shared, func() { bw.Close(); m.Close(); conn.Close() }, nil
}

// buildInfo is muejam_app_build_info: always 1, labelled with the app server's module version,
// VCS revision and Go version (one series per process), so dashboards can show what runs.
func buildInfo() prometheus.Collector {
	version, revision := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "muejam_app_build_info",
		Help:        "Always 1; the labels say which build of the app server is running.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// serveUntilDone serves on ln until ctx is done, then stops accepting and waits up to
// timeout for in-flight requests to finish.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: in-flight requests still running after %s: %w", timeout, err)
	}
	return nil
}

// handler is the API: the routes routes.Register adds, behind the middleware. Handlers find the
// request's read-your-writes token, when valid, in its context (Router.Middleware) and its user, when
// the edge at a trusted address named one, with identity.User. A response's Cache-Purge
// invalidates the app's cache (InvalidateOnPurge) before the response goes out. Every
// request has a request id (reqid) and a line in the access log ("access"); the events it
// audits are logged once it succeeded (rec); a panic is answered 500 and logged ("errors").
// The trusted networks and fault injection come from cfg.
func handler(hc *health.Checker, m *httpmetrics.Metrics, db *dbrouter.Router, shared *sharedlist.Shared, rec *audit.Recorder, cfg config, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	apiLog := log.Named("api")
	routes.Register(mux, hc, db, shared, apiLog)
	if cfg.FaultInjection {
		mux.Handle("GET /v1/_fault/panic", errtrack.Fault())
	}
	trusted := cfg.TrustedEdgeCIDRs
	purge := api.InvalidateOnPurge(shared.Cache.Invalidate, apiLog)
	var h http.Handler = db.Middleware(identity.Middleware(trusted)(purge(reqid.Observe(jsonErrors(mux)))))
	h = m.Wrap(errtrack.Recover(log.Named("errors"))(h))
	return reqid.Middleware(trusted, reqid.AccessLog(log.Named("access")))(rec.Middleware(h))
}

// jsonErrors answers requests that match no route with the API's JSON error body: 404, or
// 405 with the Allow header when the path exists under other methods.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerOnly{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch probe.status {
		case http.StatusMethodNotAllowed:
			api.Reject(w, api.Errorf("method_not_allowed", "method %s is not allowed here", r.Method))
		case http.StatusNotFound:
			api.Reject(w, api.ErrNotFound)
		default: // a redirect to the cleaned path
			mux.ServeHTTP(w, r)
		}
	})
}

// headerOnly records the status and headers the mux would send for an unmatched request.
type headerOnly struct {
	header http.Header
	status int
}

func (h *headerOnly) Header() http.Header         { return h.header }
func (h *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerOnly) WriteHeader(code int)        { h.status = code }

// internalRoutes serves metrics and pprof; it is bound to an internal address, never routed
// through the edge.
func internalRoutes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
