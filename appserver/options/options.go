// Package options is the app server's configuration as one table: each option's environment
// variable, flag, default, parser and help line are written once, in Table, from which the app
// server builds its flags, reads its environment, prints -h and takes its defaults. Tests read
// the table too: the variables other files pass to the app server (compose, Dockerfiles,
// Terraform) and the ones its documentation lists are checked against it.
package options

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/secrets"
	"github.com/muejam/edge/internal/valkeyconn"
)

// Config holds the values of the options: what the app server reads from its environment and
// flags. Each field is set by the Parse of its row in Table, where its variable, flag, default
// and meaning are.
type Config struct {
	Addr            string
	MetricsAddr     string
	DatabaseURL     string
	ReplicaURLs     []string // without empty entries
	ValkeyAddr      string   // host:port, or a cluster's seeds, comma-separated
	ValkeyCluster   bool
	ValkeyUsername  string
	ValkeyPassword  string // a secret reference
	ValkeyTLS       string // off, on (system roots) or a CA file
	Migrate         bool
	LogLevel        zapcore.Level
	ShutdownTimeout time.Duration
	HealthTimeout   time.Duration

	DBPoolMaxConns     int
	DBConnectTimeout   time.Duration
	DBStatementTimeout time.Duration
	DBPoolHealthCheck  time.Duration
	DBMaxConnLifetime  time.Duration
	DBCheckInterval    time.Duration
	DBMaxLag           time.Duration
	DBSlowQuery        time.Duration
	ReadYourWritesTTL  time.Duration

	// DatabasePassword, when set, is a secret reference (env:NAME, file:PATH,
	// aws-sm:SECRET_ID[#json_key]) for the database password, for the pools' BeforeConnect.
	// It is a reference, not a password: printing it reveals nothing.
	DatabasePassword string
	SecretsCacheTTL  time.Duration

	// ReadYourWritesKey, when set, is a secret reference to the key (at least 32 bytes once
	// resolved) that signs and verifies read-your-writes tokens; the edge verifies them with
	// the same key. Unset, the public development key (rywtoken.DevKey) signs them: fine for
	// make run and the tests, never for production. ReadYourWritesKeyPrevious, during a
	// rotation, references the key before it: still accepted, never used to sign.
	ReadYourWritesKey         string
	ReadYourWritesKeyPrevious string

	// TrustedEdgeCIDRs are the networks of the edge: only requests from them may name their
	// user in X-Auth-User.
	TrustedEdgeCIDRs []netip.Prefix

	// AppPseudonymKey, when set, is a secret reference to the key (at least 16 bytes) of the
	// keyed HMAC that pseudonymizes client addresses in audit events, the edge's
	// PII_PSEUDONYM_KEY so both name an address alike. Unset, audit events store no address.
	AppPseudonymKey string
	// AuditRetention is how long audit events are kept: monthly partitions whose month
	// ended longer ago are dropped. 0 keeps them all.
	AuditRetention time.Duration
	// SentryDSN, when set, is a secret reference to the DSN of a Sentry-compatible service
	// that error events (panics, 500s) are forwarded to, scrubbed; unset, none leaves.
	SentryDSN string
	// FaultInjection serves GET /v1/_fault/panic, which panics: for the end-to-end tests
	// of error tracking, never in production.
	FaultInjection bool

	// TrendingInterval is how often the trending scores are recomputed, from 10 to 30 minutes.
	TrendingInterval time.Duration

	// How long the app's cache manager keeps answers computed for everyone when no purge
	// drops them sooner, within the seed's ranges, and the memory its L1 may use.
	CacheTTLFeeds       time.Duration
	CacheTTLWhispers    time.Duration
	CacheTTLSuggestions time.Duration
	CacheL1Bytes        int64
	// CacheSettle is how long after a purge the app's cache stores no value carrying the
	// purged tags: a load meanwhile may read a replica that has not replayed the change.
	CacheSettle time.Duration

	// Parsed from the options above, by their rows' Parse.
	primary  *pgxpool.Config   // DatabaseURL
	replicas []*pgxpool.Config // ReplicaURLs
	valkey   valkeyconn.Config // the Valkey options but the password, which is resolved at start
}

