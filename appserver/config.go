package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/secrets"
	"github.com/muejam/edge/internal/valkeyconn"
)

// config is everything the app server reads from its environment and flags. Flags win over
// environment variables; defaults live in defaultConfig and nowhere else.
type config struct {
	Addr            string        // APP_ADDR, -addr
	MetricsAddr     string        // APP_METRICS_ADDR, -metrics-addr
	DatabaseURL     string        // DATABASE_URL, -database-url
	ReplicaURLs     []string      // DATABASE_REPLICA_URLS (comma-separated), -replica-urls
	ValkeyAddr      string        // VALKEY_ADDR, -valkey-addr: host:port, or a cluster's seeds, comma-separated
	ValkeyCluster   bool          // VALKEY_CLUSTER, -valkey-cluster: require a cluster
	ValkeyUsername  string        // VALKEY_USERNAME, -valkey-username
	ValkeyPassword  string        // VALKEY_PASSWORD, -valkey-password: a secret reference
	ValkeyTLS       string        // VALKEY_TLS, -valkey-tls: off, on (system roots) or a CA file
	Migrate         bool          // MIGRATE_ON_START, -migrate
	LogLevel        zapcore.Level // LOG_LEVEL, -log-level
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, -shutdown-timeout
	HealthTimeout   time.Duration // HEALTH_CHECK_TIMEOUT, -health-timeout

	DBPoolMaxConns     int           // DB_POOL_MAX_CONNS, -db-pool-max-conns: connections per node
	DBConnectTimeout   time.Duration // DB_CONNECT_TIMEOUT, -db-connect-timeout
	DBStatementTimeout time.Duration // DB_STATEMENT_TIMEOUT, -db-statement-timeout
	DBPoolHealthCheck  time.Duration // DB_POOL_HEALTH_CHECK_PERIOD, -db-pool-health-check-period
	DBMaxConnLifetime  time.Duration // DB_MAX_CONN_LIFETIME, -db-max-conn-lifetime
	DBCheckInterval    time.Duration // DB_CHECK_INTERVAL, -db-check-interval: node role and lag checks
	DBMaxLag           time.Duration // DB_MAX_LAG, -db-max-lag: replicas further behind serve no reads
	DBSlowQuery        time.Duration // DB_SLOW_QUERY, -db-slow-query: queries slower than this are logged
	ReadYourWritesTTL  time.Duration // READ_YOUR_WRITES_TTL, -read-your-writes-ttl

	// DatabasePassword, when set, is a secret reference (env:NAME, file:PATH,
	// aws-sm:SECRET_ID[#json_key]) for the database password, for the pools' BeforeConnect.
	// It is a reference, not a password: printing it reveals nothing.
	DatabasePassword string        // DATABASE_PASSWORD, -database-password
	SecretsCacheTTL  time.Duration // SECRETS_CACHE_TTL, -secrets-cache-ttl

	// ReadYourWritesKey, when set, is a secret reference to the key (at least 32 bytes once
	// resolved) that signs and verifies read-your-writes tokens; the edge verifies them with
	// the same key. Unset, the public development key (rywtoken.DevKey) signs them: fine for
	// make run and the tests, never for production. ReadYourWritesKeyPrevious, during a
	// rotation, references the key before it: still accepted, never used to sign.
	ReadYourWritesKey         string // READ_YOUR_WRITES_KEY, -read-your-writes-key
	ReadYourWritesKeyPrevious string // READ_YOUR_WRITES_KEY_PREVIOUS, -read-your-writes-key-previous

	// TrustedEdgeCIDRs are the networks of the edge: only requests from them may name their
	// user in X-Auth-User.
	TrustedEdgeCIDRs []netip.Prefix // TRUSTED_EDGE_CIDRS (comma-separated), -trusted-edge-cidrs

	// AppPseudonymKey, when set, is a secret reference to the key (at least 16 bytes) of the
	// keyed HMAC that pseudonymizes client addresses in audit events, the edge's
	// PII_PSEUDONYM_KEY so both name an address alike. Unset, audit events store no address.
	AppPseudonymKey string // APP_PSEUDONYM_KEY, -pseudonym-key
	// AuditRetention is how long audit events are kept: monthly partitions whose month
	// ended longer ago are dropped. 0 keeps them all.
	AuditRetention time.Duration // AUDIT_RETENTION, -audit-retention
	// SentryDSN, when set, is a secret reference to the DSN of a Sentry-compatible service
	// that error events (panics, 500s) are forwarded to, scrubbed; unset, none leaves.
	SentryDSN string // SENTRY_DSN, -sentry-dsn
	// FaultInjection serves GET /v1/_fault/panic, which panics: for the end-to-end tests
	// of error tracking, never in production.
	FaultInjection bool // APP_FAULT_INJECTION, -fault-injection

	// TrendingInterval is how often the trending scores are recomputed, from 10 to 30 minutes.
	TrendingInterval time.Duration // TRENDING_INTERVAL, -trending-interval

	// How long the app's cache manager keeps answers computed for everyone when no purge
	// drops them sooner, within the seed's ranges, and the memory its L1 may use.
	CacheTTLFeeds       time.Duration // APP_CACHE_TTL_FEEDS, -cache-ttl-feeds: 1m to 5m
	CacheTTLWhispers    time.Duration // APP_CACHE_TTL_WHISPERS, -cache-ttl-whispers: 30s to 2m
	CacheTTLSuggestions time.Duration // APP_CACHE_TTL_SUGGESTIONS, -cache-ttl-suggestions: 10m to 30m
	CacheL1Bytes        int64         // APP_CACHE_L1_BYTES, -cache-l1-bytes
	// CacheSettle is how long after a purge the app's cache stores no value carrying the
	// purged tags: a load meanwhile may read a replica that has not replayed the change.
	CacheSettle time.Duration // APP_CACHE_PURGE_SETTLE, -cache-purge-settle

	primary  *pgxpool.Config
	replicas []*pgxpool.Config
	valkey   valkeyconn.Config   // without the password, which is resolved at start
	getenv   func(string) string // resolves env: secret references
}

