package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/internal/testenv"
)

func TestParseConfigAudit(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := parseConfig("appserver", nil, env(nil), io.Discard)
	if err != nil || cfg.AuditRetention != 400*24*time.Hour || cfg.AppPseudonymKey != "" || cfg.FaultInjection {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	cfg, err = parseConfig("appserver", []string{"-fault-injection", "true"},
		env(map[string]string{"AUDIT_RETENTION": "0s", "APP_PSEUDONYM_KEY": "env:PII_KEY"}), io.Discard)
	if err != nil || cfg.AuditRetention != 0 || cfg.AppPseudonymKey != "env:PII_KEY" || !cfg.FaultInjection {
		t.Fatalf("set: %+v %v", cfg, err)
	}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AUDIT_RETENTION": "-1h"}, "invalid AUDIT_RETENTION"},
		{map[string]string{"AUDIT_RETENTION": "forever"}, "invalid AUDIT_RETENTION"},
		{map[string]string{"APP_PSEUDONYM_KEY": "a-plain-key-not-a-reference"}, "invalid APP_PSEUDONYM_KEY"},
		{map[string]string{"APP_FAULT_INJECTION": "sometimes"}, "invalid APP_FAULT_INJECTION"},
		{map[string]string{"SENTRY_DSN": "https://key@sentry.example/1"}, "invalid SENTRY_DSN"},
	} {
		_, err := parseConfig("appserver", nil, env(c.env), io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error %q", c.env, err, c.want)
		}
	}

	// The key is resolved at start; one shorter than the pseudonym mode needs is refused.
	cfg, err = parseConfig("appserver", nil, env(map[string]string{"APP_PSEUDONYM_KEY": "env:PII_KEY", "PII_KEY": "short"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var ue usageError
	if _, err := auditRecorder(context.Background(), cfg, zap.NewNop()); !errors.As(err, &ue) {
		t.Errorf("a short key: %v, want a usage error", err)
	}
	cfg.getenv = env(map[string]string{"PII_KEY": "0123456789abcdef"})
	if _, err := auditRecorder(context.Background(), cfg, zap.NewNop()); err != nil {
		t.Errorf("a good key: %v", err)
	}
	cfg.SentryDSN = "env:DSN"
	cfg.getenv = env(map[string]string{"DSN": "not a dsn"})
	if _, err := enableSentry(context.Background(), cfg); !errors.As(err, &ue) {
		t.Errorf("a bad DSN: %v, want a usage error", err)
	}
}

// TestAuditCommand runs `appserver audit` on a migrated database with events of two users.
func TestAuditCommand(t *testing.T) {
	db := testenv.NewDatabase(t)
	getenv := func(string) string { return "" }
	base := []string{"-database-url", db.PrimaryURL, "-replica-urls", ""}
	var out, errb bytes.Buffer
	if err := run(context.Background(), append([]string{"migrate"}, base...), getenv, &out, &errb); err != nil {
		t.Fatalf("migrate: %v %s", err, errb.String())
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `insert into audit_events (actor, action, target_type, target_id, request_id, at) values
		('alice', 'story.create', 'story', '1', 'r1', now() - interval '2 hours'),
		('alice', 'story.edit', 'story', '1', 'r2', now()),
		('bob', 'user.follow', 'user', 'alice', 'r3', now())`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string // request ids, newest first
	}{
		{nil, []string{"r3", "r2", "r1"}},
		{[]string{"-actor", "alice"}, []string{"r2", "r1"}},
		{[]string{"-target", "story:1", "-since", "1h"}, []string{"r2"}},
		{[]string{"-target", "user", "-limit", "1"}, []string{"r3"}},
	} {
		out.Reset()
		if err := run(ctx, append(append([]string{"audit"}, base...), c.args...), getenv, &out, &errb); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		var got []string
		dec := json.NewDecoder(&out)
		for dec.More() {
			var e audit.Entry
			if err := dec.Decode(&e); err != nil {
				t.Fatal(err)
			}
			got = append(got, e.RequestID)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("audit %v: %v, want %v", c.args, got, c.want)
		}
	}
	var ue usageError
	if err := run(ctx, append(append([]string{"audit"}, base...), "-limit", "0"), getenv, &out, &errb); !errors.As(err, &ue) {
		t.Errorf("-limit 0: %v, want a usage error", err)
	}
}
