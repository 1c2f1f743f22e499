package circuitbreaker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
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
		{200, false, false}, {404, false, false}, {429, false, true}, {500, false, true},
		{501, false, true}, {502, true, true}, {503, true, true}, {504, true, true}, {599, false, true},
	} {
		if got := def.failed(tc.status); got != tc.def {
			t.Errorf("default: failed(%d) = %v", tc.status, got)
		}
		if got := custom.failed(tc.status); got != tc.custom {
			t.Errorf("5xx 429: failed(%d) = %v", tc.status, got)
		}
	}
}

func TestPolicyValidateProbe(t *testing.T) {
	for _, tc := range []struct {
		name        string
		probe       Probe
		ownUpstream bool
		wantErr     string
	}{
		{name: "handler", probe: Probe{Path: "/v1/health", Upstreams: []string{"10.0.1.5:8081", "https://app.internal:8443"}}},
		{name: "transport", probe: Probe{Path: "/v1/health?deep=0"}, ownUpstream: true},
		{name: "relative path", probe: Probe{Path: "v1/health", Upstreams: []string{"a:1"}}, wantErr: "does not start with /"},
		{name: "handler without upstreams", probe: Probe{Path: "/h"}, wantErr: "probe needs upstreams"},
		{name: "transport with upstreams", probe: Probe{Path: "/h", Upstreams: []string{"a:1"}}, ownUpstream: true, wantErr: "leave them out"},
		{name: "upstream without port", probe: Probe{Path: "/h", Upstreams: []string{"app"}}, wantErr: "not host:port"},
		{name: "upstream with a path", probe: Probe{Path: "/h", Upstreams: []string{"http://app:80/x"}}, wantErr: "without a path"},
		{name: "upstream of another scheme", probe: Probe{Path: "/h", Upstreams: []string{"ftp://app:21"}}, wantErr: "http(s) URL"},
		{name: "bad status", probe: Probe{Path: "/h", Upstreams: []string{"a:1"}, Status: []int{99}}, wantErr: "probe status 99"},
		{name: "negative interval", probe: Probe{Path: "/h", Upstreams: []string{"a:1"}, Interval: -1}, wantErr: "interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Probe: &tc.probe}
			err := p.validate(tc.ownUpstream)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("validate: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	pr := &Probe{Path: "/v1/health", Upstreams: []string{"10.0.1.5:8081", "https://app.internal:8443/"}}
	pr.provision()
	if got := strings.Join(pr.urls, " "); got != "http://10.0.1.5:8081/v1/health https://app.internal:8443/v1/health" {
		t.Errorf("probe URLs %s", got)
	}
	if time.Duration(pr.Interval) != 250*time.Millisecond || time.Duration(pr.Timeout) != time.Second || !pr.healthy(204) || pr.healthy(503) {
		t.Errorf("probe defaults %+v", pr)
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

func status(code int) caddyhttp.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(code); return nil }
}

func fail(code int, err error) caddyhttp.HandlerFunc {
	return func(http.ResponseWriter, *http.Request) error { return caddyhttp.Error(code, err) }
}

// refused is the error reverse_proxy fails with when a connection is refused.
var refused = reverseproxy.NewDialError(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})

// TestHandlerOutcomes checks what the handler counts, one request per case on a fresh
// breaker: only the upstream's health (connection errors, timeouts, 502/503/504, every
// upstream short-circuited) fails; a 500 that a client can provoke, 501, 4xx, client
// cancellations and broken request bodies do not.
func TestHandlerOutcomes(t *testing.T) {
	shortCircuit := func(w http.ResponseWriter, r *http.Request) error {
		oe := &openError{name: "10.0.0.1:80", retryAfter: 2500 * time.Millisecond}
		noteOpen(r, oe)
		return caddyhttp.Error(http.StatusBadGateway, reverseproxy.NewDialError(oe))
	}
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	readBody := func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.ReadAll(r.Body)
		return caddyhttp.Error(http.StatusBadGateway, err)
	}
	for _, tc := range []struct {
		name    string
		next    caddyhttp.HandlerFunc
		cancel  bool
		body    io.Reader
		failure bool
		ignored bool
	}{
		{name: "200", next: status(200)},
		{name: "404", next: status(404)},
		{name: "500 response", next: status(500)},
		{name: "501 response", next: status(501)},
		{name: "500 error", next: fail(500, errors.New("template failed"))},
		{name: "plain error", next: func(http.ResponseWriter, *http.Request) error { return errors.New("plain") }},
		{name: "502 response", next: status(502), failure: true},
		{name: "503 response", next: status(503), failure: true},
		{name: "504 response", next: status(504), failure: true},
		{name: "refused", next: fail(502, refused), failure: true},
		{name: "refused under another status", next: fail(418, refused), failure: true},
		{name: "timeout", next: fail(504, timeout), failure: true},
		{name: "every upstream open", next: shortCircuit, failure: true},
		{name: "client gone", next: func(http.ResponseWriter, *http.Request) error { return context.Canceled }, cancel: true, ignored: true},
		{name: "body broke off", next: readBody, body: iotest.ErrReader(io.ErrUnexpectedEOF), ignored: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Key: "outcome-" + tc.name, Policy: Policy{ConsecutiveFailures: 100}}
			provisionHandler(t, h)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			r := newRequest(ctx)
			if tc.body != nil {
				r.Body = io.NopCloser(tc.body)
			}
			_ = h.ServeHTTP(httptest.NewRecorder(), r, tc.next)
			s := find(h.Key).Snapshot()
			wantCalls, wantFailures := 1, 0
			if tc.ignored {
				wantCalls = 0
			}
			if tc.failure {
				wantFailures = 1
			}
			if s.Calls != wantCalls || s.Failures != wantFailures {
				t.Errorf("counted %d calls, %d failures; want %d, %d", s.Calls, s.Failures, wantCalls, wantFailures)
			}
		})
	}
}

