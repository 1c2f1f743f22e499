package httpmetrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
