package piiscrub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
)

// The personal data and secrets an access-log entry carries in the tests.
var secrets = []string{
	"alice@example.com", "alice%40example.com", // query, as sent and decoded
	"4111 1111 1111 1111", // a header
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZw", // bearer token
	"sessionid=s3cr3t-c00kie",                                      // cookie
	"hunter2",                                                      // password parameter
	"bob@example.org",                                              // client certificate
	"203.0.113.77",                                                 // X-Forwarded-For
	"+44 20 7946 0958",                                             // a header
}

// accessEntry returns an entry and fields as Caddy's access logger writes them, with
// credentials logged (the server's log_credentials option), the worst case.
func accessEntry() (zapcore.Entry, []zapcore.Field) {
	r := httptest.NewRequest(http.MethodGet,
		"https://muejam.test/v1/stories/42?email=alice%40example.com&password=hunter2&limit=20", nil)
	r.RequestURI = "/v1/stories/42?email=alice%40example.com&password=hunter2&limit=20"
	r.RemoteAddr = "192.0.2.10:51234"
	r.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZw")
	r.Header.Set("Cookie", "sessionid=s3cr3t-c00kie")
	r.Header.Set("X-Card", "4111 1111 1111 1111")
	r.Header.Set("X-Phone", "+44 20 7946 0958")
	r.Header.Set("X-Forwarded-For", "203.0.113.77")
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0")
	r.Header.Set("Accept", "application/json")
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		NegotiatedProtocol: "h2", ServerName: "muejam.test",
		PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "bob@example.org"}, SerialNumber: big.NewInt(42)}}}
	respHeaders := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=60"}}
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Date(2026, 11, 25, 20, 9, 46, 0, time.UTC),
		LoggerName: "http.log.access.log0", Message: "handled request"}
	return ent, []zapcore.Field{
		zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r, ShouldLogCredentials: true}),
		zap.Int64("bytes_read", 0),
		zap.String("user_id", ""),
		zap.Duration("duration", 12500*time.Microsecond),
		zap.Int("size", 5120),
		zap.Int("status", 200),
		zap.Object("resp_headers", caddyhttp.LoggableHTTPHeader{Header: respHeaders, ShouldLogCredentials: true}),
	}
}

// provision provisions a module in a fresh Caddy context.
func provision(t testing.TB, m caddy.Provisioner) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
}

// encode encodes the entry with enc and returns the line.
func encode(t testing.TB, enc zapcore.Encoder, ent zapcore.Entry, fields []zapcore.Field) string {
	t.Helper()
	buf, err := enc.EncodeEntry(ent, fields)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	return buf.String()
}

