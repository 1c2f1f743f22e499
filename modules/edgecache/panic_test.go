package edgecache

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/panics"
)

// TestServePanics: a panic while the handler serves a request (here, in the handler after
// it) is logged, counted and answered with a 500 problem document when no response has
// started; once one has, the response is aborted rather than ended as if complete; and an
// abort by a later handler (reverse_proxy's, when an upstream fails mid-body) goes on
// uncounted. The flight of the request is landed either way: the next request is served.
func TestServePanics(t *testing.T) {
	s, err := newStore(storeConfig{name: "panics", maxBytes: 1 << 20, maxTTL: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destruct()
	k, _ := newKeyer(nil, "", nil)
	h := &Handler{Name: "panics", keyer: k, store: s, MaxTTL: caddy.Duration(time.Hour), KeepStale: caddy.Duration(time.Minute),
		MaxBodyBytes: 1 << 20, CoalesceTimeout: caddy.Duration(time.Second), logger: zap.NewNop()}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		switch r.Header.Get("X-Test") {
		case "before":
			var m map[string]int
			m["x"] = 1 // a bug: a nil map write
		case "after":
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("half a bo"))
			panic("a bug after the header went out")
		case "abort":
			w.WriteHeader(http.StatusOK)
			panic(http.ErrAbortHandler)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		_, err := w.Write([]byte("whole body"))
		return err
	})
	counted := func() float64 { return testutil.ToFloat64(panics.Total.WithLabelValues(whereServe)) }
	serve := func(method, test string) (w *httptest.ResponseRecorder, aborted bool, err error) {
		r := httptest.NewRequest(method, "http://edge.test/story/1", nil)
		r.Header.Set("X-Test", test)
		w = httptest.NewRecorder()
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					t.Fatalf("%s %s: panic %v, want none or http.ErrAbortHandler", method, test, v)
				}
				aborted = true
			}
		}()
		return w, false, h.ServeHTTP(w, r, next)
	}

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		before := counted()
		w, aborted, err := serve(method, "before")
		if err != nil || aborted || w.Code != http.StatusInternalServerError ||
			w.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(w.Body.String(), `"status":500`) {
			t.Fatalf("%s, a panic before the response: %d %q %q, error %v, aborted %t; want a 500 problem document",
				method, w.Code, w.Header().Get("Content-Type"), w.Body.String(), err, aborted)
		}
		if got := counted() - before; got != 1 {
			t.Errorf("%s: counted %v panics, want 1", method, got)
		}

		before = counted()
		if w, aborted, _ := serve(method, "after"); !aborted {
			t.Fatalf("%s, a panic after the header: %d %q, not aborted", method, w.Code, w.Body.String())
		}
		if got := counted() - before; got != 1 {
			t.Errorf("%s: counted %v panics, want 1", method, got)
		}

		before = counted()
		if _, aborted, _ := serve(method, "abort"); !aborted {
			t.Fatalf("%s: a later handler's abort did not go on", method)
		}
		if got := counted() - before; got != 0 {
			t.Errorf("%s: counted %v panics for an abort, want 0", method, got)
		}
	}
	if w, aborted, err := serve(http.MethodGet, ""); err != nil || aborted || w.Code != http.StatusOK || w.Body.String() != "whole body" {
		t.Fatalf("after the panics: %d %q, %v, aborted %t", w.Code, w.Body.String(), err, aborted)
	}
}
