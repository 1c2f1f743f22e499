// Package httpmetrics measures the app server's HTTP requests for Prometheus, labelled by the
// ServeMux pattern that served them, never by the raw path.
package httpmetrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/appserver/reqid"
)

// Buckets are the latency buckets of every MueJam request histogram; they resolve the seed's
// alert thresholds of 1 s and 2 s.
var Buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10}

// Metrics holds the request counter and latency histogram.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_app_http_requests_total",
			Help: "HTTP requests served by the app server, by route pattern, method and status class.",
		}, []string{"route", "method", "status_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "muejam_app_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request in the app server, by route pattern and method.",
			Buckets: Buckets,
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Wrap measures every request served by mux. Requests that match no pattern are counted
// under route "unmatched".
func (m *Metrics) Wrap(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		route := r.Pattern
		if info := reqid.FromContext(r.Context()); route == "" && info != nil {
			// Middleware inside gave the ServeMux a request of its own (WithContext).
			route = info.Route
		}
		if route == "" {
			route = "unmatched"
		}
		method := r.Method
		if !knownMethod(method) {
			method = "other"
		}
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(route, method, strconv.Itoa(sw.status/100)+"xx").Inc()
	})
}

func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
