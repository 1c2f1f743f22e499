package monitoring_test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.yaml.in/yaml/v3"

	"github.com/muejam/edge/internal/testenv"
)

// TestScrapeTargets checks where prometheus.yml scrapes: the job edge at the edge's metrics
// listener, the site of production.Caddyfile and of docker/compose.Caddyfile that serves
// metrics only (never the admin API, which stays on loopback and can change the running
// config), and the job appserver at the app server's APP_METRICS_ADDR; both on loopback (the
// local stack) at /metrics.
func TestScrapeTargets(t *testing.T) {
	raw, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	targets := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("prometheus.yml: job %s scrapes %s, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], st.Targets...)
		}
	}

	root := testenv.RepoRoot(t)
	var metricsPort, adminPort string
	for _, path := range []string{"caddyfiles/production.Caddyfile", "docker/compose.Caddyfile"} {
		port, admin := metricsListener(t, filepath.Join(root, path))
		if port == "" {
			t.Errorf("%s has no site that serves metrics only: Prometheus would have to scrape the admin API", path)
			continue
		}
		if metricsPort != "" && port != metricsPort {
			t.Errorf("%s serves metrics on :%s, the other edge configuration on :%s: prometheus.yml scrapes one port", path, port, metricsPort)
		}
		metricsPort, adminPort = port, admin
	}
	// make run's dev.Caddyfile, what this file scrapes on a laptop, has the same listener once
	// it has one (its admin API still serves /metrics until then).
	if port, _ := metricsListener(t, filepath.Join(root, "caddyfiles/dev.Caddyfile")); port != "" && port != metricsPort {
		t.Errorf("caddyfiles/dev.Caddyfile serves metrics on :%s, production on :%s", port, metricsPort)
	} else if port == "" {
		t.Logf("caddyfiles/dev.Caddyfile has no metrics listener yet: under make run, the job edge (:%s) is down", metricsPort)
	}

	_, appPort, err := net.SplitHostPort(testenv.AppServerEnv(t)["APP_METRICS_ADDR"])
	if err != nil {
		t.Fatalf("the app server's default APP_METRICS_ADDR: %v", err)
	}
	for job, port := range map[string]string{"edge": metricsPort, "appserver": appPort} {
		if len(targets[job]) != 1 {
			t.Errorf("prometheus.yml: job %s has targets %v, want one", job, targets[job])
			continue
		}
		host, got, err := net.SplitHostPort(targets[job][0])
		if err != nil || got != port || host != "localhost" && host != "127.0.0.1" {
			t.Errorf("prometheus.yml: job %s scrapes %s, want localhost:%s", job, targets[job][0], port)
		}
		if job == "edge" && got == adminPort {
			t.Errorf("prometheus.yml: job edge scrapes the admin API's port %s", adminPort)
		}
	}
}

// caddyEnvRef matches the environment variables a Caddyfile reads at parse time.
var caddyEnvRef = regexp.MustCompile(`\{\$([A-Za-z_][A-Za-z0-9_]*)`)

// metricsListener returns the port of the site of the Caddyfile at path whose only
// directives are bind and metrics ("" when there is none) and the port of its admin API,
// with every environment variable the file reads unset (its defaults, as the image runs it).
func metricsListener(t *testing.T, path string) (port, admin string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range caddyEnvRef.FindAllStringSubmatch(string(data), -1) {
		t.Setenv(m[1], "") // restored when the test ends
		os.Unsetenv(m[1])
	}
	blocks, err := caddyfile.Parse(path, data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	_, admin, _ = net.SplitHostPort(caddy.DefaultAdminListen)
	for _, b := range blocks {
		if len(b.Keys) == 0 {
			for _, seg := range b.Segments {
				if seg.Directive() == "admin" && len(seg) > 1 {
					_, admin, _ = net.SplitHostPort(seg[1].Text)
				}
			}
			continue
		}
		only := len(b.Segments) > 0
		for _, seg := range b.Segments {
			only = only && (seg.Directive() == "bind" || seg.Directive() == "metrics")
		}
		if !only {
			continue
		}
		for _, key := range b.GetKeysText() {
			if !strings.Contains(key, "://") {
				key = "//" + key
			}
			if u, err := url.Parse(key); err == nil && u.Port() != "" {
				port = u.Port()
			}
		}
	}
	return port, admin
}
