package circuitbreaker

import (
	"reflect"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/muejam/edge/internal/adapttest"
)

func TestUnmarshalHandler(t *testing.T) {
	adapttest.Unmarshal(t, []adapttest.UnmarshalCase[Handler]{
		{Name: "bare", Input: `circuit_breaker`, Want: Handler{}},
		{Name: "key argument", Input: `circuit_breaker {http.request.host}/api`, Want: Handler{Key: "{http.request.host}/api"}},
		{Name: "full", Input: `circuit_breaker {
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
		}`, Want: Handler{Key: "{http.request.uri.path.0}", MaxBreakers: 20, Policy: Policy{
			ConsecutiveFailures: 5, FailureRatio: 0.5, SlowRatio: 0.25, SlowThreshold: caddy.Duration(250 * time.Millisecond),
			MinRequests: 20, Window: caddy.Duration(30 * time.Second), OpenDuration: caddy.Duration(5 * time.Second),
			MaxOpenDuration: caddy.Duration(time.Minute), HalfOpenProbes: 3, FailureStatus: []int{5, 429},
			Probe: &Probe{Path: "/v1/health?deep=0", Upstreams: []string{"10.0.1.5:8081", "https://app.internal:8443", "10.0.2.5:8081"},
				Interval: caddy.Duration(500 * time.Millisecond), Timeout: caddy.Duration(2 * time.Second), Status: []int{2, 304}},
		}}},
		{Name: "probe without a block", Input: "circuit_breaker {\n\tprobe /h\n}", WantErr: "the health endpoint), at Testfile:2"},
		{Name: "probe without a path", Input: "circuit_breaker {\n\tprobe {\n\t\tupstreams a:1\n\t}\n}", WantErr: "wrong argument count"},
		{Name: "probe relative path", Input: "circuit_breaker {\n\tprobe health {\n\t\tupstreams a:1\n\t}\n}", WantErr: "does not start with /, at Testfile:2"},
		{Name: "probe bad upstream", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams app\n\t}\n}", WantErr: "not host:port or an http(s) URL, at Testfile:3"},
		{Name: "probe no upstreams", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams\n\t}\n}", WantErr: "wrong argument count"},
		{Name: "probe bad interval", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t\tinterval 0\n\t}\n}", WantErr: "interval: \"0\" is not a positive duration, at Testfile:4"},
		{Name: "probe bad status", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t\tstatus 2xx 700\n\t}\n}", WantErr: `status: "700" is not a status code`},
		{Name: "probe unknown option", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstream a:1\n\t}\n}", WantErr: `unrecognized probe option "upstream", at Testfile:3`},
		{Name: "probe twice", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t}\n\tprobe /h\n}", WantErr: "given twice, at Testfile:5"},
		{Name: "two key arguments", Input: `circuit_breaker a b`, WantErr: "wrong argument count"},
		{Name: "unknown option", Input: "circuit_breaker {\n\tconsecutive 5\n}", WantErr: `unrecognized circuit_breaker option "consecutive", at Testfile:2`},
		{Name: "ratio above 1", Input: "circuit_breaker {\n\tfailure_ratio 1.5\n}", WantErr: "Testfile:2"},
		{Name: "percent above 100", Input: "circuit_breaker {\n\tfailure_ratio 150%\n}", WantErr: "not a ratio"},
		{Name: "zero ratio", Input: "circuit_breaker {\n\tslow_ratio 0\n}", WantErr: "not a ratio"},
		{Name: "zero failures", Input: "circuit_breaker {\n\tconsecutive_failures 0\n}", WantErr: "at least 1"},
		{Name: "not a number", Input: "circuit_breaker {\n\thalf_open_probes many\n}", WantErr: "not a whole number"},
		{Name: "bad duration", Input: "circuit_breaker {\n\topen_duration soon\n}", WantErr: "not a positive duration"},
		{Name: "negative duration", Input: "circuit_breaker {\n\twindow -1s\n}", WantErr: "not a positive duration"},
		{Name: "missing value", Input: "circuit_breaker {\n\topen_duration\n}", WantErr: "wrong argument count"},
		{Name: "extra value", Input: "circuit_breaker {\n\tmin_requests 1 2\n}", WantErr: "wrong argument count"},
		{Name: "bad status", Input: "circuit_breaker {\n\tfailure_status 600\n}", WantErr: "not a status code"},
		{Name: "no status", Input: "circuit_breaker {\n\tfailure_status\n}", WantErr: "wrong argument count"},
		{Name: "slow ratio without threshold", Input: "circuit_breaker {\n\tslow_ratio 0.5\n}", WantErr: "slow call ratio needs a positive slow call threshold"},
		{Name: "cap below open duration", Input: "circuit_breaker {\n\topen_duration 1m\n\tmax_open_duration 10s\n}", WantErr: "max open duration"},
	})
}

func TestUnmarshalTransport(t *testing.T) {
	adapttest.Unmarshal(t, []adapttest.UnmarshalCase[Transport]{
		{Name: "policy and http options", Input: `circuit_breaker {
			consecutive_failures 3
			http {
				dial_timeout 2s
				response_header_timeout 5s
			}
		}`, Check: func(t *testing.T, tr *Transport) {
			if tr.ConsecutiveFailures != 3 || tr.DialTimeout != caddy.Duration(2*time.Second) ||
				tr.ResponseHeaderTimeout != caddy.Duration(5*time.Second) {
				t.Errorf("unexpected result %+v", tr)
			}
		}},
		{Name: "bare", Input: `circuit_breaker`, Check: func(t *testing.T, tr *Transport) {
			if !reflect.DeepEqual(tr.Policy, Policy{}) {
				t.Errorf("policy %+v, want the zero Policy", tr.Policy)
			}
		}},
		{Name: "probe", Input: `circuit_breaker {
			probe /v1/health {
				interval 250ms
			}
		}`, Check: func(t *testing.T, tr *Transport) {
			want := &Probe{Path: "/v1/health", Interval: caddy.Duration(250 * time.Millisecond)}
			if !reflect.DeepEqual(tr.Probe, want) {
				t.Errorf("probe %+v, want %+v", tr.Probe, want)
			}
		}},
		{Name: "probe upstreams", Input: "circuit_breaker {\n\tprobe /h {\n\t\tupstreams a:1\n\t}\n}", WantErr: "leave them out, at Testfile:3"},
		{Name: "argument", Input: `circuit_breaker x`, WantErr: "wrong argument count"},
		{Name: "bad http option", Input: "circuit_breaker {\n\thttp {\n\t\tdial_timeout never\n\t}\n}", WantErr: "Testfile:3"},
		{Name: "handler-only option", Input: "circuit_breaker {\n\tmax_breakers 3\n}", WantErr: "unrecognized circuit_breaker option"},
	})
}