func TestEncoderScrubsAccessLog(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrap     string
		jsonLine bool
	}{
		{name: "default", jsonLine: true},
		{name: "json", wrap: `{"format":"json"}`, jsonLine: true},
		{name: "json with options", wrap: `{"format":"json","time_format":"iso8601","duration_format":"string"}`, jsonLine: true},
		{name: "console", wrap: `{"format":"console"}`},
		{name: "filter over json", wrap: `{"format":"filter","wrap":{"format":"json"},"fields":{"request>headers>Accept":{"filter":"delete"}}}`, jsonLine: true},
		{name: "filter over console", wrap: `{"format":"filter","wrap":{"format":"console"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := &Encoder{}
			if tc.wrap != "" {
				enc.WrappedRaw = json.RawMessage(tc.wrap)
			}
			provision(t, enc)
			ent, fields := accessEntry()
			line := encode(t, enc, ent, fields)
			for _, s := range secrets {
				if strings.Contains(line, s) {
					t.Errorf("%q remains in %s", s, line)
				}
			}
			for _, kept := range []string{"/v1/stories/42", "limit=20", "Firefox/132.0", "muejam.test", "handled request", "[REDACTED:email]"} {
				if !strings.Contains(line, kept) {
					t.Errorf("%q missing from %s", kept, line)
				}
			}
			if tc.jsonLine && !json.Valid([]byte(line)) {
				t.Errorf("not valid JSON: %s", line)
			}
			if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
				t.Errorf("not one line: %q", line)
			}
		})
	}
}

// TestEncoderLeavesCleanLines checks that a line without personal data is byte for byte
// what the wrapped encoder writes.
func TestEncoderLeavesCleanLines(t *testing.T) {
	for _, wrap := range []string{`{"format":"json"}`, `{"format":"console"}`} {
		enc := &Encoder{WrappedRaw: json.RawMessage(wrap)}
		provision(t, enc)
		plain := enc.Encoder.(*fieldEncoder).enc
		ent, fields := cleanEntry()
		// One header each, so that the order of map iteration cannot differ.
		req := fields[0].Interface.(caddyhttp.LoggableHTTPRequest)
		req.Header = http.Header{"User-Agent": req.Header["User-Agent"]}
		fields[len(fields)-1].Interface = caddyhttp.LoggableHTTPHeader{Header: http.Header{"Etag": {`"v2.11.9-1732565386"`}}}
		if got, want := encode(t, enc, ent, fields), encode(t, plain, ent, fields); got != want {
			t.Errorf("%s: clean line changed:\n got %s\nwant %s", wrap, got, want)
		}
	}
}

// cleanEntry returns an access-log entry without personal data.
func cleanEntry() (zapcore.Entry, []zapcore.Field) {
	r := httptest.NewRequest(http.MethodGet, "/v1/stories/42/chapters?limit=20&cursor=eyJpZCI6NDJ9", nil)
	r.RemoteAddr = "127.0.0.1:51234"
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("X-Request-Id", "550e8400-e29b-41d4-a716-446655440000")
	ent := zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Date(2026, 11, 25, 20, 9, 46, 0, time.UTC),
		LoggerName: "http.log.access.log0", Message: "handled request"}
	return ent, []zapcore.Field{
		zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r}),
		zap.Int64("bytes_read", 0),
		zap.String("user_id", "u_12345"),
		zap.Duration("duration", 12500*time.Microsecond),
		zap.Int("size", 5120),
		zap.Int("status", 200),
		zap.Object("resp_headers", caddyhttp.LoggableHTTPHeader{Header: http.Header{
			"Content-Type": {"application/json"}, "Cache-Control": {"max-age=60"}, "Etag": {`"v2.11.9-1732565386"`}}}),
	}
}

// TestEncoderScrubsEverything covers the message, context fields (With) and each kind of
// field value, through both paths.
func TestEncoderScrubsEverything(t *testing.T) {
	fields := []zapcore.Field{
		zap.String("display_name", "Alice Liddell"),
		zap.ByteString("raw", []byte("mail alice@example.com")),
		zap.Int64("card", 4111111111111111),
		zap.Uint64("ucard", 4111111111111111),
		zap.Int("display_name_n", 7),
		zap.Error(errNamed("dial bob@example.org: refused")),
		zap.Stringer("who", stringerOf("carol@example.net")),
		zap.Strings("emails", []string{"dave@example.com"}),
		zap.Any("reflected", map[string]any{"to": "erin@example.com", "ip": "198.51.100.23", "nested": []any{"frank@example.com"}}),
		zap.Inline(inline{}),
		zap.Bool("ok", true),
	}
	for _, wrap := range []string{`{"format":"json"}`, `{"format":"console"}`} {
		enc := &Encoder{WrappedRaw: json.RawMessage(wrap), Options: Options{Fields: []string{"display_name", "display_name_n"}}}
		provision(t, enc)
		ctxEnc := enc.Clone()
		ctxEnc.AddString("context_email", "grace@example.com")
		_ = ctxEnc.AddArray("context_list", zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
			ae.AppendString("heidi@example.com")
			return nil
		}))
		ent := zapcore.Entry{Level: zapcore.ErrorLevel, Message: "signup by ivan@example.com", Stack: "at user judy@example.com"}
		line := encode(t, ctxEnc, ent, fields)
		for _, s := range []string{"alice", "Alice", "4111111111111111", "bob@", "carol@", "dave@", "erin@", "frank@", "198.51.100.23",
			"grace@", "heidi@", "ivan@", "judy@", "mallory@", `"display_name_n":7`, "display_name_n=7"} {
			if strings.Contains(line, s) {
				t.Errorf("%s: %q remains in %s", wrap, s, line)
			}
		}
		if !strings.Contains(line, "198.51.100.0") || !strings.Contains(line, "true") {
			t.Errorf("%s: masked IP or plain values missing from %s", wrap, line)
		}
	}
}

type errNamed string

func (e errNamed) Error() string { return string(e) }

type stringerOf string

func (s stringerOf) String() string { return string(s) }

type inline struct{}

func (inline) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("inline_email", "mallory@example.com")
	return nil
}

func TestEncoderModesAndKey(t *testing.T) {
	t.Setenv("PII_TEST_KEY", "0123456789abcdef0123456789abcdef")
	enc := &Encoder{Options: Options{Modes: map[string]string{"email": "pseudonym", "card": "mask"}, PseudonymKey: "{env.PII_TEST_KEY}"}}
	provision(t, enc)
	ent := zapcore.Entry{Message: "m"}
	a := encode(t, enc, ent, []zapcore.Field{zap.String("a", "alice@example.com"), zap.String("c", "4111 1111 1111 1111")})
	b := encode(t, enc, ent, []zapcore.Field{zap.String("b", "ALICE@example.com")})
	var la, lb map[string]string
	if err := json.Unmarshal([]byte(a), &la); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &lb); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(la["a"], "[email:") || la["a"] != lb["b"] {
		t.Errorf("pseudonyms %q and %q, want the same [email:...] token", la["a"], lb["b"])
	}
	if !strings.HasSuffix(la["c"], "1111") || strings.Contains(la["c"], "4111") {
		t.Errorf("masked card %q", la["c"])
	}

	bad := &Encoder{Options: Options{Modes: map[string]string{"email": "pseudonym"}, PseudonymKey: "{env.PII_TEST_UNSET}"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := bad.Provision(ctx); err == nil || !strings.Contains(err.Error(), "pseudonym_key") {
		t.Errorf("provisioning with an unset key: %v, want a pseudonym_key error", err)
	}
}

func TestFilter(t *testing.T) {
	f := &Filter{Options: Options{Headers: []string{"X-Card"}}}
	provision(t, f)
	fe := &logging.FilterEncoder{
		WrappedRaw: json.RawMessage(`{"format":"json"}`),
		FieldsRaw:  map[string]json.RawMessage{"request": json.RawMessage(`{"filter":"pii","headers":["X-Card"]}`)},
	}
	provision(t, fe)
	ent, fields := accessEntry()
	line := encode(t, fe, ent, fields)
	for _, s := range secrets {
		if strings.Contains(line, s) {
			t.Errorf("%q remains in %s", s, line)
		}
	}
	if !strings.Contains(line, `"X-Card":["[REDACTED:header]"]`) || !json.Valid([]byte(line)) {
		t.Errorf("X-Card not redacted whole or invalid JSON: %s", line)
	}
	if got := f.Filter(zap.String("uri", "/?email=alice@example.com")); strings.Contains(got.String, "alice") {
		t.Errorf("Filter left %q", got.String)
	}
}

func TestRedactionsCounted(t *testing.T) {
	enc := &Encoder{}
	provision(t, enc)
	before := testutil.ToFloat64(redactions.WithLabelValues("email"))
	encode(t, enc, zapcore.Entry{Message: "m"}, []zapcore.Field{zap.String("to", "a@example.com b@example.com")})
	if got := testutil.ToFloat64(redactions.WithLabelValues("email")) - before; got != 2 {
		t.Errorf("email redactions counted %v, want 2", got)
	}
}
