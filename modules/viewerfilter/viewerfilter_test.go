package viewerfilter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/internal/blockers"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

func TestCaddyfile(t *testing.T) {
	tests := []struct {
		in, err string
		header  string
		addrs   int
	}{
		{in: "viewer_filter {\n valkey 127.0.0.1:6379\n}", header: "", addrs: 1},
		{in: "viewer_filter {\n valkey 10.0.0.1:6379,10.0.0.2:6379 {\n cluster\n }\n header X-Filter\n}", header: "X-Filter", addrs: 2},
		{in: "viewer_filter", err: "a valkey address is required"},
		{in: "viewer_filter {\n valkey \"\"\n}", err: "a valkey address is required"},
		{in: "viewer_filter {\n valkey 127.0.0.1:6379\n shared\n}", err: `unrecognized option "shared"`},
		{in: "viewer_filter {\n valkey 127.0.0.1:6379\n header\n}", err: "wrong argument count"},
		{in: "viewer_filter extra {\n valkey 127.0.0.1:6379\n}", err: "wrong argument count"},
	}
	for _, tt := range tests {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.in))
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want one containing %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case h.Header != tt.header || len(h.Valkey.Addresses) != tt.addrs:
			t.Errorf("%q: header %q, %d addresses; want %q, %d", tt.in, h.Header, len(h.Valkey.Addresses), tt.header, tt.addrs)
		}
	}
}

// TestServeHTTP: the field is set on every request, replacing the client's: empty for
// anonymous requests and users the set says block nobody, the user id for a blocker and for
// everyone signed in while the set is not trusted (here: before it is loaded, and once
// Valkey is gone).
func TestServeHTTP(t *testing.T) {
	v := testenv.StartValkey(t)
	// The edge node's connection and the app server's: separate, as deployed (one
	// connection holds one subscription to a channel, however many follow it).
	connect := func() *valkeyconn.Conn {
		c, err := valkeyconn.New(valkeyconn.Config{Addresses: []string{v.Addr}}, valkeyconn.Options{Name: "viewer_filter test", OpenFor: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	log := zaptest.NewLogger(t)
	f := blockers.NewFollower(connect(), log)
	t.Cleanup(f.Close)
	h := &Handler{Header: DefaultHeader, follower: f}

	serve := func(user string) []string {
		r := httptest.NewRequest("GET", "/v1/discover", nil)
		r.Header.Set(DefaultHeader, "forged") // whatever the client sent
		repl := caddy.NewReplacer()
		if user != "" {
			repl.Set("http.auth.user.id", user)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		var seen []string
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r.Header.Values(DefaultHeader)
			return nil
		})
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	check := func(when, user, want string) {
		t.Helper()
		if got := serve(user); len(got) != 1 || got[0] != want {
			t.Errorf("%s, user %q: %s = %q, want [%q]", when, user, DefaultHeader, got, want)
		}
	}
	check("not loaded yet", "", "")
	check("not loaded yet", "reader", "reader")

	w := blockers.NewWriter(connect(), time.Second, func(context.Context) ([]string, error) { return []string{"blocker"}, nil }, log)
	t.Cleanup(w.Close)
	testenv.Eventually(t, 5*time.Second, "the set trusted", f.Trusted)
	check("loaded", "", "")
	check("loaded", "reader", "")
	check("loaded", "blocker", "blocker")
	if err := w.Add(context.Background(), "reader"); err != nil {
		t.Fatal(err)
	}
	check("after reader's add", "reader", "reader")

	v.Stop(t)
	testenv.Eventually(t, 5*time.Second, "the set no longer trusted after Valkey stopped", func() bool { return !f.Trusted() })
	check("valkey down", "other", "other")
	check("valkey down", "", "")
}
