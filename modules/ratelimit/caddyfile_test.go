package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/muejam/edge/internal/adapttest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	adapttest.Unmarshal(t, []adapttest.UnmarshalCase[Handler]{
		{Name: "zones and options", Input: `edge_rate_limit {
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
		}`, Check: func(t *testing.T, h *Handler) {
			if len(h.Zones) != 2 || h.Zones[0].Name != "user" || h.Zones[0].Events != 100 ||
				time.Duration(h.Zones[0].Window) != time.Minute || !h.Zones[1].DryRun ||
				!h.Valkey.Configured() || h.Valkey.Addresses[0] != "127.0.0.1:56379" || h.FallbackShare != 3 {
				t.Errorf("parsed %+v", h)
			}
		}},
		{Name: "platform options", Input: `edge_rate_limit {
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
		}`, Check: func(t *testing.T, h *Handler) {
			if len(h.ExemptRaw) != 2 || h.ExemptRaw[0]["path"] == nil || h.ExemptRaw[1]["remote_ip"] == nil ||
				h.IPv4Prefix != 24 || h.IPv6Prefix != 56 || !h.Valkey.Cluster || len(h.Valkey.Addresses) != 2 {
				t.Errorf("parsed %+v (valkey %+v)", h, h.Valkey)
			}
		}},
		{Name: "ipv6 prefix too long", Input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			ipv6_prefix 129
		}`, WantErr: "more bits than an address has"},
		{Name: "ipv4 prefix zero", Input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			ipv4_prefix 0
		}`, WantErr: "at least 1"},
		{Name: "empty exempt", Input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 1m
			}
			exempt {
			}
		}`, WantErr: "at least one matcher"},
		{Name: "no zone", Input: `edge_rate_limit {
			valkey 127.0.0.1:56379
		}`, WantErr: "at least one zone"},
		{Name: "zero window", Input: `edge_rate_limit {
			zone a {
				key all
				events 1
				window 0s
			}
		}`, WantErr: "window"},
		{Name: "missing window", Input: `edge_rate_limit {
			zone a {
				key all
				events 1
			}
		}`, WantErr: "window must be positive"},
		{Name: "negative events", Input: `edge_rate_limit {
			zone a {
				key all
				events -1
				window 1m
			}
		}`, WantErr: "not a whole number of at least 1"},
		{Name: "zero events", Input: `edge_rate_limit {
			zone a {
				key all
				events 0
				window 1m
			}
		}`, WantErr: "at least 1"},
		{Name: "unknown placeholder", Input: `edge_rate_limit {
			zone a {
				key {http.auth.usr.id}{cookie.x}
				events 1
				window 1m
			}
		}`, WantErr: "unknown placeholder {cookie.x}"},
		{Name: "duplicate zone", Input: `edge_rate_limit {
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
		}`, WantErr: "defined twice"},
		{Name: "bad zone name", Input: `edge_rate_limit {
			zone a:b {
				key all
				events 1
				window 1m
			}
		}`, WantErr: "zone name"},
		{Name: "unknown option", Input: `edge_rate_limit {
			burst 3
		}`, WantErr: "unrecognized"},
	})
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
