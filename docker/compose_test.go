// Package docker holds the container build of MueJam Edge: the Dockerfiles of the edge and the
// app server, and docker-compose.yml, a laptop stack of both with PostgreSQL and Valkey, with
// compose.Caddyfile, the laptop configuration of the edge. The edge image runs
// caddyfiles/production.Caddyfile; compose mounts compose.Caddyfile over it. Its tests keep
// those files in step with the code.
package docker

import (
	"encoding/json"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/muejam/edge/internal/adapttest"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testenv/caddyfileread"
)

const (
	composePath  = "docker-compose.yml"
	devCaddyfile = "../caddyfiles/dev.Caddyfile"
	loopbackIP   = "127.0.0.1"

	// imageCaddyfile is the Caddyfile the edge image runs, the one ECS runs in production;
	// composeCaddyfile is the laptop configuration compose runs in its place. Both are
	// relative to docker/.
	imageCaddyfile   = "../caddyfiles/production.Caddyfile"
	composeCaddyfile = "compose.Caddyfile"
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
	Command     any               `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

// dockerfile is the part of a Dockerfile the tests read.
type dockerfile struct {
	copies []string          // the sources of each COPY from the build context
	copyTo map[string]string // the source of each COPY from the build context of one file, by destination
	env    map[string]string // the pairs of each ENV key=value ...
	expose []string          // the ports of each EXPOSE, without a protocol
	cmd    []string          // the exec (JSON) form of the last CMD

	runs       []string          // the command of each RUN, continuation lines joined
	stageCopy  map[string]string // the source of each COPY --from=STAGE of one file, by destination
	entrypoint []string          // the exec (JSON) form of the last ENTRYPOINT
}

// TestBuildInputsExist checks that every file compose mounts from the host and every build
// context, Dockerfile and COPY source exists, and that the edge's image and compose's edge
// each run a Caddyfile.
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
	// edgeCaddyfiles fails the test when the edge's image or compose's edge runs no Caddyfile.
	edgeCaddyfiles(t)
}

// TestEdgeCaddyfiles checks which Caddyfile each stack runs: the edge image (what ECS runs)
// the production one, compose the laptop one, mounted over it.
func TestEdgeCaddyfiles(t *testing.T) {
	image, compose := edgeCaddyfiles(t)
	if image != filepath.Clean(imageCaddyfile) {
		t.Errorf("the edge image runs %s, want %s: production runs the image's Caddyfile", image, imageCaddyfile)
	}
	if compose != composeCaddyfile {
		t.Errorf("compose's edge runs %s, want %s mounted over the image's Caddyfile", compose, composeCaddyfile)
	}
}

// TestEdgeEnvironmentIsRead checks that compose sets only environment variables of the edge
// that the Caddyfile compose runs reads.
func TestEdgeEnvironmentIsRead(t *testing.T) {
	_, compose := edgeCaddyfiles(t)
	read := caddyfileread.Env(t, compose)
	for name := range buildService(t, "edge").Environment {
		if _, ok := read[name]; !ok {
			t.Errorf("%s sets %s for the edge, which %s does not read (it reads %v)", composePath, name, compose, slices.Sorted(maps.Keys(read)))
		}
	}
}

// TestComposeCaddyfile checks the laptop Caddyfile with the built custom Caddy (bin/caddy,
// from `make caddy`): it validates with the environment compose gives the edge and is
// formatted, runs the edge's modules in production's order, enforces dev.Caddyfile's limits,
// keeps the admin API on the container's loopback and serves metrics on a listener of their
// own, takes the client address as production does (client_address with CDN_ORIGIN_SECRET),
// and reaches the compose services it names.
func TestComposeCaddyfile(t *testing.T) {
	_, f := edgeCaddyfiles(t)
	var env []string // compose's environment of the edge
	for name, v := range buildService(t, "edge").Environment {
		env = append(env, name+"="+v)
	}
	testenv.CheckCaddyfile(t, f, env...)
	cfg := adapttest.File(t, f)

	str := func(v any) string { b, _ := json.Marshal(v); return string(b) }

	// The limits of dev.Caddyfile, which the end-to-end tests run (and production's, which
	// caddyfiles/production_test.go checks against dev's).
	limit := adapttest.Handler(t, f, cfg, "edge_rate_limit")
	var devZones any
	if dev := adapttest.Handlers(adapttest.File(t, devCaddyfile), "edge_rate_limit"); len(dev) == 1 {
		devZones = dev[0]["zones"]
	}
	if !reflect.DeepEqual(devZones, limit["zones"]) {
		t.Errorf("%s's zones differ from %s's:\n%s\n%s", f, devCaddyfile, str(limit["zones"]), str(devZones))
	}
	// Without the jwt provider nothing sets {http.auth.user.id}: an unset placeholder is null
	// in the ip zone's expression, which would then never match.
	if len(adapttest.Handlers(cfg, "authentication")) == 0 {
		vars := adapttest.Handlers(cfg, "vars")
		if len(vars) != 1 || vars[0]["http.auth.user.id"] != "" {
			t.Errorf("%s has no authentication: it needs `vars http.auth.user.id \"\"` so that every request is anonymous, got %s", f, str(vars))
		}
	}

	// Valkey and the app server are the compose services, on their container ports. The
	// modules take Valkey as internal/valkeyconn's Config: its addresses, one server here.
	valkey := `["valkey:` + containerPort(t, "valkey") + `"]`
	for _, name := range []string{"edge_rate_limit", "edge_cache"} {
		h := adapttest.Handler(t, f, cfg, name)
		if got := str(testenv.JSONAt(h, "valkey", "addresses")); got != valkey {
			t.Errorf("%s: %s valkey %s, want addresses %s (the valkey service)", f, name, str(h["valkey"]), valkey)
		}
	}
	_, appPort := splitHostPort(t, appserverAddr(t, "APP_ADDR"))
	proxy := adapttest.Handler(t, f, cfg, "reverse_proxy")
	if got, want := str(proxy["upstreams"]), `[{"dial":"appserver:`+appPort+`"}]`; got != want {
		t.Errorf("%s: reverse_proxy upstreams %s, want %s (the appserver service)", f, got, want)
	}
	if got := str(testenv.JSONAt(proxy, "transport", "protocol")); got != `"circuit_breaker"` {
		t.Errorf("%s: reverse_proxy transport %s, want the per-upstream circuit_breaker", f, got)
	}
	if got := str(testenv.JSONAt(cfg, "logging", "logs", "log0", "encoder", "format")); got != `"pii_scrub"` {
		t.Errorf("%s: the access log encoder is %s, want pii_scrub", f, got)
	}
	adapttest.Handler(t, f, cfg, "circuit_breaker")
	adapttest.Handler(t, f, cfg, "edge_cache")

	// The admin API on the container's loopback; metrics on a server of their own, on a port
	// compose publishes; the client address from CloudFront-Viewer-Address with the secret
	// compose sets.
	if admin, _ := testenv.JSONAt(cfg, "admin", "listen").(string); admin == "" || !isLoopback(hostOf(admin)) {
		t.Errorf("%s: the admin API listens on %q, want the container's loopback (it changes the running config)", f, admin)
	}
	var metricsServers []string
	servers, _ := testenv.JSONAt(cfg, "apps", "http", "servers").(map[string]any)
	for name, srv := range servers {
		names := slices.DeleteFunc(adapttest.HandlerOrder(srv), func(h string) bool { return h == "subroute" })
		if !slices.Contains(names, "metrics") {
			continue
		}
		if slices.ContainsFunc(names, func(h string) bool { return h != "metrics" }) {
			t.Errorf("%s: server %s serves metrics next to %v: metrics get a listener of their own", f, name, names)
		}
		for _, l := range testenv.JSONAt(srv, "listen").([]any) {
			metricsServers = append(metricsServers, l.(string))
		}
	}
	if len(metricsServers) != 1 {
		t.Errorf("%s: metrics served on %v, want one listener", f, metricsServers)
	} else if _, port, _ := net.SplitHostPort(metricsServers[0]); !slices.ContainsFunc(buildService(t, "edge").Ports, func(p string) bool { _, c, _ := parsePublished(p); return c == port }) {
		t.Errorf("%s: metrics on %s, a port compose does not publish", f, metricsServers[0])
	}
	client := adapttest.Handler(t, f, cfg, "client_address")
	if got := str(client["secrets"]); got != `["{env.CDN_ORIGIN_SECRET}"]` {
		t.Errorf("%s: client_address secrets %s, want [\"{env.CDN_ORIGIN_SECRET}\"] (read at run time, as in production)", f, got)
	}
	if _, ok := buildService(t, "edge").Environment["CDN_ORIGIN_SECRET"]; !ok {
		t.Errorf("%s does not set CDN_ORIGIN_SECRET for the edge, which %s needs", composePath, f)
	}

	// production.Caddyfile's order: the user id (vars here, authentication there) before the
	// limits, X-Auth-User and the limits before the cache, which wraps the breaker
	// (stale-if-error while it is open), which wraps the proxy.
	order := adapttest.HandlerOrder(cfg)
	before := func(a, b string) bool {
		i, j := slices.Index(order, a), slices.Index(order, b)
		return i >= 0 && j >= 0 && i < j
	}
	user := "authentication"
	if !slices.Contains(order, user) {
		user = "vars"
	}
	for _, p := range [][2]string{
		{"client_address", user}, {"client_address", "edge_rate_limit"},
		{user, "edge_rate_limit"}, {user, "headers"}, {"edge_rate_limit", "edge_cache"}, {"headers", "edge_cache"},
		{"edge_cache", "circuit_breaker"}, {"circuit_breaker", "reverse_proxy"},
	} {
		if !before(p[0], p[1]) {
			t.Errorf("%s: handler order %v, want %s before %s", f, order, p[0], p[1])
		}
	}
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
	var want []string
	for _, name := range listenEnv {
		def := read[name]
		addr := appserverAddr(t, name)
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

// TestEdgePorts checks the listeners of the Caddyfiles of the edge image and of compose's edge:
// the admin API on loopback in both (and in the dev Caddyfile), so that no port reaches it;
// the same site ports in both, the dev Caddyfile's among them (every stack answers on the same
// ports); every site on every interface of the container, so that the ports compose publishes
// reach them, but the image's metrics listener, which its Caddyfile binds to loopback unless
// EDGE_METRICS_BIND says otherwise; and compose publishing and the Dockerfile exposing exactly
// those ports. The image's Caddyfile is read with its defaults, the environment it reads
// unset; infra/terraform/terraform_test.go checks it with the environment ECS gives it.
func TestEdgePorts(t *testing.T) {
	image, compose := edgeCaddyfiles(t)
	caddyfileread.Setenv(t, image, nil)
	ports := map[string][]string{}
	for _, path := range []string{devCaddyfile, image, compose} {
		f := caddyfileread.Read(t, path)
		if f.Admin != "off" && !strings.HasPrefix(f.Admin, "unix/") && !isLoopback(hostOf(f.Admin)) {
			t.Errorf("%s: the admin API listens on %s, want loopback only: it changes the running config, purges the cache and opens breakers", path, f.Admin)
		}
		for _, site := range f.Sites {
			for _, addr := range site.Listen {
				host, port := splitHostPort(t, addr)
				if isLoopback(host) && path != devCaddyfile && !(path == image && site.MetricsOnly()) {
					t.Errorf("%s listens on %s, loopback: no published port reaches it", path, addr)
				}
				if !slices.Contains(ports[path], port) {
					ports[path] = append(ports[path], port)
				}
			}
		}
		slices.Sort(ports[path])
	}
	if !slices.Equal(ports[image], ports[compose]) {
		t.Errorf("%s listens on ports %v and %s on %v: every stack should answer on the same ports", image, ports[image], compose, ports[compose])
	}
	for _, p := range ports[devCaddyfile] {
		if !slices.Contains(ports[compose], p) {
			t.Errorf("%s listens on port %s, %s does not (%v): every stack should answer on the same ports", devCaddyfile, p, compose, ports[compose])
		}
	}
	checkPorts(t, "edge", buildService(t, "edge"), ports[compose])
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

// parseDockerfile reads the COPY, ENV, EXPOSE and RUN instructions of a Dockerfile in their
// plain (not JSON) form, and CMD and ENTRYPOINT in their exec form. COPY --from=stage copies
// from another stage: it goes to stageCopy only.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{copyTo: map[string]string{}, env: map[string]string{}, stageCopy: map[string]string{}}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch args := f[1:]; strings.ToUpper(f[0]) {
		case "COPY":
			if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--from") }) {
				if args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--") }); len(args) == 2 {
					df.stageCopy[args[1]] = args[0]
				}
				continue
			}
			args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--") })
			if len(args) < 2 {
				t.Fatalf("%s: COPY needs a source and a destination: %s", path, line)
			}
			df.copies = append(df.copies, args[:len(args)-1]...)
			if len(args) == 2 {
				df.copyTo[args[1]] = args[0]
			}
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
		case "RUN":
			df.runs = append(df.runs, strings.Join(args, " "))
		case "CMD", "ENTRYPOINT":
			var exec []string
			if err := json.Unmarshal([]byte(strings.TrimSpace(line)[len(f[0]):]), &exec); err != nil {
				t.Fatalf("%s: %s is not in the exec form [\"prog\", \"arg\", ...]: %s", path, f[0], line)
			}
			if strings.ToUpper(f[0]) == "CMD" {
				df.cmd = exec
			} else {
				df.entrypoint = exec
			}
		}
	}
	return df
}

