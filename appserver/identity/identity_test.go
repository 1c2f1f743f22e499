package identity

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestMiddlewareTrustsOnlyEdgeNetworks(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name, remote, header string
		want                 string
	}{
		{"trusted v4", "10.1.2.3:5000", "alice", "alice"},
		{"trusted v6", "[::1]:5000", "alice", "alice"},
		{"v4-mapped v6 in a trusted v4 net", "[::ffff:10.1.2.3]:5000", "alice", "alice"},
		{"untrusted", "10.2.0.1:5000", "alice", ""},
		{"loopback not configured", "127.0.0.1:5000", "alice", ""},
		{"no header", "10.1.2.3:5000", "", ""},
		{"control character", "10.1.2.3:5000", "al\x00ice", ""},
		{"too long", "10.1.2.3:5000", strings.Repeat("a", MaxUserIDLen+1), ""},
		{"garbage remote", "nonsense", "alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, seen string
			h := Middleware(trusted)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, _ = User(r.Context())
				seen = r.Header.Get(Header)
			}))
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.header != "" {
				r.Header.Set(Header, tt.header)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tt.want {
				t.Errorf("user = %q, want %q", got, tt.want)
			}
			if seen != "" {
				t.Errorf("handler still sees %s: %q", Header, seen)
			}
		})
	}
}

// TestShares: only an empty X-Viewer-Filter (one field line) on a trusted request of a
// signed-in user says the user blocks nobody; absent, non-empty, repeated or untrusted says
// nothing, and the field never reaches a handler.
func TestShares(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	tests := []struct {
		name, remote, user string
		filter             []string // nil: no field
		want               bool
	}{
		{"empty from the edge", "10.1.2.3:5000", "alice", []string{""}, true},
		{"the user's own id", "10.1.2.3:5000", "alice", []string{"alice"}, false},
		{"absent (an edge without viewer_filter)", "10.1.2.3:5000", "alice", nil, false},
		{"twice", "10.1.2.3:5000", "alice", []string{"", ""}, false},
		{"untrusted", "10.2.0.1:5000", "alice", []string{""}, false},
		{"anonymous", "10.1.2.3:5000", "", []string{""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bool
			var seen []string
			h := Middleware(trusted)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = Shares(r.Context())
				seen = r.Header.Values(FilterHeader)
			}))
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.user != "" {
				r.Header.Set(Header, tt.user)
			}
			for _, v := range tt.filter {
				r.Header.Add(FilterHeader, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tt.want {
				t.Errorf("Shares = %v, want %v", got, tt.want)
			}
			if len(seen) > 0 {
				t.Errorf("handler still sees %s: %q", FilterHeader, seen)
			}
		})
	}
}
