// Package docker holds the container build of MueJam Edge: the Dockerfiles of the edge and the
// app server, the Caddyfile of the edge in containers, and docker-compose.yml, a laptop stack
// of both with PostgreSQL and Valkey. Its tests keep those files in step with the code.
package docker

import (
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"gopkg.in/yaml.v3"

	"github.com/muejam/edge/internal/testenv"
)

const (
	composePath  = "docker-compose.yml"
	devCaddyfile = "../caddyfiles/dev.Caddyfile"
	loopbackIP   = "127.0.0.1"
)

// listenEnv names the environment variables of the app server that hold its listen addresses.
var listenEnv = []string{"APP_ADDR", "APP_METRICS_ADDR"}

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

// composeService is one service of docker-compose.yml. The tests read ports and volumes in
// the short syntax and environment in the map syntax.
type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`    // relative to docker/
		Dockerfile string `yaml:"dockerfile"` // relative to Context
	} `yaml:"build"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

// dockerfile is the part of a Dockerfile the tests read.
type dockerfile struct {
	copies []string          // the sources of each COPY from the build context
	env    map[string]string // the pairs of each ENV key=value ...
	expose []string          // the ports of each EXPOSE, without a protocol
}

// TestBuildInputsExist checks that every file compose mounts from the host and every build
// context, Dockerfile and COPY source exists, and that the edge's Dockerfile copies a Caddyfile.
func TestBuildInputsExist(t *testing.T) {
	for name, svc := range loadCompose(t).Services {
		for _, v := range svc.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("service %s mounts %s, which does not exist relative to docker/", name, src)
				}
			}
		}
		if svc.Build == nil {
			continue
		}
		if st, err := os.Stat(svc.Build.Context); err != nil || !st.IsDir() {
			t.Errorf("service %s: build context %q is not a directory relative to docker/", name, svc.Build.Context)
			continue
		}
		path := filepath.Join(svc.Build.Context, svc.Build.Dockerfile)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("service %s: Dockerfile %q does not exist in the build context %q", name, svc.Build.Dockerfile, svc.Build.Context)
			continue
		}
		for _, src := range parseDockerfile(t, path).copies {
			if _, err := os.Stat(filepath.Join(svc.Build.Context, src)); err != nil {
				t.Errorf("service %s: %s copies %s, which is not in the build context %q", name, path, src, svc.Build.Context)
			}
		}
	}
	// edgeCaddyfile fails the test when the edge's Dockerfile copies no Caddyfile.
	edgeCaddyfile(t, buildService(t, "edge"))
}

// TestAppserverEnvironmentIsRead checks that compose and the app server's Dockerfile set only
// environment variables that appserver/config.go reads.
func TestAppserverEnvironmentIsRead(t *testing.T) {
	read := testenv.AppServerEnv(t)
	svc := buildService(t, "appserver")
	sources := map[string]map[string]string{
		composePath:          svc.Environment,
		svc.Build.Dockerfile: svcDockerfile(t, svc).env,
	}
	for file, env := range sources {
		for name := range env {
			if _, ok := read[name]; !ok {
				t.Errorf("%s sets %s for the app server, which reads only %v (%s)", file, name, slices.Sorted(maps.Keys(read)), testenv.AppServerConfig)
			}
		}
	}
}

// TestAppserverPorts checks that the app server container listens on every interface on the
// ports of defaultConfig, and that compose publishes and the Dockerfile exposes exactly those.
func TestAppserverPorts(t *testing.T) {
	read := testenv.AppServerEnv(t)
	svc := buildService(t, "appserver")
	df := svcDockerfile(t, svc)
	var want []string
	for _, name := range listenEnv {
		def := read[name]
		if def == "" {
			t.Fatalf("%s: found no env(%q, &cfg.Field) whose field defaultConfig sets to a string", testenv.AppServerConfig, name)
		}
		// The container's value: the image's ENV, overridden by the compose environment.
		addr := def
		if v, ok := df.env[name]; ok {
			addr = v
		}
		if v, ok := svc.Environment[name]; ok {
			addr = v
		}
		host, port := splitHostPort(t, addr)
		if _, defPort := splitHostPort(t, def); port != defPort {
			t.Errorf("the app server container has %s=%s, not the port of defaultConfig's %s", name, addr, def)
		}
		if isLoopback(host) {
			t.Errorf("the app server container has %s=%s, loopback: no published port reaches it", name, addr)
		}
		want = append(want, port)
	}
	checkPorts(t, "appserver", svc, want)
}

// TestEdgePorts checks that the edge's Caddyfile listens on every interface on the ports of the
// dev Caddyfile, and that compose publishes and the Dockerfile exposes exactly those.
func TestEdgePorts(t *testing.T) {
	svc := buildService(t, "edge")
	path := filepath.Join(svc.Build.Context, edgeCaddyfile(t, svc))
	var want []string
	for _, addr := range caddyListeners(t, path) {
		host, port := splitHostPort(t, addr)
		if isLoopback(host) {
			t.Errorf("%s listens on %s, loopback: no published port reaches it", path, addr)
		}
		want = append(want, port)
	}
	var dev []string
	for _, addr := range caddyListeners(t, devCaddyfile) {
		_, port := splitHostPort(t, addr)
		dev = append(dev, port)
	}
	slices.Sort(want)
	if slices.Sort(dev); !slices.Equal(want, dev) {
		t.Errorf("%s listens on ports %v and %s on %v: both stacks should answer on the same ports", path, want, devCaddyfile, dev)
	}
	checkPorts(t, "edge", svc, want)
}

