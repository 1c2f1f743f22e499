package dbrouter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/internal/rywtoken"
)

func TestNormalizeSQL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"select * from t where id = $1", "select * from t where id = $1"},
		{"SELECT  a,\n\tb FROM t WHERE x = 'secret' AND y = 42", "SELECT a, b FROM t WHERE x = ? AND y = ?"},
		{"select 'it''s' || E'a\\'b' from t1", "select ? || E? from t1"},
		{"select 'a\\' , 'secret2'", "select ? , ?"},
		{"select $$body 'x'$$, $tag$secret$tag$ -- note 123\nfrom t /* 99 */ where n > 1.5e3", "select ?, ? from t where n > ?"},
		{"insert into t2(v) values (3.14), (-7)", "insert into t2(v) values (?), (-?)"},
	}
	for _, tt := range tests {
		if got := normalizeSQL(tt.in); got != tt.want {
			t.Errorf("normalizeSQL(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
	long := "select " + strings.Repeat("col, ", 1000) + "x"
	if got := normalizeSQL(long); len(got) > maxLoggedSQL+len("…") {
		t.Errorf("long SQL not truncated: %d bytes", len(got))
	}
}

// tokenRouter is a Router with just what the token methods use: its config (defaults set,
// keys as given) and its metrics, registered on reg.
func tokenRouter(t *testing.T, cfg Config, reg prometheus.Registerer) *Router {
	t.Helper()
	cfg.setDefaults()
	r := &Router{cfg: cfg}
	r.metrics = newMetrics(r)
	if err := r.metrics.register(reg); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestValidToken(t *testing.T) {
	r := tokenRouter(t, Config{TokenTTL: time.Minute}, nil)
	tok := Token{lsn: 0x1_0000_00ff, issued: time.Now()}
	if r.validToken(tok).IsZero() {
		t.Error("fresh token refused")
	}
	old := Token{lsn: 5, issued: time.Now().Add(-2 * time.Minute)}
	future := Token{lsn: 5, issued: time.Now().Add(time.Hour)}
	if !r.validToken(old).IsZero() || !r.validToken(future).IsZero() {
		t.Error("expired or future token honoured")
	}
}

func TestTokenHTTP(t *testing.T) {
	keys, err := rywtoken.NewKeys(strings.Repeat("k", rywtoken.MinKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	r := tokenRouter(t, Config{TokenTTL: 30 * time.Second, TokenKeys: keys}, reg)
	tok := Token{lsn: 42, issued: time.UnixMilli(time.Now().UnixMilli())}
	signed := r.EncodeToken(tok)
	if c, out := keys.Verify(signed, time.Minute, time.Now()); out != rywtoken.Valid || c.LSN != 42 {
		t.Fatalf("token %q: %v %v, want a token signed with the router's key", signed, c, out)
	}
	if r.TokenTTL() != 30*time.Second {
		t.Fatalf("TokenTTL %v, want 30s", r.TokenTTL())
	}
	cookies := []*http.Cookie{{Name: TokenCookie, Value: signed}}

	// The same claims, unsigned (the previous format) or signed with another key: forged.
	other := tokenRouter(t, Config{}, nil) // a random key of its own
	forged := other.EncodeToken(tok)
	expired := r.EncodeToken(Token{lsn: 42, issued: time.Now().Add(-time.Minute)})

	var seen Token
	h := r.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen, _ = TokenFrom(req.Context())
		if r.Pins(req.Context()) != !seen.IsZero() {
			t.Errorf("Pins %v with token %v", r.Pins(req.Context()), seen)
		}
	}))
	tests := []struct {
		name   string
		header string
		cookie *http.Cookie
		want   Token
	}{
		{"cookie", "", cookies[0], tok},
		{"header", signed, nil, tok},
		{"bad header falls back to cookie", "nonsense", cookies[0], tok},
		{"bad cookie ignored", "", &http.Cookie{Name: TokenCookie, Value: "%%%"}, Token{}},
		{"forged header", forged, nil, Token{}},
		{"forged cookie", "", &http.Cookie{Name: TokenCookie, Value: forged}, Token{}},
		{"unsigned token of the old format", "AQAAAAAAAAAqAAABjP8AAAA", nil, Token{}},
		{"expired", expired, nil, Token{}},
		{"cookie of another name", "", &http.Cookie{Name: "xryw", Value: signed}, Token{}},
		{"none", "", nil, Token{}},
	}
	for _, tt := range tests {
		seen = Token{}
		req := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			req.Header.Set(TokenHeader, tt.header)
		}
		if tt.cookie != nil {
			req.AddCookie(tt.cookie)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		if seen != tt.want {
			t.Errorf("%s: token %v, want %v", tt.name, seen, tt.want)
		}
	}
	// Every token seen is counted by outcome; requests without one are not.
	want := map[string]float64{"valid": 3, "invalid": 4, "expired": 1, "future": 0}
	for outcome, n := range want {
		if got := testutil.ToFloat64(r.metrics.tokens.WithLabelValues(outcome)); got != n {
			t.Errorf("muejam_db_read_your_writes_tokens_total{outcome=%q} = %v, want %v", outcome, got, n)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "muejam_db_read_your_writes_tokens_total"); err != nil || n != 4 {
		t.Errorf("%d series of muejam_db_read_your_writes_tokens_total (%v), want one per outcome", n, err)
	}
}

func TestPrimaryUnavailableError(t *testing.T) {
	inner := errors.New("conn closed")
	err := fmt.Errorf("saving story: %w", &PrimaryUnavailableError{RetryAfter: 1500 * time.Millisecond, Err: inner})
	if !errors.Is(err, ErrPrimaryUnavailable) || !errors.Is(err, inner) {
		t.Fatal("errors.Is(ErrPrimaryUnavailable) or errors.Is(the connection error) is false")
	}
	var pe *PrimaryUnavailableError
	if !errors.As(err, &pe) || pe.RetryAfter != 1500*time.Millisecond {
		t.Errorf("errors.As: %v", pe)
	}
	if errors.Is(errors.New("other"), ErrPrimaryUnavailable) {
		t.Error("an unrelated error is ErrPrimaryUnavailable")
	}
}

func TestErrorClasses(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("q: %w", &pgconn.PgError{Code: code}) }
	if !isConnError(pg("57P01")) || !isConnError(pg("08006")) || !isConnError(io.ErrUnexpectedEOF) {
		t.Error("connection errors not recognised")
	}
	if isConnError(pg("23505")) || isConnError(nil) || isConnError(fmt.Errorf("x: %w", errContext)) {
		t.Error("statement error taken for a connection error")
	}
	if !isRetryableTx(pg("40001")) || !isRetryableTx(pg("40P01")) || isRetryableTx(pg("23505")) {
		t.Error("serialization failures")
	}
	if !isAuthFailure(pg("28P01")) || isAuthFailure(pg("28000")) {
		t.Error("auth failures")
	}
}

var errContext = contextCanceled()

func TestLagEstimate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var h lsnHistory
	if b, s := h.lag(t0, 10, nil); b != 0 || s != 0 {
		t.Errorf("empty history: %d %v", b, s)
	}
	h.add(t0, 100)
	h.add(t0.Add(time.Second), 100) // idle primary: no new sample
	h.add(t0.Add(2*time.Second), 150)
	h.add(t0.Add(3*time.Second), 120) // older than the last: ignored
	age := 60.0
	tests := []struct {
		name  string
		now   time.Time
		lsn   uint64
		bytes int64
		secs  float64
	}{
		{"caught up, idle for long", t0.Add(time.Hour), 150, 0, 0},
		{"behind the last write", t0.Add(5 * time.Second), 100, 50, 3},
		{"behind since before the history", t0.Add(5 * time.Second), 90, 60, 60},
	}
	for _, tt := range tests {
		b, s := h.lag(tt.now, tt.lsn, &age)
		if b != tt.bytes || s != tt.secs {
			t.Errorf("%s: lag = %d bytes %vs, want %d %vs", tt.name, b, s, tt.bytes, tt.secs)
		}
	}
	if len(h.samples) != 2 {
		t.Errorf("samples %v, want only positions that moved", h.samples)
	}
}

func contextCanceled() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx.Err()
}

// BenchmarkPickReader is the routing decision of a read: a primary and two replicas, one
// lagging beyond MaxLag, with and without a read-your-writes token. The pools are never
// dialled.
func BenchmarkPickReader(b *testing.B) {
	r := &Router{cfg: Config{MaxLag: 10 * time.Second, TokenTTL: time.Minute}}
	for i, lag := range []float64{0, 0.01, 30} {
		pool, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://u@127.0.0.1:1/db%d", i))
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		n := &node{name: fmt.Sprint(i), router: r, pool: pool}
		n.setRole(i == 0)
		n.status.Store(&NodeStatus{Name: n.name, Up: true, Primary: i == 0, LSN: 1000, LagSeconds: lag, LagBytes: int64(lag * 100)})
		r.nodes = append(r.nodes, n)
		if i == 0 {
			r.primary.Store(n)
		}
	}
	for _, c := range []struct {
		name string
		tok  Token
	}{{"no-token", Token{}}, {"token", Token{lsn: 900, issued: time.Now()}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if n := r.pickReader(c.tok, nil); n == nil || n.name != "1" {
					b.Fatalf("picked %v, want the replica in bounds", n)
				}
			}
		})
	}
}