// TestHandlerCountsTheProxysOwnErrors: with failure_status 502 504 (the app's own 503s are
// answers from a healthy task), a 503 the proxy fails with itself, having no upstream left
// (passive health marked them all down), still counts; the app's 503 answer does not.
func TestHandlerCountsTheProxysOwnErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		next    caddyhttp.HandlerFunc
		failure bool
	}{
		{"no upstreams available", fail(http.StatusServiceUnavailable, errors.New("no upstreams available")), true},
		{"proxy 502 error", fail(http.StatusBadGateway, errors.New("upstream gone")), true},
		{"app answers 503", status(http.StatusServiceUnavailable), false},
		{"app answers 502", status(http.StatusBadGateway), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Key: "own-" + tc.name, Policy: Policy{ConsecutiveFailures: 100, FailureStatus: []int{502, 504}}}
			provisionHandler(t, h)
			_ = h.ServeHTTP(httptest.NewRecorder(), newRequest(context.Background()), tc.next)
			s := find(h.Key).Snapshot()
			if want := map[bool]int{true: 1}[tc.failure]; s.Calls != 1 || s.Failures != want {
				t.Errorf("counted %d calls, %d failures; want 1, %d", s.Calls, s.Failures, want)
			}
		})
	}
}

// TestHandlerAnswersEdgeErrors: every 502, 503 or 504 that the rest of the route fails
// with is answered with a problem document and Retry-After; other errors, and errors after
// a response went out, go on to Caddy.
func TestHandlerAnswersEdgeErrors(t *testing.T) {
	h := &Handler{Key: "edge-errors", Policy: Policy{ConsecutiveFailures: 100}}
	provisionHandler(t, h)
	written := func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return caddyhttp.Error(http.StatusBadGateway, errors.New("copying the body"))
	}
	for _, tc := range []struct {
		name       string
		next       caddyhttp.HandlerFunc
		wantStatus int // 0: the error goes on
		wantRetry  string
	}{
		{"dial error", fail(502, refused), 502, "1"},
		{"timeout", fail(504, errors.New("timeout awaiting response headers")), 504, "1"},
		{"no upstream", fail(503, errors.New("no upstreams available")), 503, "1"},
		{"500", fail(500, errors.New("internal")), 0, ""},
		{"404", fail(404, errors.New("not found")), 0, ""},
		{"after the headers", written, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			err := h.ServeHTTP(w, newRequest(context.Background()), tc.next)
			if tc.wantStatus == 0 {
				if err == nil {
					t.Fatalf("the error was answered (%d), want it to go on to Caddy", w.Code)
				}
				if w.Header().Get("Retry-After") != "" {
					t.Errorf("Retry-After %q on a passed-on error", w.Header().Get("Retry-After"))
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v, want the handler to answer", err)
			}
			checkProblem(t, w, tc.wantStatus, tc.wantRetry)
		})
	}
}

// checkProblem checks an answer of the edge's own: status, Retry-After, a problem document.
func checkProblem(t *testing.T, w *httptest.ResponseRecorder, status int, retry string) {
	t.Helper()
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	err := json.Unmarshal(w.Body.Bytes(), &p)
	if w.Code != status || w.Header().Get("Retry-After") != retry || err != nil || p.Status != status ||
		p.Title != http.StatusText(status) || w.Header().Get("Content-Type") != "application/problem+json" ||
		w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("answer %d %v %q, want %d with Retry-After %s and its problem document", w.Code, w.Header(), w.Body, status, retry)
	}
}

// TestRetryAfter: an open breaker's Retry-After is the open time left, or with a probe at
// most the probe interval; in whole seconds, at least 1.
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		probe *Probe
		want  string
	}{
		{"without probes: the open time left", nil, "30"},
		{"with probes: the next probe", &Probe{Path: "/h", Upstreams: []string{"127.0.0.1:9"}, Interval: caddy.Duration(3 * time.Second)}, "3"},
		{"a short interval rounds up", &Probe{Path: "/h", Upstreams: []string{"127.0.0.1:9"}}, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Key: "retry-" + tc.name, Policy: Policy{ConsecutiveFailures: 1, OpenDuration: caddy.Duration(30 * time.Second), Probe: tc.probe}}
			provisionHandler(t, h)
			_ = h.ServeHTTP(httptest.NewRecorder(), newRequest(context.Background()), status(503))
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, newRequest(context.Background()), status200); err != nil {
				t.Fatal(err)
			}
			checkProblem(t, w, 503, tc.want)
		})
	}
}

// TestDialInfoKey: probes hand the transport their dial info under the key reverse_proxy
// reads it from (the key is unexported in Caddy; this test fails if it changes).
func TestDialInfoKey(t *testing.T) {
	di := reverseproxy.DialInfo{Network: "unix", Address: "/run/app.sock"}
	got, ok := reverseproxy.GetDialInfo(context.WithValue(context.Background(), dialInfoKey, di))
	if !ok || got != di {
		t.Errorf("reverse_proxy reads %+v (%v) under dialInfoKey, want %+v", got, ok, di)
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
