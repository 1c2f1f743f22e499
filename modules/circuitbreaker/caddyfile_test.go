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
		}`, want: Handler{Key: "{http.request.uri.path.0}", MaxBreakers: 20, Policy: Policy{
			ConsecutiveFailures: 5, FailureRatio: 0.5, SlowRatio: 0.25, SlowThreshold: caddy.Duration(250 * time.Millisecond),
			MinRequests: 20, Window: caddy.Duration(30 * time.Second), OpenDuration: caddy.Duration(5 * time.Second),
			MaxOpenDuration: caddy.Duration(time.Minute), HalfOpenProbes: 3, FailureStatus: []int{5, 429},
		}}},
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
