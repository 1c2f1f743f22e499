package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/appserver/options"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := parseConfig("appserver", nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	def := defaultConfig()
	if cfg.Addr != def.Addr || cfg.MetricsAddr != def.MetricsAddr || cfg.ValkeyAddr != def.ValkeyAddr ||
		cfg.DatabaseURL != def.DatabaseURL || cfg.ShutdownTimeout != def.ShutdownTimeout || cfg.Migrate {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if len(cfg.replicas) != 1 || cfg.replicas[0].ConnConfig.Port != 55433 {
		t.Errorf("default replica not parsed: %v", cfg.ReplicaURLs)
	}
	if cfg.primary.ConnConfig.Port != 55432 || cfg.primary.ConnConfig.Database != "muejam" {
		t.Errorf("primary = %+v", cfg.primary.ConnConfig)
	}
}

func TestParseConfigEnvAndFlags(t *testing.T) {
	env := envMap(map[string]string{
		"APP_ADDR":              "127.0.0.1:1111",
		"DATABASE_URL":          "postgres://u:secret@db.internal:5433/app",
		"DATABASE_REPLICA_URLS": "postgres://u@r1:5432/app, postgres://u@r2:5432/app",
		"MIGRATE_ON_START":      "true",
		"LOG_LEVEL":             "debug",
		"SHUTDOWN_TIMEOUT":      "3s",
	})
	cfg, err := parseConfig("appserver", []string{"-addr", "127.0.0.1:2222", "-health-timeout=500ms"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:2222" {
		t.Errorf("flag did not win over env: addr %s", cfg.Addr)
	}
	if !cfg.Migrate || cfg.LogLevel != zapcore.DebugLevel || cfg.ShutdownTimeout != 3*time.Second || cfg.HealthTimeout != 500*time.Millisecond {
		t.Errorf("env not applied: %+v", cfg)
	}
	if len(cfg.replicas) != 2 || cfg.replicas[1].ConnConfig.Host != "r2" {
		t.Errorf("replicas = %v", cfg.ReplicaURLs)
	}
	if cfg.primary.ConnConfig.Password != "secret" {
		t.Errorf("password not parsed")
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"unknown flag", []string{"-bogus"}, nil, "flag provided but not defined: -bogus"},
		{"extra argument", []string{"serve"}, nil, `unexpected argument "serve"`},
		{"malformed url", nil, map[string]string{"DATABASE_URL": "postgres//nohost"}, "invalid DATABASE_URL"},
		{"not a postgres url", nil, map[string]string{"DATABASE_URL": "mysql://u@h/db"}, "invalid DATABASE_URL"},
		{"bad port in url", nil, map[string]string{"DATABASE_URL": "postgres://u:hunter2@h:99999/db"}, "invalid DATABASE_URL"},
		{"bad replica", nil, map[string]string{"DATABASE_REPLICA_URLS": "postgres://u@h/db,nope"}, "invalid DATABASE_REPLICA_URLS"},
		{"bad duration", nil, map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "invalid SHUTDOWN_TIMEOUT"},
		{"negative duration", []string{"-health-timeout", "-1s"}, nil, "invalid HEALTH_CHECK_TIMEOUT"},
		{"bad level", nil, map[string]string{"LOG_LEVEL": "loud"}, "invalid LOG_LEVEL"},
		{"bad bool", []string{"-migrate", "maybe"}, nil, "invalid MIGRATE_ON_START"},
		{"bad addr", []string{"-addr", "8081"}, nil, "invalid APP_ADDR"},
		{"bad pool size", nil, map[string]string{"DB_POOL_MAX_CONNS": "0"}, "invalid DB_POOL_MAX_CONNS"},
		{"bad max lag", []string{"-db-max-lag", "ten"}, nil, "invalid DB_MAX_LAG/-db-max-lag"},
		{"zero check interval", nil, map[string]string{"DB_CHECK_INTERVAL": "0s"}, "invalid DB_CHECK_INTERVAL"},
		{"password instead of its reference", nil, map[string]string{"DATABASE_PASSWORD": "hunter2"}, "invalid DATABASE_PASSWORD"},
		{"password with a colon", nil, map[string]string{"DATABASE_PASSWORD": "hunter2:x"}, "not a secret reference"},
		{"empty env reference", []string{"-database-password", "env:"}, nil, "invalid DATABASE_PASSWORD"},
		{"aws-sm reference with empty key", nil, map[string]string{"DATABASE_PASSWORD": "aws-sm:muejam/db#"}, "invalid DATABASE_PASSWORD"},
		{"zero secrets ttl", nil, map[string]string{"SECRETS_CACHE_TTL": "0s"}, "invalid SECRETS_CACHE_TTL"},
		{"bad secrets ttl", []string{"-secrets-cache-ttl", "often"}, nil, "invalid SECRETS_CACHE_TTL"},
		{"bad trusted cidr", nil, map[string]string{"TRUSTED_EDGE_CIDRS": "10.0.0.0/8,10.0.0.300/32"}, `invalid TRUSTED_EDGE_CIDRS/-trusted-edge-cidrs "10.0.0.300/32"`},
		{"bare ip as trusted cidr", []string{"-trusted-edge-cidrs", "10.0.0.1"}, nil, "invalid TRUSTED_EDGE_CIDRS"},
		{"no trusted cidr", []string{"-trusted-edge-cidrs", " , "}, nil, "want at least one CIDR"},
		{"trending too often", nil, map[string]string{"TRENDING_INTERVAL": "9m59s"}, `invalid TRENDING_INTERVAL/-trending-interval "9m59s": want a duration from 10m to 30m`},
		{"trending too rarely", []string{"-trending-interval", "31m"}, nil, "invalid TRENDING_INTERVAL"},
		{"trending not a duration", nil, map[string]string{"TRENDING_INTERVAL": "15"}, "invalid TRENDING_INTERVAL"},
		{"feeds kept too briefly", nil, map[string]string{"APP_CACHE_TTL_FEEDS": "59s"}, `invalid APP_CACHE_TTL_FEEDS/-cache-ttl-feeds "59s": want a duration from 1m to 5m`},
		{"feeds kept too long", []string{"-cache-ttl-feeds", "6m"}, nil, "invalid APP_CACHE_TTL_FEEDS"},
		{"suggestions kept too long", nil, map[string]string{"APP_CACHE_TTL_SUGGESTIONS": "31m"}, `invalid APP_CACHE_TTL_SUGGESTIONS/-cache-ttl-suggestions "31m": want a duration from 10m to 30m`},
		{"tiny app cache", nil, map[string]string{"APP_CACHE_L1_BYTES": "1024"}, "invalid APP_CACHE_L1_BYTES"},
		{"negative settle", []string{"-cache-purge-settle", "-1s"}, nil, "invalid APP_CACHE_PURGE_SETTLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig("appserver", tt.args, envMap(tt.env), io.Discard)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a usageError", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error repeats the password: %q", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
		})
	}
}

