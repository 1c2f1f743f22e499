package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/errtrack"
	"github.com/muejam/edge/appserver/secrets"
)

// auditMaintenanceInterval is how often the app server creates the coming months' audit
// partitions and drops the expired ones.
const auditMaintenanceInterval = 6 * time.Hour

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

// auditRecorder returns the recorder of audit events, logging to log, with the key of
// APP_PSEUDONYM_KEY, or without one, so that no address is stored.
func auditRecorder(ctx context.Context, cfg config, log *zap.Logger) (*audit.Recorder, error) {
	key, err := resolveSecret(ctx, cfg, "APP_PSEUDONYM_KEY", cfg.AppPseudonymKey)
	if err != nil {
		return nil, err
	}
	rec, err := audit.NewRecorder(log, key)
	if err != nil {
		return nil, usagef("APP_PSEUDONYM_KEY: %v", err)
	}
	return rec, nil
}

// enableSentry forwards the app server's error events to the service of SENTRY_DSN, when
// set, scrubbed by the log scrubber, and returns the function that flushes them at exit (a
// no-op without SENTRY_DSN).
func enableSentry(ctx context.Context, cfg config) (flush func(), err error) {
	dsn, err := resolveSecret(ctx, cfg, "SENTRY_DSN", cfg.SentryDSN)
	if err != nil || dsn == "" {
		return func() {}, err
	}
	f, err := errtrack.EnableSentry(dsn, "", logScrubber, nil)
	if err != nil {
		return nil, usagef("SENTRY_DSN: %v", err)
	}
	return func() { f(5 * time.Second) }, nil
}