// Connections returns the settings parsed from the database and Valkey options: the primary's
// and each replica's pool, and Valkey's client without its password.
func (c *Config) Connections() (primary *pgxpool.Config, replicas []*pgxpool.Config, valkey valkeyconn.Config) {
	return c.primary, c.replicas, c.valkey
}

// Option is one row of Table.
type Option struct {
	Env     string // the environment variable
	Flag    string // the flag, without its dash; it wins over Env
	Default string // the value when neither is set, as written in either
	Doc     string // the flag's help line, which -h follows with (Env)
	// Parse checks the value s, from Env, Flag or Default, and sets the option's field of c;
	// its error, one line, names the option (o.Name()) and never repeats a secret.
	Parse func(c *Config, o Option, s string) error
}

// Name is how errors name the option: ENV/-flag.
func (o Option) Name() string { return o.Env + "/-" + o.Flag }

// Usage is the flag's help text: Doc and the variable.
func (o Option) Usage() string { return o.Doc + " (" + o.Env + ")" }

// Table is every option of the app server, in the order they are checked: the first invalid
// one is the error, and an option whose check depends on others (READ_YOUR_WRITES_KEY_PREVIOUS,
// VALKEY_TLS) comes after them.
var Table = []Option{
	{"MIGRATE_ON_START", "migrate", "false", "apply migrations at start",
		boolean(func(c *Config) *bool { return &c.Migrate })},
	{"LOG_LEVEL", "log-level", zapcore.InfoLevel.String(), "debug, info, warn or error", parseLogLevel},
	{"SHUTDOWN_TIMEOUT", "shutdown-timeout", dur(15 * time.Second), "how long SIGTERM waits for in-flight requests",
		positive(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"HEALTH_CHECK_TIMEOUT", "health-timeout", dur(2 * time.Second), "timeout of each health check",
		positive(func(c *Config) *time.Duration { return &c.HealthTimeout })},
	{"DB_POOL_MAX_CONNS", "db-pool-max-conns", "10", "connections per database node", parsePoolSize},
	{"DB_CONNECT_TIMEOUT", "db-connect-timeout", dur(5 * time.Second), "timeout of opening one database connection",
		positive(func(c *Config) *time.Duration { return &c.DBConnectTimeout })},
	{"DB_STATEMENT_TIMEOUT", "db-statement-timeout", dur(10 * time.Second), "statement_timeout, and the deadline of queries that have none",
		positive(func(c *Config) *time.Duration { return &c.DBStatementTimeout })},
	{"DB_POOL_HEALTH_CHECK_PERIOD", "db-pool-health-check-period", dur(30 * time.Second), "how often each pool checks its idle connections",
		positive(func(c *Config) *time.Duration { return &c.DBPoolHealthCheck })},
	{"DB_MAX_CONN_LIFETIME", "db-max-conn-lifetime", dur(30 * time.Minute), "age at which a database connection is replaced",
		positive(func(c *Config) *time.Duration { return &c.DBMaxConnLifetime })},
	{"DB_CHECK_INTERVAL", "db-check-interval", dur(time.Second), "how often every database node's role and lag are checked",
		positive(func(c *Config) *time.Duration { return &c.DBCheckInterval })},
	{"DB_MAX_LAG", "db-max-lag", dur(10 * time.Second), "replication lag above which a replica serves no reads",
		positive(func(c *Config) *time.Duration { return &c.DBMaxLag })},
	{"DB_SLOW_QUERY", "db-slow-query", dur(200 * time.Millisecond), "queries slower than this are logged (SQL normalized, no values)",
		positive(func(c *Config) *time.Duration { return &c.DBSlowQuery })},
	{"READ_YOUR_WRITES_TTL", "read-your-writes-ttl", dur(30 * time.Second), "how long a read-your-writes token pins reads",
		positive(func(c *Config) *time.Duration { return &c.ReadYourWritesTTL })},
	{"SECRETS_CACHE_TTL", "secrets-cache-ttl", dur(secrets.DefaultTTL), "how long a resolved secret is cached before it is fetched again",
		positive(func(c *Config) *time.Duration { return &c.SecretsCacheTTL })},
	{"DATABASE_PASSWORD", "database-password", "", "database password as a secret reference: env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key]",
		secretRef(func(c *Config) *string { return &c.DatabasePassword })},
	{"READ_YOUR_WRITES_KEY", "read-your-writes-key", "", "key of the read-your-writes tokens (at least 32 bytes) as a secret reference: env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key]; unset: the public development key",
		secretRef(func(c *Config) *string { return &c.ReadYourWritesKey })},
	{"READ_YOUR_WRITES_KEY_PREVIOUS", "read-your-writes-key-previous", "", "during a key rotation, the previous key of the read-your-writes tokens, still accepted, as a secret reference",
		parsePreviousKey},
	{"TRUSTED_EDGE_CIDRS", "trusted-edge-cidrs", JoinPrefixes(identity.DefaultTrusted), "comma-separated networks of the edge, whose X-Auth-User is trusted",
		parseTrusted},
	{"TRENDING_INTERVAL", "trending-interval", dur(15 * time.Minute), "how often the trending scores are recomputed, 10m to 30m",
		between(func(c *Config) *time.Duration { return &c.TrendingInterval }, 10*time.Minute, 30*time.Minute)},
	{"AUDIT_RETENTION", "audit-retention", dur(400 * 24 * time.Hour), "how long audit events are kept, by whole months; 0 keeps them all",
		nonNegative(func(c *Config) *time.Duration { return &c.AuditRetention }, "0 to keep everything")},
	{"APP_FAULT_INJECTION", "fault-injection", "false", "serve GET /v1/_fault/panic, which panics, for tests; never in production",
		boolean(func(c *Config) *bool { return &c.FaultInjection })},
	{"APP_PSEUDONYM_KEY", "pseudonym-key", "", "key of the HMAC pseudonymizing client addresses in audit events, as a secret reference; unset, none is stored",
		secretRef(func(c *Config) *string { return &c.AppPseudonymKey })},
	{"SENTRY_DSN", "sentry-dsn", "", "DSN of a Sentry-compatible service for error events, as a secret reference; unset, none is sent",
		secretRef(func(c *Config) *string { return &c.SentryDSN })},
	{"APP_CACHE_TTL_FEEDS", "cache-ttl-feeds", dur(time.Minute), "how long the app's cache keeps feeds and search results, 1m to 5m",
		between(func(c *Config) *time.Duration { return &c.CacheTTLFeeds }, time.Minute, 5*time.Minute)},
	{"APP_CACHE_TTL_WHISPERS", "cache-ttl-whispers", dur(30 * time.Second), "how long the app's cache keeps whisper feeds, 30s to 2m",
		between(func(c *Config) *time.Duration { return &c.CacheTTLWhispers }, 30*time.Second, 2*time.Minute)},
	{"APP_CACHE_TTL_SUGGESTIONS", "cache-ttl-suggestions", dur(10 * time.Minute), "how long the app's cache keeps search suggestions, 10m to 30m",
		between(func(c *Config) *time.Duration { return &c.CacheTTLSuggestions }, 10*time.Minute, 30*time.Minute)},
	{"APP_CACHE_L1_BYTES", "cache-l1-bytes", strconv.Itoa(64 << 20), "bytes the app's in-memory cache may hold, at least 1048576",
		parseL1Bytes},
	{"APP_CACHE_PURGE_SETTLE", "cache-purge-settle", dur(2 * time.Second), "how long after a purge the app's cache stores nothing carrying its tags",
		nonNegative(func(c *Config) *time.Duration { return &c.CacheSettle }, "0 or more")},
	{"APP_ADDR", "addr", "127.0.0.1:8081", "API listen address",
		hostPort(func(c *Config) *string { return &c.Addr })},
	{"APP_METRICS_ADDR", "metrics-addr", "127.0.0.1:9081", "internal metrics and pprof listen address",
		hostPort(func(c *Config) *string { return &c.MetricsAddr })},
	{"VALKEY_ADDR", "valkey-addr", "127.0.0.1:56379", "Valkey host:port, or a cluster's seed addresses, comma-separated",
		str(func(c *Config) *string { return &c.ValkeyAddr })}, // checked with VALKEY_TLS
	{"VALKEY_USERNAME", "valkey-username", "", "Valkey ACL user, empty for the default user",
		str(func(c *Config) *string { return &c.ValkeyUsername })},
	{"VALKEY_CLUSTER", "valkey-cluster", "false", "require a Valkey cluster: on or off", parseValkeyCluster},
	{"VALKEY_TLS", "valkey-tls", "", "TLS to Valkey: off, on (system roots) or a CA file", parseValkeyTLS},
	{"VALKEY_PASSWORD", "valkey-password", "", "Valkey AUTH password as a secret reference: env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key]",
		secretRef(func(c *Config) *string { return &c.ValkeyPassword })},
	{"DATABASE_URL", "database-url", "postgres://postgres@127.0.0.1:55432/muejam?sslmode=disable", "primary PostgreSQL URL",
		parsePrimary},
	{"DATABASE_REPLICA_URLS", "replica-urls", "postgres://postgres@127.0.0.1:55433/muejam?sslmode=disable", "comma-separated replica PostgreSQL URLs",
		parseReplicas},
}

// Defaults returns the configuration when no variable and no flag is set: every row's Default.
func Defaults() Config {
	var c Config
	for _, o := range Table {
		if err := o.Parse(&c, o, o.Default); err != nil {
			panic(fmt.Sprintf("options: the default of %s: %v", o.Env, err))
		}
	}
	return c
}

// dur writes a default duration as a flag's default shows it.
func dur(d time.Duration) string { return d.String() }

func str(field func(*Config) *string) func(*Config, Option, string) error {
	return func(c *Config, _ Option, s string) error {
		*field(c) = s
		return nil
	}
}

func boolean(field func(*Config) *bool) func(*Config, Option, string) error {
	return func(c *Config, o Option, s string) error {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid %s %q: want true or false", o.Name(), s)
		}
		*field(c) = v
		return nil
	}
}