// edgeCaddyfiles returns, relative to docker/, the Caddyfile the edge image runs (the file
// its Dockerfile copies to the --config of its CMD) and the one compose's edge runs (the file
// compose mounts there, else the image's).
func edgeCaddyfiles(t *testing.T) (image, compose string) {
	t.Helper()
	svc := buildService(t, "edge")
	if svc.Command != nil {
		t.Fatalf("%s overrides the edge's command: mount the laptop Caddyfile over the image's instead", composePath)
	}
	df := svcDockerfile(t, svc)
	i := slices.Index(df.cmd, "--config")
	if i < 0 || i+1 == len(df.cmd) {
		t.Fatalf("%s: CMD %q names no --config", svc.Build.Dockerfile, df.cmd)
	}
	config := df.cmd[i+1]
	src, ok := df.copyTo[config]
	if !ok {
		t.Fatalf("%s runs %s, which no COPY from the build context writes", svc.Build.Dockerfile, config)
	}
	image = filepath.Join(svc.Build.Context, src)
	compose = image
	for _, v := range svc.Volumes {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == config {
			compose = filepath.Clean(parts[0])
		}
	}
	return image, compose
}

// appserverAddr returns the value the app server container has for the listen address
// variable name: defaultConfig's, overridden by the image's ENV, then by compose.
func appserverAddr(t *testing.T, name string) string {
	t.Helper()
	addr := testenv.AppServerEnv(t)[name]
	if addr == "" {
		t.Fatalf("%s: %s has no default", testenv.AppServerConfig, name)
	}
	svc := buildService(t, "appserver")
	if v, ok := svcDockerfile(t, svc).env[name]; ok {
		addr = v
	}
	if v, ok := svc.Environment[name]; ok {
		addr = v
	}
	return addr
}

// containerPort returns the container port compose publishes for service name, which must
// publish one.
func containerPort(t *testing.T, name string) string {
	t.Helper()
	svc, ok := loadCompose(t).Services[name]
	if !ok || len(svc.Ports) != 1 {
		t.Fatalf("%s: service %s must publish one port", composePath, name)
	}
	_, port, ok := parsePublished(svc.Ports[0])
	if !ok {
		t.Fatalf("%s: service %s publishes %q", composePath, name, svc.Ports[0])
	}
	return port
}

// hostOf returns the host of a host:port address, or addr when it has no port.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
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
