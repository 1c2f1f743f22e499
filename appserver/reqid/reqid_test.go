package reqid_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/reqid"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestMiddleware(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	core, logs := observer.New(zapcore.InfoLevel)
	var seen *reqid.Info
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		seen = reqid.FromContext(r.Context())
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("short"))
	})
	h := reqid.Middleware(trusted, reqid.AccessLog(zap.New(core)))(identity.Middleware(trusted)(reqid.Observe(mux)))

	for _, c := range []struct {
		name, remote, id, fwd string
		wantID, wantClient    string // wantID "" means a new UUID
	}{
		{"edge", "10.1.2.3:5000", "edge-1", "203.0.113.1, 198.51.100.2", "edge-1", "198.51.100.2"},
		{"edge without id", "10.1.2.3:5000", "", "198.51.100.2", "", "198.51.100.2"},
		{"edge with a bad id", "10.1.2.3:5000", "bad id\n", "", "", "10.1.2.3"},
		{"untrusted", "192.0.2.9:5000", "forged", "198.51.100.2", "", "192.0.2.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/things/7?email=a@example.com", nil)
			r.RemoteAddr = c.remote
			r.Header.Set(identity.Header, "alice")
			if c.id != "" {
				r.Header.Set(reqid.Header, c.id)
			}
			if c.fwd != "" {
				r.Header.Set("X-Forwarded-For", c.fwd)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			got := w.Header().Get(reqid.Header)
			if (c.wantID != "" && got != c.wantID) || (c.wantID == "" && !uuidRE.MatchString(got)) {
				t.Errorf("request id %q, want %q", got, c.wantID)
			}
			if seen == nil || seen.ID != got || seen.Client.String() != c.wantClient || seen.Route != "GET /things/{id}" ||
				seen.Status != http.StatusTeapot || seen.Bytes != 5 {
				t.Errorf("info %+v", seen)
			}
			wantUser := ""
			if strings.HasPrefix(c.remote, "10.") {
				wantUser = "alice"
			}
			if seen.User != wantUser {
				t.Errorf("user %q, want %q", seen.User, wantUser)
			}
			lines := logs.TakeAll()
			if len(lines) != 1 {
				t.Fatalf("%d access lines", len(lines))
			}
			f := lines[0].ContextMap()
			if f["route"] != "GET /things/{id}" || f["status"] != int64(418) || f["bytes"] != int64(5) ||
				f["request_id"] != got || f["user"] != wantUser || f["method"] != "GET" {
				t.Errorf("access line %v", f)
			}
		})
	}
}

func TestNewIsAUUID(t *testing.T) {
	a, b := reqid.New(), reqid.New()
	if !uuidRE.MatchString(a) || a == b {
		t.Errorf("%q %q", a, b)
	}
}

func TestUnmatchedRoute(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	h := reqid.Middleware(nil, reqid.AccessLog(zap.New(core)))(reqid.Observe(http.NotFoundHandler()))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/nowhere", nil))
	if f := logs.All()[0].ContextMap(); f["route"] != "unmatched" || f["status"] != int64(404) {
		t.Errorf("%v", f)
	}
}
