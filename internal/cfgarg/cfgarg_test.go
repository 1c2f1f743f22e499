package cfgarg

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/muejam/edge/internal/valkeyconn"
)

func TestValkey(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   string
		want valkeyconn.Config
	}{
		{`valkey 127.0.0.1:6379`, valkeyconn.Config{Addresses: []string{"127.0.0.1:6379"}}},
		{`valkey 10.0.0.1:6379,10.0.0.2:6379 10.0.0.3:6379`,
			valkeyconn.Config{Addresses: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}}},
		{`valkey ""`, valkeyconn.Config{}},
		{"valkey a:1 {\n cluster\n}", valkeyconn.Config{Addresses: []string{"a:1"}, Cluster: true}},
		{"valkey a:1 {\n cluster off\n}", valkeyconn.Config{Addresses: []string{"a:1"}}},
		{"valkey a:1 {\n cluster 1\n username edge\n password {env.VALKEY_PASSWORD}\n tls\n tls_server_name cache.internal\n}",
			valkeyconn.Config{Addresses: []string{"a:1"}, Cluster: true, Username: "edge", Password: "{env.VALKEY_PASSWORD}",
				TLS: &valkeyconn.TLS{ServerName: "cache.internal"}}},
		{"valkey a:1 {\n tls " + ca + "\n}", valkeyconn.Config{Addresses: []string{"a:1"}, TLS: &valkeyconn.TLS{CAFile: ca}}},
		{"valkey a:1 {\n tls off\n}", valkeyconn.Config{Addresses: []string{"a:1"}}},
	}
	for _, tt := range tests {
		d := caddyfile.NewTestDispenser(tt.in)
		d.Next()
		got, err := Valkey(d)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestValkeyErrors(t *testing.T) {
	for in, want := range map[string]string{
		"valkey a:1 {\n cluster maybe\n}":    `cluster: "maybe" is not on or off`,
		"valkey a:1 {\n frobnicate\n}":       `unrecognized option "frobnicate"`,
		"valkey a:1 {\n username\n}":         "wrong argument count",
		"valkey a:1 {\n cluster on off\n}":   "wrong argument count",
		"valkey no-port":                     `"no-port" is not a host:port address`,
		"valkey \"\" {\n cluster\n}":         "options given but no address",
		"valkey a:1 {\n tls /nope/ca.pem\n}": "tls ca_file",
	} {
		d := caddyfile.NewTestDispenser(in)
		d.Next()
		_, err := Valkey(d)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: error %v, want one with %q and the file and line", in, err, want)
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in      string
		orZero  bool
		want    caddy.Duration
		wantErr string
	}{
		{in: "ttl 1m30s", want: caddy.Duration(90 * time.Second)},
		{in: "ttl 2d", orZero: true, want: caddy.Duration(48 * time.Hour)},
		{in: "ttl 0", orZero: true},
		{in: "ttl 0", wantErr: `ttl: "0" is not a positive duration`},
		{in: "ttl -1s", orZero: true, wantErr: `ttl: "-1s" is not a duration of 0 or more`},
		{in: "ttl soon", orZero: true, wantErr: `ttl: "soon" is not a duration of 0 or more`},
		{in: "ttl 1s 2s", wantErr: "wrong argument count"},
	}
	for _, tt := range tests {
		d := caddyfile.NewTestDispenser(tt.in)
		d.Next()
		parse := Duration
		if tt.orZero {
			parse = DurationOrZero
		}
		got, err := parse(d)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "Testfile:1") {
				t.Errorf("%q: error %v, want %q at its line", tt.in, err, tt.wantErr)
			}
		case err != nil || got != tt.want:
			t.Errorf("%q: got %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
