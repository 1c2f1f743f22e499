package edgeadmin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/muejam/edge/internal/testenv/testcaddy"
)

func TestStatusThroughCaddyAdmin(t *testing.T) {
	testcaddy.Load(t, fmt.Sprintf(`
	{
		admin localhost:%d
		http_port %d
		https_port %d
	}
	`, testcaddy.AdminPort, testcaddy.HTTPPort, testcaddy.HTTPSPort), "caddyfile")

	resp, err := http.Get(testcaddy.AdminURL + "/edge/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /edge/status: status %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding body: %v", err)
	}
	if st.GoVersion != runtime.Version() {
		t.Errorf("go_version = %q, want %q", st.GoVersion, runtime.Version())
	}
	// A test binary carries no module versions, so Caddy reports "unknown" here; the
	// end-to-end test checks the pinned version through the built bin/caddy.
	if _, full := caddy.Version(); st.CaddyVersion != full {
		t.Errorf("caddy_version = %q, want %q", st.CaddyVersion, full)
	}
	if st.Edge.Path != "github.com/muejam/edge" {
		t.Errorf("edge.path = %q", st.Edge.Path)
	}
	want := ModuleInfo{ID: "admin.api.edge", Package: "github.com/muejam/edge/modules/edgeadmin"}
	found := false
	for _, m := range st.Modules {
		if !strings.HasPrefix(m.Package, ModulePrefix) {
			t.Errorf("module %s from %s is not one of ours", m.ID, m.Package)
		}
		found = found || m == want
	}
	if !found {
		t.Errorf("modules %+v do not include %+v", st.Modules, want)
	}

	post, err := http.Post(testcaddy.AdminURL+"/edge/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /edge/status: status %d, want 405", post.StatusCode)
	}
}

// testRoutes numbers the routes TestRegisterAddsRoutesUnderEdge registers.
var testRoutes atomic.Int64

func TestRegisterAddsRoutesUnderEdge(t *testing.T) {
	h := caddy.AdminHandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	route := fmt.Sprintf("/edge/test-route-%d", testRoutes.Add(1)) // a new one each run (-count)
	Register(route, h)
	var patterns []string
	for _, r := range (Admin{}).Routes() {
		patterns = append(patterns, r.Pattern)
	}
	if len(patterns) < 3 || patterns[0] != "/edge/status" || patterns[len(patterns)-2] != route || patterns[len(patterns)-1] != "POST /load" {
		t.Errorf("routes = %v", patterns)
	}
	for _, bad := range []string{"/config/x", route, "/edge/status"} { // outside, twice, reserved
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", bad)
				}
			}()
			Register(bad, h)
		}()
	}
}