func positive(field func(*Config) *time.Duration) func(*Config, Option, string) error {
	return func(c *Config, o Option, s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("invalid %s %q: want a positive duration such as 15s", o.Name(), s)
		}
		*field(c) = d
		return nil
	}
}

// nonNegative parses a duration of 0 or more; want ends the error's "want a duration, ...".
func nonNegative(field func(*Config) *time.Duration, want string) func(*Config, Option, string) error {
	return func(c *Config, o Option, s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return fmt.Errorf("invalid %s %q: want a duration, %s", o.Name(), s, want)
		}
		*field(c) = d
		return nil
	}
}

func between(field func(*Config) *time.Duration, lo, hi time.Duration) func(*Config, Option, string) error {
	return func(c *Config, o Option, s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("invalid %s %q: want a duration from %s to %s", o.Name(), s, shortDuration(lo), shortDuration(hi))
		}
		*field(c) = d
		return nil
	}
}

// secretRef accepts an empty value or a secret reference. The error repeats nothing of a value
// without a known scheme: it may be the secret itself.
func secretRef(field func(*Config) *string) func(*Config, Option, string) error {
	return func(c *Config, o Option, s string) error {
		if s != "" {
			if _, err := secrets.ParseRef(s); err != nil {
				return fmt.Errorf("invalid %s: %v", o.Name(), err)
			}
		}
		*field(c) = s
		return nil
	}
}

