package circuitbreaker

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalHandler(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Handler
		wantErr string
	}{
		{name: "bare", input: `circuit_breaker`, want: Handler{}},
		{name: "key argument", input: `circuit_breaker {http.request.host}/api`, want: Handler{Key: "{http.request.host}/api"}},
		{name: "full", input: `circuit_breaker {
			key {http.request.uri.path.0}
			max_breakers 20
			consecutive_failures 5
			failure_ratio 50%
			slow_ratio 0.25
			slow_threshold 250ms
			min_requests 20
			window 30s
			open_duration 5s
			max_open_duration 1m
			half_open_probes 3
			failure_status 5xx 429
			probe /v1/health?deep=0 {
				upstreams 10.0.1.5:8081 https://app.internal:8443
				upstreams 10.0.2.5:8081
				interval 500ms
				timeout 2s
				status 2xx 304
			}
		}`, want: Handler{Key: "{http.request.uri.path.0}", MaxBreakers: 20, Policy: Policy{
			ConsecutiveFailures: 5, FailureRatio: 0.5, SlowRatio: 0.25, SlowThreshold: caddy.Duration(250 * time.Millisecond),
			MinRequests: 20, Window: caddy.Duration(30 * time.Second), OpenDuration: caddy.Duration(5 * time.Second),
			MaxOpenDuration: caddy.Duration(time.Minute), HalfOpenProbes: 3, FailureStatus: []int{5, 429},
			Probe: &Probe{Path: "/v1/health?deep=0", Upstreams: []string{"10.0.1.5:8081", "https://app.internal:8443", "10.0.2.5:8081"},
				Interval: caddy.Duration(500 * time.Millisecond), Timeout: caddy.Duration(2 * time.Second), Status: []int{2, 304}},
		}}},
		{name: "probe without a block", input: "circuit_breaker {\n\tprobe /h\n}", wantErr: "the health endpoint), at Testfile:2"},
		{name: "probe without a path", input: "circuit_breaker {\n\tprobe {\n\t\tupstreams a:1\n\t}\n}", wantErr: "wrong argument count"},
		{name: "probe relative path", input: "circuit_breaker {\n\tprobe health {\n\t\tupstreams a:1\n\t}\n}", wantErr: "does not start with /, at Testfile:2"},
		{name: "probe bad upstream", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams app\n\t}\n}", wantErr: "not host:port or an http(s) URL, at Testfile:3"},
		{name: "probe no upstreams", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams\n\t}\n}", wantErr: "wrong argument count"},
		{name: "probe bad interval", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t\tinterval 0\n\t}\n}", wantErr: "interval: \"0\" is not a positive duration, at Testfile:4"},
		{name: "probe bad status", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t\tstatus 2xx 700\n\t}\n}", wantErr: `status: "700" is not a status code`},
		{name: "probe unknown option", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstream a:1\n\t}\n}", wantErr: `unrecognized probe option "upstream", at Testfile:3`},
		{name: "probe twice", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t}\n\tprobe /h\n}", wantErr: "given twice, at Testfile:5"},
		{name: "two key arguments", input: `circuit_breaker a b`, wantErr: "wrong argument count"},
		{name: "unknown option", input: "circuit_breaker {\n\tconsecutive 5\n}", wantErr: `unrecognized circuit_breaker option "consecutive", at Testfile:2`},
		{name: "ratio above 1", input: "circuit_breaker {\n\tfailure_ratio 1.5\n}", wantErr: "Testfile:2"},
		{name: "percent above 100", input: "circuit_breaker {\n\tfailure_ratio 150%\n}", wantErr: "not a ratio"},
		{name: "zero ratio", input: "circuit_breaker {\n\tslow_ratio 0\n}", wantErr: "not a ratio"},
		{name: "zero failures", input: "circuit_breaker {\n\tconsecutive_failures 0\n}", wantErr: "at least 1"},
		{name: "not a number", input: "circuit_breaker {\n\thalf_open_probes many\n}", wantErr: "not a whole number"},
		{name: "bad duration", input: "circuit_breaker {\n\topen_duration soon\n}", wantErr: "not a positive duration"},
		{name: "negative duration", input: "circuit_breaker {\n\twindow -1s\n}", wantErr: "not a positive duration"},
		{name: "missing value", input: "circuit_breaker {\n\topen_duration\n}", wantErr: "wrong argument count"},
		{name: "extra value", input: "circuit_breaker {\n\tmin_requests 1 2\n}", wantErr: "wrong argument count"},
		{name: "bad status", input: "circuit_breaker {\n\tfailure_status 600\n}", wantErr: "not a status code"},
		{name: "no status", input: "circuit_breaker {\n\tfailure_status\n}", wantErr: "wrong argument count"},
		{name: "slow ratio without threshold", input: "circuit_breaker {\n\tslow_ratio 0.5\n}", wantErr: "slow call ratio needs a positive slow call threshold"},
		{name: "cap below open duration", input: "circuit_breaker {\n\topen_duration 1m\n\tmax_open_duration 10s\n}", wantErr: "max open duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("got %+v\nwant %+v", h, tc.want)
			}
		})
	}
}

func TestUnmarshalTransport(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		check   func(*Transport) bool
		wantErr string
	}{
		{name: "policy and http options", input: `circuit_breaker {
			consecutive_failures 3
			http {
				dial_timeout 2s
				response_header_timeout 5s
			}
		}`, check: func(tr *Transport) bool {
			return tr.ConsecutiveFailures == 3 && tr.DialTimeout == caddy.Duration(2*time.Second) &&
				tr.ResponseHeaderTimeout == caddy.Duration(5*time.Second)
		}},
		{name: "bare", input: `circuit_breaker`, check: func(tr *Transport) bool { return reflect.DeepEqual(tr.Policy, Policy{}) }},
		{name: "probe", input: `circuit_breaker {
			probe /v1/health {
				interval 250ms
			}
		}`, check: func(tr *Transport) bool {
			return reflect.DeepEqual(tr.Probe, &Probe{Path: "/v1/health", Interval: caddy.Duration(250 * time.Millisecond)})
		}},
		{name: "probe upstreams", input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t}\n}", wantErr: "leave them out, at Testfile:3"},
		{name: "argument", input: `circuit_breaker x`, wantErr: "wrong argument count"},
		{name: "bad http option", input: "circuit_breaker {\n\thttp {\n\t\tdial_timeout never\n\t}\n}", wantErr: "Testfile:3"},
		{name: "handler-only option", input: "circuit_breaker {\n\tmax_breakers 3\n}", wantErr: "unrecognized circuit_breaker option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr Transport
			err := tr.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(&tr) {
				t.Errorf("unexpected result %+v", tr)
			}
		})
	}
}