func defaultConfig() config {
	return config{
		Addr:            "127.0.0.1:8081",
		MetricsAddr:     "127.0.0.1:9081",
		DatabaseURL:     "postgres://postgres@127.0.0.1:55432/muejam?sslmode=disable",
		ReplicaURLs:     []string{"postgres://postgres@127.0.0.1:55433/muejam?sslmode=disable"},
		ValkeyAddr:      "127.0.0.1:56379",
		LogLevel:        zapcore.InfoLevel,
		ShutdownTimeout: 15 * time.Second,
		HealthTimeout:   2 * time.Second,
		SecretsCacheTTL: secrets.DefaultTTL,

		DBPoolMaxConns:     10,
		DBConnectTimeout:   5 * time.Second,
		DBStatementTimeout: 10 * time.Second,
		DBPoolHealthCheck:  30 * time.Second,
		DBMaxConnLifetime:  30 * time.Minute,
		DBCheckInterval:    time.Second,
		DBMaxLag:           10 * time.Second,
		DBSlowQuery:        200 * time.Millisecond,
		ReadYourWritesTTL:  30 * time.Second,

		TrustedEdgeCIDRs: slices.Clone(identity.DefaultTrusted),
		TrendingInterval: 15 * time.Minute,
		AuditRetention:   400 * 24 * time.Hour,

		CacheTTLFeeds:       time.Minute,
		CacheTTLWhispers:    30 * time.Second,
		CacheTTLSuggestions: 10 * time.Minute,
		CacheL1Bytes:        64 << 20,
		CacheSettle:         2 * time.Second,
	}
}

// usageError is a mistake in the configuration or the command line: main prints it as one
// line and exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// parseConfig reads the environment through getenv, then the flags in args.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	return parseConfigWith(name, args, getenv, stderr, nil)
}

