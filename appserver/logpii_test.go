package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestLoggerScrubsPII checks that the app server's logger (the one serve builds) writes no
// email logged in a field, a message or an error, and counts the redactions by kind.
func TestLoggerScrubsPII(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, zapcore.InfoLevel)
	before := testutil.ToFloat64(piiRedactions.WithLabelValues("email"))

	log.With(zap.String("request_id", "550e8400-e29b-41d4-a716-446655440000")).Info("profile updated",
		zap.String("email", "alice@example.com"),
		zap.Error(errors.New("notify bob@example.org: timeout")),
		zap.Int("status", 200))
	log.Info("signup by carol@example.net")

	out := buf.String()
	for _, s := range []string{"alice@example.com", "bob@example.org", "carol@example.net"} {
		if strings.Contains(out, s) {
			t.Errorf("%q reached the log: %s", s, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if first["email"] != "[REDACTED:email]" || first["request_id"] != "550e8400-e29b-41d4-a716-446655440000" || first["status"] != 200.0 {
		t.Errorf("fields %v, want the email redacted and the rest untouched", first)
	}
	if got := testutil.ToFloat64(piiRedactions.WithLabelValues("email")) - before; got != 3 {
		t.Errorf("email redactions counted %v, want 3", got)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(piiRedactions)
	if n, err := testutil.GatherAndCount(reg, "muejam_app_pii_redactions_total"); err != nil || n == 0 {
		t.Errorf("muejam_app_pii_redactions_total: %d series, %v", n, err)
	}
}