func hostPort(field func(*Config) *string) func(*Config, Option, string) error {
	return func(c *Config, o Option, s string) error {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("invalid %s %q: want host:port", o.Name(), s)
		}
		*field(c) = s
		return nil
	}
}

func parseLogLevel(c *Config, o Option, s string) (err error) {
	if c.LogLevel, err = zapcore.ParseLevel(s); err != nil {
		return fmt.Errorf("invalid %s %q: want debug, info, warn or error", o.Name(), s)
	}
	return nil
}

func parsePoolSize(c *Config, o Option, s string) (err error) {
	if c.DBPoolMaxConns, err = strconv.Atoi(s); err != nil || c.DBPoolMaxConns < 1 || c.DBPoolMaxConns > 10000 {
		return fmt.Errorf("invalid %s %q: want a number from 1 to 10000", o.Name(), s)
	}
	return nil
}

func parsePreviousKey(c *Config, o Option, s string) error {
	if err := secretRef(func(c *Config) *string { return &c.ReadYourWritesKeyPrevious })(c, o, s); err != nil {
		return err
	}
	if s != "" && c.ReadYourWritesKey == "" {
		return errors.New("READ_YOUR_WRITES_KEY_PREVIOUS is set without READ_YOUR_WRITES_KEY")
	}
	return nil
}

