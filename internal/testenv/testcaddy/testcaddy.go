// Package testcaddy loads the configs of a package's integration tests into the in-process
// Caddy of caddytest, on loopback ports that were free when the test binary started. That
// Caddy is one per process, so its ports are too: tests that load configs are not parallel.
// It is apart from testenv so that only the tests that run Caddy link it.
package testcaddy

import (
	"fmt"
	"net"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// The ports of the process's Caddy: its admin API, the HTTP port of LoadSite's site and the
// HTTPS port (which no test serves on; it only keeps Caddy off 443).
var (
	AdminPort = freePort()
	HTTPPort  = freePort()
	HTTPSPort = freePort()
)

var (
	// AdminURL is the base URL of the admin API.
	AdminURL = fmt.Sprintf("http://localhost:%d", AdminPort)
	// SiteURL is the base URL of the site LoadSite serves.
	SiteURL = fmt.Sprintf("http://127.0.0.1:%d", HTTPPort)
)

// freePort returns a loopback port free at the time of the call.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// LoadSite (re)loads Caddy with one site, http://127.0.0.1:HTTPPort bound to 127.0.0.1, whose
// body is the Caddyfile text site, under the global options every test uses: the admin API on
// AdminPort, the HTTP and HTTPS ports, no automatic HTTPS, no persisted config. It stops the
// test when the config does not load.
func LoadSite(t testing.TB, site string) {
	t.Helper()
	Load(t, fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	auto_https off
	persist_config off
}
http://127.0.0.1:%d {
	bind 127.0.0.1
%s
}
`, AdminPort, HTTPPort, HTTPSPort, HTTPPort, site), "caddyfile")
}

// Load (re)loads Caddy with a whole config, in JSON or for the named adapter ("caddyfile"),
// which must keep the admin API on localhost:AdminPort. It stops the test when the config
// does not load.
func Load(t testing.TB, config, adapter string) {
	t.Helper()
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: AdminPort}).InitServer(config, adapter)
	if t.Failed() {
		t.FailNow()
	}
}
