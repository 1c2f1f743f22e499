package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		wantErr     string
		check       func(*testing.T, *Handler)
	}{
		{name: "zones and options", input: `edge_rate_limit {
			zone user {
				key {http.auth.user.id}
				events 100
				window 1m
			}
			zone global {
				key all
				events 1000
				window 1m
				dry_run
			}
			valkey 127.0.0.1:56379
			fallback_share 3
		}`, check: func(t *testing.T, h *Handler) {
			if len(h.Zones) != 2 || h.Zones[0].Name != "user" || h.Zones[0].Events != 100 ||
				time.Duration(h.Zones[0].Window) != time.Minute || !h.Zones[1].DryRun ||
				!h.Valkey.Configured() || h.Valkey.Addresses[0] != "127.0.0.1:56379" || h.FallbackShare != 3 {
				t.Errorf("parsed %+v", h)
			}
		}},
		{name: "platform options", input: `edge_rate_limit {
			zone global {
				key {http.rate_limit.client_prefix}
				events 1000
				window 1m
			}
			exempt {
				path /v1/health
				remote_ip private_ranges
			}
			exempt {
				remote_ip 127.0.0.1
			}
			ipv4_prefix 24
			ipv6_prefix 56
			valkey 10.0.0.1:6379,10.0.0.2:6379 {
				cluster
			}
		}`, check: func(t *testing.T, h *Handler) {
			if len(h.ExemptRaw) != 2 || h.ExemptRaw[0]["path"] == nil || h.ExemptRaw[1]["remote_ip"] == nil ||
				h.IPv4Prefix != 24 || h.IPv6Prefix != 56 || !h.Valkey.Cluster || len(h.Valkey.Addresses) != 2 {
				t.Errorf("parsed %+v (valkey %+v)", h, h.Valkey)
			}
		}},
		{name: "ipv6 prefix too long", input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			ipv6_prefix 129
		}`, wantErr: "more bits than an address has"},
		{name: "ipv4 prefix zero", input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			ipv4_prefix 0
		}`, wantErr: "at least 1"},
		{name: "empty exempt", input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			exempt {
			}
		}`, wantErr: "at least one matcher"},
		{name: "no zone", input: `edge_rate_limit {
			valkey 127.0.0.1:56379
		}`, wantErr: "at least one zone"},
		{name: "zero window", input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 0s
			}
		}`, wantErr: "window"},
		{name: "missing window", input: `edge_rate_limit {
			zone a {
				key all
				events 1
			}
		}`, wantErr: "window must be positive"},
		{name: "negative events", input: `edge_rate_limit {
			zone a {
				key all
				events -1
				window 1m
			}
		}`, wantErr: "not a whole number of at least 1"},
		{name: "zero events", input: `edge_rate_limit {
			zone a {
				key all
				events 0
				window 1m
			}
		}`, wantErr: "at least 1"},
		{name: "unknown placeholder", input: `edge_rate_limit {
			zone a {
				key {http.auth.usr.id}{cookie.x}
				events 1
				window 1m
			}
		}`, wantErr: "unknown placeholder {cookie.x}"},
		{name: "duplicate zone", input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			zone a {
				key all
				events 1
				window 1m
			}
		}`, wantErr: "defined twice"},
		{name: "bad zone name", input: `edge_rate_limit {
			zone a:b {
				key all
				events 1
				window 1m
			}
		}`, wantErr: "zone name"},
		{name: "unknown option", input: `edge_rate_limit {
			burst 3
		}`, wantErr: "unrecognized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := new(Handler)
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, h)
		})
	}
}

// TestAdaptErrorsHaveFileAndLine: `caddy adapt`/`caddy validate` name the file and line of
// a bad value.
func TestAdaptErrorsHaveFileAndLine(t *testing.T) {
	src := "http://127.0.0.1:9280 {\n\tedge_rate_limit {\n\t\tzone a {\n\t\t\tkey {foo.bar}\n\t\t\tevents 1\n\t\t\twindow 1m\n\t\t}\n\t}\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:4") || !strings.Contains(err.Error(), "unknown placeholder {foo.bar}") {
		t.Fatalf("err = %v, want Caddyfile:4 and the placeholder", err)
	}
}

func TestValidateJSON(t *testing.T) {
	for name, h := range map[string]*Handler{
		"no zones":       {},
		"zero window":    {Zones: []*Zone{{Name: "a", Key: "all", Events: 1}}},
		"negative share": {Zones: []*Zone{{Name: "a", Key: "all", Events: 1, Window: 1}}, FallbackShare: -1},
		"bad key":        {Zones: []*Zone{{Name: "a", Key: "{query.u}", Events: 1, Window: 1}}},
		"ipv6 prefix":    {Zones: []*Zone{{Name: "a", Key: "all", Events: 1, Window: 1}}, IPv6Prefix: 129},
		"ipv4 prefix":    {Zones: []*Zone{{Name: "a", Key: "all", Events: 1, Window: 1}}, IPv4Prefix: 33},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, h)
		}
	}
}

func TestTemplateRender(t *testing.T) {
	vals := map[string]string{"http.auth.user.id": "alice", "http.vars.client_ip": "192.0.2.1",
		"http.rate_limit.client_prefix": "2001:db8::/64"}
	get := func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
	for tmpl, want := range map[string]string{
		"all":                 "all",
		"{http.auth.user.id}": "alice",
		"u:{http.auth.user.id}@{http.vars.client_ip}": "u:alice@192.0.2.1",
		"{http.request.header.X}":                     "", // unset: the zone does not apply
		"{http.rate_limit.client_prefix}":             "2001:db8::/64",
		"u:{http.request.header.X}":                   "",
	} {
		tp, err := parseTemplate(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tp.render(get)
		if got != want || ok != (want != "") {
			t.Errorf("%s → %q %v, want %q", tmpl, got, ok, want)
		}
	}
}