// TestPortsBoundToLoopback checks that compose publishes every port on 127.0.0.1 only.
func TestPortsBoundToLoopback(t *testing.T) {
	for name, svc := range loadCompose(t).Services {
		for _, p := range svc.Ports {
			if ip, _, ok := parsePublished(p); !ok || ip != loopbackIP {
				t.Errorf("service %s publishes %q; want %s:HOST_PORT:CONTAINER_PORT", name, p, loopbackIP)
			}
		}
	}
}

// checkPorts checks that compose publishes exactly the container ports want of service name
// and that its Dockerfile exposes exactly them.
func checkPorts(t *testing.T, name string, svc composeService, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var published []string
	for _, p := range svc.Ports {
		if _, port, ok := parsePublished(p); ok {
			published = append(published, port)
		}
	}
	if slices.Sort(published); !slices.Equal(published, want) {
		t.Errorf("service %s publishes container ports %v, want %v", name, published, want)
	}
	exposed := slices.Sorted(slices.Values(svcDockerfile(t, svc).expose))
	if !slices.Equal(exposed, want) {
		t.Errorf("%s exposes ports %v, want %v", svc.Build.Dockerfile, exposed, want)
	}
}

// loadCompose parses docker-compose.yml.
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return c
}

// buildService returns the compose service name, which must have a build section.
func buildService(t *testing.T, name string) composeService {
	t.Helper()
	svc, ok := loadCompose(t).Services[name]
	if !ok || svc.Build == nil {
		t.Fatalf("%s has no service %s with a build section", composePath, name)
	}
	return svc
}

// svcDockerfile parses the Dockerfile of the compose service svc.
func svcDockerfile(t *testing.T, svc composeService) dockerfile {
	t.Helper()
	return parseDockerfile(t, filepath.Join(svc.Build.Context, svc.Build.Dockerfile))
}

// parseDockerfile reads the COPY, ENV and EXPOSE instructions of a Dockerfile in their plain
// (not JSON) form. COPY --from=stage copies from another stage and is skipped.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{env: map[string]string{}}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch args := f[1:]; strings.ToUpper(f[0]) {
		case "COPY":
			if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--from") }) {
				continue
			}
			args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--") })
			if len(args) < 2 {
				t.Fatalf("%s: COPY needs a source and a destination: %s", path, line)
			}
			df.copies = append(df.copies, args[:len(args)-1]...)
		case "ENV":
			for _, kv := range args {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("%s: ENV %s is not KEY=value", path, kv)
				}
				df.env[k] = v
			}
		case "EXPOSE":
			for _, p := range args {
				port, _, _ := strings.Cut(p, "/")
				df.expose = append(df.expose, port)
			}
		}
	}
	return df
}

// edgeCaddyfile returns the Caddyfile the edge's Dockerfile copies, relative to its build
// context.
func edgeCaddyfile(t *testing.T, svc composeService) string {
	t.Helper()
	for _, src := range svcDockerfile(t, svc).copies {
		if strings.HasSuffix(src, "Caddyfile") {
			return src
		}
	}
	t.Fatalf("%s copies no Caddyfile", svc.Build.Dockerfile)
	return ""
}

// caddyListeners returns the host:port addresses a Caddyfile listens on: its admin endpoint
// and each site address, on each host of the site's bind directive.
func caddyListeners(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := caddyfile.Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	admin := caddy.DefaultAdminListen
	var addrs []string
	for _, b := range blocks {
		if len(b.Keys) == 0 { // the global options
			for _, seg := range b.Segments {
				if seg.Directive() == "admin" && len(seg) > 1 {
					admin = seg[1].Text
				}
			}
			continue
		}
		binds := []string{""}
		for _, seg := range b.Segments {
			if seg.Directive() == "bind" {
				binds = binds[:0]
				for _, tok := range seg[1:] {
					binds = append(binds, tok.Text)
				}
			}
		}
		for _, key := range b.GetKeysText() {
			if !strings.Contains(key, "://") {
				key = "//" + key
			}
			u, err := url.Parse(key)
			if err != nil || u.Port() == "" {
				t.Fatalf("%s: site address %q has no port", path, key)
			}
			for _, host := range binds {
				addrs = append(addrs, net.JoinHostPort(host, u.Port()))
			}
		}
	}
	if admin != "off" {
		addrs = append(addrs, admin)
	}
	return addrs
}

// parsePublished splits a published port in the short syntax HOST_IP:HOST_PORT:CONTAINER_PORT
// (with an optional /protocol); ok is false when it has another shape.
func parsePublished(p string) (ip, containerPort string, ok bool) {
	p, _, _ = strings.Cut(p, "/")
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// splitHostPort splits a host:port listen address.
func splitHostPort(t *testing.T, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return host, port
}

// isLoopback reports whether host names the loopback interface only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
