package errtrack_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/muejam/edge/appserver/errtrack"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/reqid"
)

func panics() { panic("boom") }

// count is muejam_app_errors_total{kind}.
func count(t *testing.T, kind string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(errtrack.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series of kind %s", kind)
	return 0
}

func TestRecover(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /explode/{n}", func(http.ResponseWriter, *http.Request) { panics() })
	h := reqid.Middleware(identity.DefaultTrusted, nil)(errtrack.Recover(zap.New(core))(
		identity.Middleware(identity.DefaultTrusted)(reqid.Observe(mux))))
	before := count(t, errtrack.KindPanic)

	var prints []string
	for range 2 {
		r := httptest.NewRequest("POST", "/explode/1", nil)
		r.RemoteAddr = "127.0.0.1:4000"
		r.Header.Set(reqid.Header, "req-42")
		r.Header.Set(identity.Header, "alice")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var body struct {
			Error struct {
				Code      string `json:"code"`
				RequestID string `json:"request_id"`
			} `json:"error"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != 500 || body.Error.RequestID != "req-42" || body.Error.Code != "internal" {
			t.Fatalf("got %d %s", w.Code, w.Body)
		}
		lines := logs.TakeAll()
		if len(lines) != 1 {
			t.Fatalf("%d lines", len(lines))
		}
		f := lines[0].ContextMap()
		if lines[0].Level != zapcore.ErrorLevel || f["panic"] != "boom" || f["route"] != "POST /explode/{n}" ||
			f["request_id"] != "req-42" || f["user"] != "alice" || !strings.Contains(f["stack"].(string), "errtrack_test.panics") {
			t.Errorf("line %v", f)
		}
		prints = append(prints, f["fingerprint"].(string))
	}
	if prints[0] != prints[1] || len(prints[0]) != 16 {
		t.Errorf("fingerprints %v", prints)
	}
	if got := count(t, errtrack.KindPanic) - before; got != 2 {
		t.Errorf("counted %v panics", got)
	}
}

func TestAbortHandlerPassesThrough(t *testing.T) {
	h := errtrack.Recover(zap.NewNop())(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	defer func() {
		if v := recover(); v != http.ErrAbortHandler { //nolint:errorlint // the sentinel itself
			t.Errorf("recovered %v", v)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}

func TestGo(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	errtrack.Go(zap.New(core), "job", panics)
	deadline := time.Now().Add(5 * time.Second)
	for logs.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.All(); len(l) != 1 || l[0].ContextMap()["goroutine"] != "job" {
		t.Errorf("%v", l)
	}
}
