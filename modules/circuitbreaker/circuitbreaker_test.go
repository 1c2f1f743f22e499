package circuitbreaker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func TestPolicyFailed(t *testing.T) {
	def := Policy{}
	custom := Policy{FailureStatus: []int{5, 429}}
	for _, tc := range []struct {
		status      int
		def, custom bool
	}{
		{200, false, false}, {404, false, false}, {429, false, true}, {500, true, true},
		{501, false, true}, {502, true, true}, {503, true, true}, {504, true, true}, {599, true, true},
	} {
		if got := def.failed(tc.status); got != tc.def {
			t.Errorf("default: failed(%d) = %v", tc.status, got)
		}
		if got := custom.failed(tc.status); got != tc.custom {
			t.Errorf("5xx 429: failed(%d) = %v", tc.status, got)
		}
	}
}

// provisionHandler provisions h in a fresh Caddy context and cleans it up after the test.
func provisionHandler(t testing.TB, h *Handler) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
}

// newRequest returns a request that carries a replacer and vars, as Caddy's server makes them.
func newRequest(ctx context.Context) *http.Request {
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://unit.test/", nil)
	repl := caddy.NewReplacer()
	ctx = context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	r = r.WithContext(ctx)
	repl.Set("http.request.host", "unit.test")
	return r
}

// TestHandlerOutcomes checks what the handler counts: failing statuses and handler errors
// count, 501 and client cancellations do not, and a transport short-circuit is answered with
// the 503 document without counting.
func TestHandlerOutcomes(t *testing.T) {
	h := &Handler{Key: "unit-{http.request.host}", Policy: Policy{ConsecutiveFailures: 100}}
	provisionHandler(t, h)
	serve := func(ctx context.Context, next caddyhttp.HandlerFunc) (*httptest.ResponseRecorder, error) {
		w := httptest.NewRecorder()
		return w, h.ServeHTTP(w, newRequest(ctx), next)
	}
	status := func(code int) caddyhttp.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(code); return nil }
	}
	for _, next := range []caddyhttp.HandlerFunc{status(200), status(501), status(404)} {
		if _, err := serve(context.Background(), next); err != nil {
			t.Fatal(err)
		}
	}
	for _, next := range []caddyhttp.HandlerFunc{
		status(500),
		func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, errors.New("dial"))
		},
		func(http.ResponseWriter, *http.Request) error { return errors.New("plain error") },
	} {
		_, _ = serve(context.Background(), next) // the route's error goes on to Caddy
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = serve(canceled, func(http.ResponseWriter, *http.Request) error { return context.Canceled })

	open := func(w http.ResponseWriter, r *http.Request) error {
		oe := &openError{name: "10.0.0.1:80", retryAfter: 2500 * time.Millisecond}
		noteOpen(r, oe)
		return caddyhttp.Error(http.StatusBadGateway, reverseproxy.NewDialError(oe))
	}
	w, err := serve(context.Background(), open)
	if err != nil {
		t.Fatalf("a transport short-circuit returned %v, want the handler to answer it", err)
	}
	if w.Code != 503 || w.Header().Get("Retry-After") != "3" || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("short-circuit answer: %d %v", w.Code, w.Header())
	}
	s := find("unit-unit.test").Snapshot()
	if s.Calls != 6 || s.Failures != 3 {
		t.Errorf("snapshot %+v, want 6 calls (3 failures); 501, 404, cancellation and short-circuit not failures", s)
	}
}

// TestHandlerMaxBreakers: keys over the limit pass unguarded.
func TestHandlerMaxBreakers(t *testing.T) {
	h := &Handler{Key: "max-{http.request.uri.path}", MaxBreakers: 2}
	provisionHandler(t, h)
	for _, path := range []string{"/a", "/b", "/c"} {
		r := newRequest(context.Background())
		r.URL.Path = path
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		repl.Set("http.request.uri.path", path)
		if err := h.ServeHTTP(httptest.NewRecorder(), r, status200); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, s := range snapshots() {
		if len(s.Name) > 4 && s.Name[:4] == "max-" {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"max-/a", "max-/b"}) {
		t.Errorf("breakers %v, want only the first 2 keys", names)
	}
}

var status200 = caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusOK)
	return nil
})

// BenchmarkShortCircuit measures the handler's answer when its breaker is open.
func BenchmarkShortCircuit(b *testing.B) {
	h := &Handler{Key: "bench", Policy: Policy{OpenDuration: caddy.Duration(time.Hour)}}
	provisionHandler(b, h)
	e, err := h.owner.get("bench")
	if err != nil {
		b.Fatal(err)
	}
	e.b.Load().ForceOpen()
	r := newRequest(context.Background())
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, r, status200); err != nil || w.code != 503 {
			b.Fatalf("status %d, err %v", w.code, err)
		}
	}
}

// discardWriter is a reusable ResponseWriter for benchmarks.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