// parseConfigWith is parseConfig for a subcommand with flags of its own, which extra, when
// not nil, adds to the flag set.
func parseConfigWith(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (config, error) {
	cfg := defaultConfig()
	cfg.getenv = getenv
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	env := func(key string, p *string) {
		if v := getenv(key); v != "" {
			*p = v
		}
	}
	env("APP_ADDR", &cfg.Addr)
	env("APP_METRICS_ADDR", &cfg.MetricsAddr)
	env("DATABASE_URL", &cfg.DatabaseURL)
	env("VALKEY_ADDR", &cfg.ValkeyAddr)
	valkeyCluster := strconv.FormatBool(cfg.ValkeyCluster)
	env("VALKEY_CLUSTER", &valkeyCluster)
	env("VALKEY_USERNAME", &cfg.ValkeyUsername)
	env("VALKEY_PASSWORD", &cfg.ValkeyPassword)
	env("VALKEY_TLS", &cfg.ValkeyTLS)
	replicas := strings.Join(cfg.ReplicaURLs, ",")
	env("DATABASE_REPLICA_URLS", &replicas)
	migrate := strconv.FormatBool(cfg.Migrate)
	env("MIGRATE_ON_START", &migrate)
	level := cfg.LogLevel.String()
	env("LOG_LEVEL", &level)
	shutdown := cfg.ShutdownTimeout.String()
	env("SHUTDOWN_TIMEOUT", &shutdown)
	healthTimeout := cfg.HealthTimeout.String()
	env("HEALTH_CHECK_TIMEOUT", &healthTimeout)
	maxConns := strconv.Itoa(cfg.DBPoolMaxConns)
	env("DB_POOL_MAX_CONNS", &maxConns)
	// Durations of the database router: environment variable, flag, destination, value.
	dbDurations := []struct {
		env, flag, usage string
		dst              *time.Duration
		val              string
	}{
		{"DB_CONNECT_TIMEOUT", "db-connect-timeout", "timeout of opening one database connection", &cfg.DBConnectTimeout, ""},
		{"DB_STATEMENT_TIMEOUT", "db-statement-timeout", "statement_timeout, and the deadline of queries that have none", &cfg.DBStatementTimeout, ""},
		{"DB_POOL_HEALTH_CHECK_PERIOD", "db-pool-health-check-period", "how often each pool checks its idle connections", &cfg.DBPoolHealthCheck, ""},
		{"DB_MAX_CONN_LIFETIME", "db-max-conn-lifetime", "age at which a database connection is replaced", &cfg.DBMaxConnLifetime, ""},
		{"DB_CHECK_INTERVAL", "db-check-interval", "how often every database node's role and lag are checked", &cfg.DBCheckInterval, ""},
		{"DB_MAX_LAG", "db-max-lag", "replication lag above which a replica serves no reads", &cfg.DBMaxLag, ""},
		{"DB_SLOW_QUERY", "db-slow-query", "queries slower than this are logged (SQL normalized, no values)", &cfg.DBSlowQuery, ""},
		{"READ_YOUR_WRITES_TTL", "read-your-writes-ttl", "how long a read-your-writes token pins reads", &cfg.ReadYourWritesTTL, ""},
	}
	for i := range dbDurations {
		d := &dbDurations[i]
		d.val = d.dst.String()
		env(d.env, &d.val)
	}
	env("DATABASE_PASSWORD", &cfg.DatabasePassword)
	env("READ_YOUR_WRITES_KEY", &cfg.ReadYourWritesKey)
	env("READ_YOUR_WRITES_KEY_PREVIOUS", &cfg.ReadYourWritesKeyPrevious)
	secretsTTL := cfg.SecretsCacheTTL.String()
	env("SECRETS_CACHE_TTL", &secretsTTL)
	trusted := joinPrefixes(cfg.TrustedEdgeCIDRs)
	env("TRUSTED_EDGE_CIDRS", &trusted)
	trending := cfg.TrendingInterval.String()
	env("TRENDING_INTERVAL", &trending)
	env("APP_PSEUDONYM_KEY", &cfg.AppPseudonymKey)
	auditRetention := cfg.AuditRetention.String()
	env("AUDIT_RETENTION", &auditRetention)
	faults := strconv.FormatBool(cfg.FaultInjection)
	env("APP_FAULT_INJECTION", &faults)
	env("SENTRY_DSN", &cfg.SentryDSN)
	// Lifetimes in the app's cache: environment variable, flag, destination, seed's range.
	cacheTTLs := []struct {
		env, flag, usage string
		dst              *time.Duration
		lo, hi           time.Duration
		val              string
	}{
		{"APP_CACHE_TTL_FEEDS", "cache-ttl-feeds", "how long the app's cache keeps feeds and search results, 1m to 5m", &cfg.CacheTTLFeeds, time.Minute, 5 * time.Minute, ""},
		{"APP_CACHE_TTL_WHISPERS", "cache-ttl-whispers", "how long the app's cache keeps whisper feeds, 30s to 2m", &cfg.CacheTTLWhispers, 30 * time.Second, 2 * time.Minute, ""},
		{"APP_CACHE_TTL_SUGGESTIONS", "cache-ttl-suggestions", "how long the app's cache keeps search suggestions, 10m to 30m", &cfg.CacheTTLSuggestions, 10 * time.Minute, 30 * time.Minute, ""},
	}
	for i := range cacheTTLs {
		c := &cacheTTLs[i]
		c.val = c.dst.String()
		env(c.env, &c.val)
	}
	l1Bytes := strconv.FormatInt(cfg.CacheL1Bytes, 10)
	env("APP_CACHE_L1_BYTES", &l1Bytes)
	settle := cfg.CacheSettle.String()
	env("APP_CACHE_PURGE_SETTLE", &settle)

	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "API listen address (APP_ADDR)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "internal metrics and pprof listen address (APP_METRICS_ADDR)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "primary PostgreSQL URL (DATABASE_URL)")
	fs.StringVar(&replicas, "replica-urls", replicas, "comma-separated replica PostgreSQL URLs (DATABASE_REPLICA_URLS)")
	fs.StringVar(&cfg.ValkeyAddr, "valkey-addr", cfg.ValkeyAddr, "Valkey host:port, or a cluster's seed addresses, comma-separated (VALKEY_ADDR)")
	fs.StringVar(&valkeyCluster, "valkey-cluster", valkeyCluster, "require a Valkey cluster: on or off (VALKEY_CLUSTER)")
	fs.StringVar(&cfg.ValkeyUsername, "valkey-username", cfg.ValkeyUsername, "Valkey ACL user, empty for the default user (VALKEY_USERNAME)")
	fs.StringVar(&cfg.ValkeyPassword, "valkey-password", cfg.ValkeyPassword, "Valkey AUTH password as a secret reference: env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key] (VALKEY_PASSWORD)")
	fs.StringVar(&cfg.ValkeyTLS, "valkey-tls", cfg.ValkeyTLS, "TLS to Valkey: off, on (system roots) or a CA file (VALKEY_TLS)")
	fs.StringVar(&migrate, "migrate", migrate, "apply migrations at start (MIGRATE_ON_START)")
	fs.StringVar(&level, "log-level", level, "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&shutdown, "shutdown-timeout", shutdown, "how long SIGTERM waits for in-flight requests (SHUTDOWN_TIMEOUT)")
	fs.StringVar(&healthTimeout, "health-timeout", healthTimeout, "timeout of each health check (HEALTH_CHECK_TIMEOUT)")
	fs.StringVar(&maxConns, "db-pool-max-conns", maxConns, "connections per database node (DB_POOL_MAX_CONNS)")
	for i := range dbDurations {
		d := &dbDurations[i]
		fs.StringVar(&d.val, d.flag, d.val, d.usage+" ("+d.env+")")
	}
	fs.StringVar(&cfg.DatabasePassword, "database-password", cfg.DatabasePassword, "database password as a secret reference: env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key] (DATABASE_PASSWORD)")
	fs.StringVar(&cfg.ReadYourWritesKey, "read-your-writes-key", cfg.ReadYourWritesKey, "key of the read-your-writes tokens (at least 32 bytes) as a secret reference: env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key]; unset: the public development key (READ_YOUR_WRITES_KEY)")
	fs.StringVar(&cfg.ReadYourWritesKeyPrevious, "read-your-writes-key-previous", cfg.ReadYourWritesKeyPrevious, "during a key rotation, the previous key of the read-your-writes tokens, still accepted, as a secret reference (READ_YOUR_WRITES_KEY_PREVIOUS)")
	fs.StringVar(&secretsTTL, "secrets-cache-ttl", secretsTTL, "how long a resolved secret is cached before it is fetched again (SECRETS_CACHE_TTL)")
	fs.StringVar(&trusted, "trusted-edge-cidrs", trusted, "comma-separated networks of the edge, whose X-Auth-User is trusted (TRUSTED_EDGE_CIDRS)")
	fs.StringVar(&trending, "trending-interval", trending, "how often the trending scores are recomputed, 10m to 30m (TRENDING_INTERVAL)")
	fs.StringVar(&cfg.AppPseudonymKey, "pseudonym-key", cfg.AppPseudonymKey, "key of the HMAC pseudonymizing client addresses in audit events, as a secret reference; unset, none is stored (APP_PSEUDONYM_KEY)")
	fs.StringVar(&auditRetention, "audit-retention", auditRetention, "how long audit events are kept, by whole months; 0 keeps them all (AUDIT_RETENTION)")
	fs.StringVar(&cfg.SentryDSN, "sentry-dsn", cfg.SentryDSN, "DSN of a Sentry-compatible service for error events, as a secret reference; unset, none is sent (SENTRY_DSN)")
	fs.StringVar(&faults, "fault-injection", faults, "serve GET /v1/_fault/panic, which panics, for tests; never in production (APP_FAULT_INJECTION)")
	for i := range cacheTTLs {
		c := &cacheTTLs[i]
		fs.StringVar(&c.val, c.flag, c.val, c.usage+" ("+c.env+")")
	}
	fs.StringVar(&l1Bytes, "cache-l1-bytes", l1Bytes, "bytes the app's in-memory cache may hold, at least 1048576 (APP_CACHE_L1_BYTES)")
	fs.StringVar(&settle, "cache-purge-settle", settle, "how long after a purge the app's cache stores nothing carrying its tags (APP_CACHE_PURGE_SETTLE)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return cfg, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, usagef("unexpected argument %q", fs.Arg(0))
	}

	var err error
	if cfg.Migrate, err = strconv.ParseBool(migrate); err != nil {
		return cfg, usagef("invalid MIGRATE_ON_START/-migrate %q: want true or false", migrate)
	}
	if cfg.LogLevel, err = zapcore.ParseLevel(level); err != nil {
		return cfg, usagef("invalid LOG_LEVEL/-log-level %q: want debug, info, warn or error", level)
	}
	if cfg.ShutdownTimeout, err = parsePositiveDuration("SHUTDOWN_TIMEOUT/-shutdown-timeout", shutdown); err != nil {
		return cfg, err
	}
	if cfg.HealthTimeout, err = parsePositiveDuration("HEALTH_CHECK_TIMEOUT/-health-timeout", healthTimeout); err != nil {
		return cfg, err
	}
	if cfg.DBPoolMaxConns, err = strconv.Atoi(maxConns); err != nil || cfg.DBPoolMaxConns < 1 || cfg.DBPoolMaxConns > 10000 {
		return cfg, usagef("invalid DB_POOL_MAX_CONNS/-db-pool-max-conns %q: want a number from 1 to 10000", maxConns)
	}
	for _, d := range dbDurations {
		if *d.dst, err = parsePositiveDuration(d.env+"/-"+d.flag, d.val); err != nil {
			return cfg, err
		}
	}
	if cfg.SecretsCacheTTL, err = parsePositiveDuration("SECRETS_CACHE_TTL/-secrets-cache-ttl", secretsTTL); err != nil {
		return cfg, err
	}
	if cfg.DatabasePassword != "" {
		// The error repeats nothing of a value without a known scheme: it may be a password.
		if _, err := secrets.ParseRef(cfg.DatabasePassword); err != nil {
			return cfg, usagef("invalid DATABASE_PASSWORD/-database-password: %v", err)
		}
	}
	for _, k := range []struct{ name, ref string }{
		{"READ_YOUR_WRITES_KEY/-read-your-writes-key", cfg.ReadYourWritesKey},
		{"READ_YOUR_WRITES_KEY_PREVIOUS/-read-your-writes-key-previous", cfg.ReadYourWritesKeyPrevious},
	} {
		if k.ref == "" {
			continue
		}
		if _, err := secrets.ParseRef(k.ref); err != nil {
			return cfg, usagef("invalid %s: %v", k.name, err)
		}
	}
	if cfg.ReadYourWritesKeyPrevious != "" && cfg.ReadYourWritesKey == "" {
		return cfg, usagef("READ_YOUR_WRITES_KEY_PREVIOUS is set without READ_YOUR_WRITES_KEY")
	}
	if cfg.TrustedEdgeCIDRs, err = parsePrefixes("TRUSTED_EDGE_CIDRS/-trusted-edge-cidrs", trusted); err != nil {
		return cfg, err
	}
	if cfg.TrendingInterval, err = time.ParseDuration(trending); err != nil || cfg.TrendingInterval < 10*time.Minute || cfg.TrendingInterval > 30*time.Minute {
		return cfg, usagef("invalid TRENDING_INTERVAL/-trending-interval %q: want a duration from 10m to 30m", trending)
	}
	if cfg.AuditRetention, err = time.ParseDuration(auditRetention); err != nil || cfg.AuditRetention < 0 {
		return cfg, usagef("invalid AUDIT_RETENTION/-audit-retention %q: want a duration, 0 to keep everything", auditRetention)
	}
	if cfg.FaultInjection, err = strconv.ParseBool(faults); err != nil {
		return cfg, usagef("invalid APP_FAULT_INJECTION/-fault-injection %q: want true or false", faults)
	}
	for _, k := range []struct{ name, ref string }{
		{"APP_PSEUDONYM_KEY/-pseudonym-key", cfg.AppPseudonymKey},
		{"SENTRY_DSN/-sentry-dsn", cfg.SentryDSN},
	} {
		if k.ref == "" {
			continue
		}
		if _, err := secrets.ParseRef(k.ref); err != nil {
			return cfg, usagef("invalid %s: %v", k.name, err)
		}
	}
	for _, c := range cacheTTLs {
		if *c.dst, err = time.ParseDuration(c.val); err != nil || *c.dst < c.lo || *c.dst > c.hi {
			return cfg, usagef("invalid %s/-%s %q: want a duration from %s to %s", c.env, c.flag, c.val, shortDuration(c.lo), shortDuration(c.hi))
		}
	}
	if cfg.CacheL1Bytes, err = strconv.ParseInt(l1Bytes, 10, 64); err != nil || cfg.CacheL1Bytes < 1<<20 {
		return cfg, usagef("invalid APP_CACHE_L1_BYTES/-cache-l1-bytes %q: want a number of bytes, at least 1048576", l1Bytes)
	}
	if cfg.CacheSettle, err = time.ParseDuration(settle); err != nil || cfg.CacheSettle < 0 {
		return cfg, usagef("invalid APP_CACHE_PURGE_SETTLE/-cache-purge-settle %q: want a duration, 0 or more", settle)
	}
	for _, a := range []struct{ name, addr string }{
		{"APP_ADDR/-addr", cfg.Addr}, {"APP_METRICS_ADDR/-metrics-addr", cfg.MetricsAddr},
	} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return cfg, usagef("invalid %s %q: want host:port", a.name, a.addr)
		}
	}
	on, ok := valkeyconn.ParseSwitch(valkeyCluster)
	if !ok {
		return cfg, usagef("invalid VALKEY_CLUSTER/-valkey-cluster %q: want on or off", valkeyCluster)
	}
	cfg.ValkeyCluster = on
	cfg.valkey = valkeyconn.Config{Addresses: valkeyconn.SplitAddresses(cfg.ValkeyAddr), Cluster: on, Username: cfg.ValkeyUsername}
	switch tlsOn, isSwitch := valkeyconn.ParseSwitch(cfg.ValkeyTLS); {
	case isSwitch && tlsOn:
		cfg.valkey.TLS = &valkeyconn.TLS{}
	case !isSwitch:
		cfg.valkey.TLS = &valkeyconn.TLS{CAFile: cfg.ValkeyTLS}
	}
	if err := cfg.valkey.Validate(); err != nil {
		return cfg, usagef("invalid VALKEY_ADDR/-valkey-addr or VALKEY_TLS/-valkey-tls: %v", err)
	}
	if cfg.ValkeyPassword != "" {
		if _, err := secrets.ParseRef(cfg.ValkeyPassword); err != nil {
			return cfg, usagef("invalid VALKEY_PASSWORD/-valkey-password: %v", err)
		}
	}
	if cfg.primary, err = parseDatabaseURL("DATABASE_URL", cfg.DatabaseURL); err != nil {
		return cfg, err
	}
	cfg.ReplicaURLs = nil
	for u := range strings.SplitSeq(replicas, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		pc, err := parseDatabaseURL("DATABASE_REPLICA_URLS", u)
		if err != nil {
			return cfg, err
		}
		cfg.ReplicaURLs = append(cfg.ReplicaURLs, u)
		cfg.replicas = append(cfg.replicas, pc)
	}
	return cfg, nil
}

// parsePrefixes parses a comma-separated list of CIDRs; at least one is needed.
func parsePrefixes(name, s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, usagef("invalid %s %q: want CIDRs such as 10.0.0.0/8,::1/128", name, f)
		}
		ps = append(ps, p.Masked())
	}
	if len(ps) == 0 {
		return nil, usagef("invalid %s %q: want at least one CIDR", name, s)
	}
	return ps, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func parsePositiveDuration(name, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usagef("invalid %s %q: want a positive duration such as 15s", name, s)
	}
	return d, nil
}

// parseDatabaseURL accepts postgres:// URLs only (a key=value string is easy to get wrong
// in an environment variable) and never repeats the password in an error.
func parseDatabaseURL(name, raw string) (*pgxpool.Config, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, usagef("invalid %s %q: want postgres://user[:password]@host:port/dbname", name, redactURL(raw))
	}
	pc, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, usagef("invalid %s %q: %s", name, redactURL(raw), firstLine(err.Error()))
	}
	return pc, nil
}

// redactURL masks the password of a URL for printing; input that does not parse is replaced
// whole, since it may hold one anywhere.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsable URL]"
	}
	return u.Redacted()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// shortDuration writes d as a person would: 5m rather than 5m0s.
func shortDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
