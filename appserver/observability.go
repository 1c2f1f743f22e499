package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/errtrack"
)

// auditMaintenanceInterval is how often the app server creates the coming months' audit
// partitions and drops the expired ones.
const auditMaintenanceInterval = 6 * time.Hour

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
