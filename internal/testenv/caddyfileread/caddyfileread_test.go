package caddyfileread

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// testCaddyfile has global options, a site on two bind hosts and a metrics-only site whose
// bind host is read at parse time with a default, and reads A both ways, B at parse time and
// C at run time.
const testCaddyfile = `{
	admin {$A}
	# {env.A} at run time too: {$A} still wins
}

:{$PORT_A:8080}, example.com:8443 {
	bind 0.0.0.0 ::
	client_address {
		secret {env.C}
	}
	respond "ok"
}

:9180 {
	bind {$B:127.0.0.1}
	metrics
}
`

func writeCaddyfile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEnv(t *testing.T) {
	got := Env(t, writeCaddyfile(t, testCaddyfile))
	want := map[string]Ref{"A": ParseTime, "PORT_A": ParseTime, "B": ParseTime, "C": RunTime}
	if !maps.Equal(got, want) {
		t.Errorf("Env = %v, want %v", got, want)
	}
}

func TestRead(t *testing.T) {
	path := writeCaddyfile(t, testCaddyfile)
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantAdmin string
		wantPort  string
		wantBind  string
	}{
		{name: "defaults", wantAdmin: caddy.DefaultAdminListen, wantPort: "8080", wantBind: "127.0.0.1"},
		{name: "set", env: map[string]string{"A": "localhost:2019", "PORT_A": "80", "B": "10.0.0.1", "C": "x"}, wantAdmin: "localhost:2019", wantPort: "80", wantBind: "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("C", "left alone") // unset by Setenv unless tc.env sets it
			Setenv(t, path, tc.env)
			if _, ok := os.LookupEnv("C"); ok != (tc.env["C"] != "") {
				t.Errorf("C set = %v after Setenv with %v", ok, tc.env)
			}
			f := Read(t, path)
			if f.Path != path {
				t.Errorf("Path = %q, want %q", f.Path, path)
			}
			if f.Admin != tc.wantAdmin { // {$A} unset leaves admin without an argument
				t.Errorf("Admin = %q, want %q", f.Admin, tc.wantAdmin)
			}
			type site struct {
				key         string
				listen      []string
				metricsOnly bool
			}
			var got []site
			for _, s := range f.Sites {
				got = append(got, site{s.Key, s.Listen, s.MetricsOnly()})
			}
			want := []site{
				{":" + tc.wantPort, []string{"0.0.0.0:" + tc.wantPort, "[::]:" + tc.wantPort}, false},
				{"example.com:8443", []string{"0.0.0.0:8443", "[::]:8443"}, false},
				{":9180", []string{tc.wantBind + ":9180"}, true},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Sites = %+v, want %+v", got, want)
			}
			var args []string
			for _, tok := range f.Directive(t, "client_address") {
				args = append(args, tok.Text)
			}
			if want := []string{"client_address", "{", "secret", "{env.C}", "}"}; !slices.Equal(args, want) {
				t.Errorf("client_address = %q, want %q: {env.C} is read at run time", args, want)
			}
		})
	}
}

func TestMetricsOnly(t *testing.T) {
	path := writeCaddyfile(t, ":1 {\n}\n:2 {\n\tmetrics\n}\n:3 {\n\tbind ::1\n}\n:4 {\n\tmetrics\n\trespond ok\n}\n")
	var got []bool
	for _, s := range Read(t, path).Sites {
		got = append(got, s.MetricsOnly())
	}
	if want := []bool{false, true, true, false}; !slices.Equal(got, want) {
		t.Errorf("MetricsOnly = %v, want %v", got, want)
	}
}
