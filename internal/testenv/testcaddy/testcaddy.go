// Package testcaddy loads the configs of a package's integration tests into the in-process
// Caddy of caddytest, on loopback ports that were free when the test binary started. That
// Caddy is one per process, so its ports are too: tests that load configs are not parallel.
// It is apart from testenv so that only the tests that run Caddy link it.
package testcaddy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/freeport"
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

// freePort returns a loopback port free at the time of the call, which no other test process
// gets while this one lives (freeport).
func freePort() int {
	port, err := freeport.Port()
	if err != nil {
		panic(err)
	}
	return port
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
// does not load, and returns once the previous config's servers no longer listen.
//
// That wait matters on Linux, where every config binds its own socket with SO_REUSEPORT: the
// old server's socket closes only when its shutdown goroutine has run and its Accept has
// returned, after the load is answered on a busy machine. Until then the kernel gives it a
// share of new connections, resets those still queued when it closes, and Go's http.Server
// drops, unanswered, a request it reads once its shutdown began: a test's first request
// after a reload would see EOF or a reset now and then.
func Load(t testing.TB, config, adapter string) {
	t.Helper()
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: AdminPort}).InitServer(config, adapter)
	if t.Failed() {
		t.FailNow()
	}
	waitOldListenersClosed(t)
}

// waitOldListenersClosed waits until each TCP port the running HTTP servers listen on has
// one listening socket left, as the kernel lists them in /proc/net/tcp and tcp6 (Caddy's own
// count, caddy.ListenerUsage, drops before the socket is closed).
func waitOldListenersClosed(t testing.TB) {
	t.Helper()
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return // a config without the http app
	}
	var ports []uint
	for _, srv := range app.(*caddyhttp.App).Servers {
		for _, l := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(l)
			if err != nil {
				t.Fatalf("listen address %q of the loaded config: %v", l, err)
			}
			for p := na.StartPort; p <= na.EndPort; p++ {
				ports = append(ports, p)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, port := range ports {
		for listeningSockets(t, port) > 1 {
			if time.Now().After(deadline) {
				t.Fatalf("the previous config still listens on port %d 10 s after the reload", port)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// listeningSockets counts the sockets in state LISTEN on the TCP port, IPv4 and IPv6; it is 0
// where /proc/net/tcp does not exist.
func listeningSockets(t testing.TB, port uint) int {
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		// "  sl  local_address rem_address   st …": local_address is HEXIP:HEXPORT and
		// st 0A is LISTEN.
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && uint(p) == port {
				n++
			}
		}
	}
	return n
}