func TestParseConfigTrendingInterval(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		args []string
		want time.Duration
	}{
		{nil, nil, 15 * time.Minute},
		{map[string]string{"TRENDING_INTERVAL": "10m"}, nil, 10 * time.Minute},
		{map[string]string{"TRENDING_INTERVAL": "10m"}, []string{"-trending-interval", "30m"}, 30 * time.Minute},
	} {
		cfg, err := parseConfig("appserver", tt.args, envMap(tt.env), io.Discard)
		if err != nil || cfg.TrendingInterval != tt.want {
			t.Errorf("env %v, args %v: interval %v, %v; want %v", tt.env, tt.args, cfg.TrendingInterval, err, tt.want)
		}
	}
}

func TestParseConfigAppCache(t *testing.T) {
	cfg, err := parseConfig("appserver", nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CacheTTLFeeds != time.Minute || cfg.CacheTTLSuggestions != 10*time.Minute || cfg.CacheL1Bytes != 64<<20 || cfg.CacheSettle != 2*time.Second {
		t.Errorf("defaults: feeds %v, suggestions %v, L1 %d, settle %v; want 1m, 10m, 64 MiB, 2s",
			cfg.CacheTTLFeeds, cfg.CacheTTLSuggestions, cfg.CacheL1Bytes, cfg.CacheSettle)
	}
	cfg, err = parseConfig("appserver", []string{"-cache-ttl-suggestions", "30m", "-cache-purge-settle", "0s"},
		envMap(map[string]string{"APP_CACHE_TTL_FEEDS": "5m", "APP_CACHE_TTL_SUGGESTIONS": "12m", "APP_CACHE_L1_BYTES": "1048576"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CacheTTLFeeds != 5*time.Minute || cfg.CacheTTLSuggestions != 30*time.Minute || cfg.CacheL1Bytes != 1<<20 || cfg.CacheSettle != 0 {
		t.Errorf("set: feeds %v, suggestions %v, L1 %d, settle %v; want 5m, 30m (the flag), 1 MiB, 0s",
			cfg.CacheTTLFeeds, cfg.CacheTTLSuggestions, cfg.CacheL1Bytes, cfg.CacheSettle)
	}
}

func TestParseConfigSecrets(t *testing.T) {
	cfg, err := parseConfig("appserver", nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabasePassword != "" || cfg.SecretsCacheTTL != 5*time.Minute {
		t.Errorf("defaults: password ref %q, ttl %v; want none and 5m", cfg.DatabasePassword, cfg.SecretsCacheTTL)
	}

	env := envMap(map[string]string{
		"DATABASE_PASSWORD": "aws-sm:muejam/production/database#password",
		"SECRETS_CACHE_TTL": "30s",
	})
	if cfg, err = parseConfig("appserver", nil, env, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.DatabasePassword != "aws-sm:muejam/production/database#password" || cfg.SecretsCacheTTL != 30*time.Second {
		t.Errorf("env not applied: password ref %q, ttl %v", cfg.DatabasePassword, cfg.SecretsCacheTTL)
	}

	args := []string{"-database-password", "file:/run/secrets/db_password", "-secrets-cache-ttl", "1m"}
	if cfg, err = parseConfig("appserver", args, env, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.DatabasePassword != "file:/run/secrets/db_password" || cfg.SecretsCacheTTL != time.Minute {
		t.Errorf("flags did not win over env: password ref %q, ttl %v", cfg.DatabasePassword, cfg.SecretsCacheTTL)
	}
}

// TestParseConfigDatabasePasswordExitsTwo runs the real main: a password where its reference
// belongs is a usage error, one line, exit status 2, and the password is not repeated.
func TestParseConfigDatabasePasswordExitsTwo(t *testing.T) {
	code, stderr := runMain(t, []string{"DATABASE_PASSWORD=hunter2", "APP_METRICS_ADDR=127.0.0.1:0"})
	if code != 2 {
		t.Errorf("exit status %d, want 2 (stderr %q)", code, stderr)
	}
	if !strings.HasPrefix(stderr, "appserver: invalid DATABASE_PASSWORD") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr = %q, want one line starting with appserver: invalid DATABASE_PASSWORD", stderr)
	}
	if strings.Contains(stderr, "hunter2") {
		t.Errorf("stderr repeats the password: %q", stderr)
	}
}

func TestParseConfigDatabaseRouter(t *testing.T) {
	cfg, err := parseConfig("appserver", nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DBPoolMaxConns != 10 || cfg.DBMaxLag != 10*time.Second || cfg.DBCheckInterval != time.Second ||
		cfg.DBStatementTimeout != 10*time.Second || cfg.ReadYourWritesTTL != 30*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	env := envMap(map[string]string{
		"DB_POOL_MAX_CONNS":           "25",
		"DB_CONNECT_TIMEOUT":          "2s",
		"DB_STATEMENT_TIMEOUT":        "3s",
		"DB_POOL_HEALTH_CHECK_PERIOD": "4s",
		"DB_MAX_CONN_LIFETIME":        "5m",
		"DB_CHECK_INTERVAL":           "250ms",
		"DB_MAX_LAG":                  "6s",
		"DB_SLOW_QUERY":               "7ms",
		"READ_YOUR_WRITES_TTL":        "8s",
	})
	cfg, err = parseConfig("appserver", []string{"-db-max-lag", "9s", "-db-pool-max-conns=30"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DBPoolMaxConns != 30 || cfg.DBMaxLag != 9*time.Second {
		t.Errorf("flags did not win: %+v", cfg)
	}
	if cfg.DBConnectTimeout != 2*time.Second || cfg.DBStatementTimeout != 3*time.Second || cfg.DBPoolHealthCheck != 4*time.Second ||
		cfg.DBMaxConnLifetime != 5*time.Minute || cfg.DBCheckInterval != 250*time.Millisecond || cfg.DBSlowQuery != 7*time.Millisecond ||
		cfg.ReadYourWritesTTL != 8*time.Second {
		t.Errorf("env not applied: %+v", cfg)
	}
}

func TestParseConfigTrustedEdgeCIDRs(t *testing.T) {
	cfg, err := parseConfig("appserver", nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := options.JoinPrefixes(cfg.TrustedEdgeCIDRs); got != "127.0.0.0/8,::1/128" {
		t.Errorf("default TrustedEdgeCIDRs = %s, want loopback", got)
	}
	env := envMap(map[string]string{"TRUSTED_EDGE_CIDRS": "10.1.2.3/16, fd00::/8"})
	if cfg, err = parseConfig("appserver", nil, env, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := options.JoinPrefixes(cfg.TrustedEdgeCIDRs); got != "10.1.0.0/16,fd00::/8" {
		t.Errorf("TRUSTED_EDGE_CIDRS gave %s", got)
	}
	if cfg, err = parseConfig("appserver", []string{"-trusted-edge-cidrs", "192.0.2.0/24"}, env, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := options.JoinPrefixes(cfg.TrustedEdgeCIDRs); got != "192.0.2.0/24" {
		t.Errorf("flag did not win over env: %s", got)
	}
}