func parseTrusted(c *Config, o Option, s string) (err error) {
	c.TrustedEdgeCIDRs, err = parsePrefixes(o.Name(), s)
	return err
}

func parseL1Bytes(c *Config, o Option, s string) (err error) {
	if c.CacheL1Bytes, err = strconv.ParseInt(s, 10, 64); err != nil || c.CacheL1Bytes < 1<<20 {
		return fmt.Errorf("invalid %s %q: want a number of bytes, at least 1048576", o.Name(), s)
	}
	return nil
}

func parseValkeyCluster(c *Config, o Option, s string) error {
	on, ok := valkeyconn.ParseSwitch(s)
	if !ok {
		return fmt.Errorf("invalid %s %q: want on or off", o.Name(), s)
	}
	c.ValkeyCluster = on
	return nil
}

// parseValkeyTLS sets ValkeyTLS and checks it with the other Valkey options, which come before
// it in Table, but the password.
func parseValkeyTLS(c *Config, o Option, s string) error {
	c.ValkeyTLS = s
	c.valkey = valkeyconn.Config{Addresses: valkeyconn.SplitAddresses(c.ValkeyAddr), Cluster: c.ValkeyCluster, Username: c.ValkeyUsername}
	switch on, isSwitch := valkeyconn.ParseSwitch(s); {
	case isSwitch && on:
		c.valkey.TLS = &valkeyconn.TLS{}
	case !isSwitch:
		c.valkey.TLS = &valkeyconn.TLS{CAFile: s}
	}
	if err := c.valkey.Validate(); err != nil {
		return fmt.Errorf("invalid VALKEY_ADDR/-valkey-addr or %s: %v", o.Name(), err)
	}
	return nil
}

func parsePrimary(c *Config, o Option, s string) (err error) {
	c.DatabaseURL = s
	c.primary, err = parseDatabaseURL(o.Env, s)
	return err
}

func parseReplicas(c *Config, o Option, s string) error {
	c.ReplicaURLs, c.replicas = nil, nil
	for u := range strings.SplitSeq(s, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		pc, err := parseDatabaseURL(o.Env, u)
		if err != nil {
			return err
		}
		c.ReplicaURLs = append(c.ReplicaURLs, u)
		c.replicas = append(c.replicas, pc)
	}
	return nil
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
			return nil, fmt.Errorf("invalid %s %q: want CIDRs such as 10.0.0.0/8,::1/128", name, f)
		}
		ps = append(ps, p.Masked())
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("invalid %s %q: want at least one CIDR", name, s)
	}
	return ps, nil
}

// JoinPrefixes writes CIDRs as TRUSTED_EDGE_CIDRS takes them: comma-separated.
func JoinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// parseDatabaseURL accepts postgres:// URLs only (a key=value string is easy to get wrong
// in an environment variable) and never repeats the password in an error.
func parseDatabaseURL(name, raw string) (*pgxpool.Config, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, fmt.Errorf("invalid %s %q: want postgres://user[:password]@host:port/dbname", name, RedactURL(raw))
	}
	pc, err := pgxpool.ParseConfig(raw)
	if err != nil {
		line, _, _ := strings.Cut(err.Error(), "\n")
		return nil, fmt.Errorf("invalid %s %q: %s", name, RedactURL(raw), line)
	}
	return pc, nil
}

// RedactURL masks the password of a URL for printing; input that does not parse is replaced
// whole, since it may hold one anywhere.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsable URL]"
	}
	return u.Redacted()
}

// shortDuration writes d as a person would: 5m rather than 5m0s.
func shortDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
