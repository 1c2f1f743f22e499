package logscrub

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/internal/pii"
)

type profile struct{ name, email string }

func (p profile) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("display_name", p.name)
	enc.AddString("contact", p.email)
	return enc.AddObject("nested", zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		enc.AddString("note", "call +1 (415) 555-2671")
		return nil
	}))
}

type addr string

func (a addr) String() string { return "client " + string(a) }

func newLogger(t *testing.T, buf *bytes.Buffer) *zap.Logger {
	t.Helper()
	s, err := pii.New(pii.Config{Fields: []string{"display_name"}, Modes: map[string]string{"ip": "redact"}})
	if err != nil {
		t.Fatal(err)
	}
	enc := zap.NewProductionEncoderConfig()
	return zap.New(Wrap(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(buf), zapcore.DebugLevel), s),
		zap.AddStacktrace(zapcore.ErrorLevel))
}

func TestScrubsEverything(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(t, &buf)
	const (
		email = "alice.smith@example.com"
		card  = "4111 1111 1111 1111"
		jwt   = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
		token = "0a1b2c3d4e5f6g7h8i9j"
		phone = "(415) 555-2671"
		ip    = "203.0.113.7"
	)
	log.With(zap.String("user", email)).Info("signed in "+email,
		zap.String("card", card),
		zap.ByteString("raw", []byte("Bearer "+token)),
		zap.Error(errors.New("charge "+card+" failed")),
		zap.Stringer("peer", addr(ip)),
		zap.Object("profile", profile{name: "Alice Smith", email: email}),
		zap.Any("headers", http.Header{"Authorization": {"Bearer " + jwt}, "Accept": {"*/*"}}),
		zap.Int64("pan", 4111111111111111),
		zap.Int("status", 200),
		zap.Strings("tags", []string{"ok", email}),
		zap.Reflect("req", map[string]any{"uri": "/login?password=hunter2&next=/", "phone": phone}),
	)
	log.Error("payment failed for " + email) // with a stack trace
	out := buf.String()
	for _, v := range []string{email, card, jwt, token, "4111111111111111", "Alice Smith", "hunter2", "555-2671", ip} {
		if strings.Contains(out, v) {
			t.Errorf("%q reached the log:\n%s", v, out)
		}
	}
	for _, want := range []string{`"status":200`, `"Accept":["*/*"]`, `&next=/"`, `[REDACTED:field]`, `[REDACTED:header]`,
		`"stacktrace":"`, `"pan":"[REDACTED:card]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	sc := bufio.NewScanner(&buf)
	lines := 0
	for sc.Scan() {
		lines++
		if !json.Valid(sc.Bytes()) {
			t.Errorf("not JSON: %s", sc.Bytes())
		}
	}
	if lines != 2 {
		t.Errorf("%d lines, want 2", lines)
	}
}

func TestStackAndLevel(t *testing.T) {
	var buf bytes.Buffer
	s, err := pii.New(pii.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := Wrap(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.InfoLevel), s)
	if ce := c.Check(zapcore.Entry{Level: zapcore.DebugLevel}, nil); ce != nil {
		t.Error("debug entry checked in at info level")
	}
	ent := zapcore.Entry{Level: zapcore.ErrorLevel, Message: "boom", Stack: "main.handle(0xc000, bob@example.com)\n\t/app/main.go:42"}
	if err := c.Write(ent, nil); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); strings.Contains(out, "bob@example.com") || !strings.Contains(out, "main.go:42") {
		t.Errorf("stack not scrubbed, or scrubbed too much: %s", out)
	}
}

// benchLog logs a typical request line, without personal data, through core.
func benchLog(b *testing.B, wrap bool) {
	s, err := pii.New(pii.Config{})
	if err != nil {
		b.Fatal(err)
	}
	var c zapcore.Core = zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	if wrap {
		c = Wrap(c, s)
	}
	log := zap.New(c)
	b.ReportAllocs()
	for b.Loop() {
		log.Info("request served", zap.String("method", "GET"), zap.String("route", "GET /v1/stories/{id}"),
			zap.String("uri", "/v1/stories/42?limit=20"), zap.Int("status", 200), zap.Duration("took", 12500000),
			zap.String("request_id", "550e8400-e29b-41d4-a716-446655440000"))
	}
}

func BenchmarkPlain(b *testing.B)    { benchLog(b, false) }
func BenchmarkScrubbed(b *testing.B) { benchLog(b, true) }
