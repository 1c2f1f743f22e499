package httpmetrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/appserver/reqid"
)

func TestWrapLabelsByPatternNotPath(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stories/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
		}
	})
	h := m.Wrap(mux)
	for _, target := range []string{"/v1/stories/1", "/v1/stories/2", "/v1/stories/missing", "/elsewhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/v1/stories/1", nil))

	want := `
# HELP muejam_app_http_requests_total HTTP requests served by the app server, by route pattern, method and status class.
# TYPE muejam_app_http_requests_total counter
muejam_app_http_requests_total{method="GET",route="GET /v1/stories/{id}",status_class="2xx"} 2
muejam_app_http_requests_total{method="GET",route="GET /v1/stories/{id}",status_class="4xx"} 1
muejam_app_http_requests_total{method="GET",route="unmatched",status_class="4xx"} 1
muejam_app_http_requests_total{method="other",route="unmatched",status_class="4xx"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "muejam_app_http_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 3 {
		t.Errorf("duration series = %d, want 3 (pattern x method)", n)
	}
}

// TestWrapFindsThePatternBehindMiddleware: middleware between Wrap and the ServeMux that
// gives the ServeMux a request of its own (identity, read-your-writes) hides the pattern from
// Wrap's request; reqid.Observe records it for Wrap.
func TestWrapFindsThePatternBehindMiddleware(t *testing.T) {
	m := New(prometheus.NewRegistry())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/me", func(http.ResponseWriter, *http.Request) {})
	type key struct{}
	withContext := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), key{}, 1)))
		})
	}
	h := reqid.Middleware(nil, nil)(m.Wrap(withContext(reqid.Observe(mux))))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/me", nil))
	if n := testutil.ToFloat64(m.requests.WithLabelValues("GET /v1/me", "GET", "2xx")); n != 1 {
		t.Errorf("requests of GET /v1/me = %v, want 1", n)
	}
}
