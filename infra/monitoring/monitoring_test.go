// Package monitoring_test checks infra/monitoring: the Prometheus config, recording and alert
// rules with promtool (config, rules, unit tests), the Alertmanager config with amtool, the
// seed's alert table, the dashboards, and, against the real bin/caddy and bin/appserver, that
// every metric a rule or a dashboard names is exported. promtool and amtool come from
// scripts/promtool.sh (make test runs it first); without them the tests fail, never skip.
package monitoring_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/muejam/edge/internal/testenv"
)

// tool returns the path of promtool or amtool: on PATH, else where scripts/promtool.sh puts it.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join(testenv.RepoRoot(t), ".run", "tools", "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run scripts/promtool.sh %s (make test does), or install Debian's %s package",
			name, name, map[string]string{"promtool": "prometheus", "amtool": "prometheus-alertmanager"}[name])
	}
	return p
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = "." // infra/monitoring: the paths in the files are relative to it
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	return files
}

func TestPromtool(t *testing.T) {
	promtool := tool(t, "promtool")
	t.Run("check config", func(t *testing.T) { run(t, promtool, "check", "config", "prometheus.yml") })
	t.Run("check rules", func(t *testing.T) { run(t, promtool, append([]string{"check", "rules"}, glob(t, "rules/*.yml")...)...) })
	t.Run("test rules", func(t *testing.T) { run(t, promtool, append([]string{"test", "rules"}, glob(t, "tests/*.yml")...)...) })
}

func TestAlertmanagerConfig(t *testing.T) {
	amtool := tool(t, "amtool")
	const cfg = "alertmanager/alertmanager.yml"
	run(t, amtool, "check-config", cfg)
	for _, c := range []struct{ labels, receiver string }{
		{"severity=critical alertname=DatabaseDown", "pager"},
		{"severity=warning alertname=ReplicationLagHigh", "warnings"},
	} {
		args := append([]string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=" + c.receiver}, strings.Fields(c.labels)...)
		run(t, amtool, args...)
	}
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Secrets only as files: no inline key, password or webhook URL.
	for _, re := range []string{`(?m)^\s*(routing_key|service_key|api_url|slack_api_url|smtp_auth_password|auth_password):`, `hooks\.slack\.com`} {
		if m := regexp.MustCompile(re).Find(raw); m != nil {
			t.Errorf("%s holds a secret inline (%q): use the *_file form", cfg, m)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// rules returns every rule of rules/*.yml.
func rules(t *testing.T) (records map[string][]string, alerts []alertRule) {
	t.Helper()
	records = map[string][]string{}
	for _, f := range glob(t, "rules/*.yml") {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				switch {
				case r.Record != "":
					records[r.Record] = append(records[r.Record], r.Expr)
				case r.Alert != "":
					alerts = append(alerts, alertRule{filepath.Base(f), r.Alert, r.Labels["severity"], r.Expr, r.For, r.Annotations})
				}
			}
		}
	}
	return records, alerts
}

type alertRule struct {
	file                         string // alerts.yml holds the seed's alerts, operations.yml the project's own
	name, severity, expr, forDur string
	annotations                  map[string]string
}

// The seed's alerting rules, each with the alert that implements it and a fragment its
// expression must contain.
var seed = []struct{ line, alert, severity, expr string }{
	{"error rate > 5%", "HighErrorRate", "critical", "job:http_error_ratio:rate5m > 0.05"},
	{"response time > 2s (p95)", "HighLatencyP95", "critical", "job:http_request_duration_seconds:p95_5m > 2"},
	{"database down", "DatabaseDown", "critical", "muejam_db_node_up == 0"},
	{"service unavailable", "ServiceUnavailable", "critical", `sum by (job) (up{job=~"edge|appserver"}) == 0`},
	{"error rate > 1%", "HighErrorRate", "warning", "job:http_error_ratio:rate5m > 0.01"},
	{"response time > 1s (p95)", "HighLatencyP95", "warning", "job:http_request_duration_seconds:p95_5m > 1"},
	{"high CPU usage (>80%)", "HighCPUUsage", "warning", "instance:process_cpu_utilisation:rate5m > 0.8"},
	{"high memory usage (>80%)", "HighMemoryUsage", "warning", "instance:process_memory_utilisation:ratio > 0.8"},
	{"replication lag > 10s", "ReplicationLagHigh", "warning", "muejam_db_replication_lag_seconds > 10"},
}

func TestAlertsAreTheSeeds(t *testing.T) {
	_, all := rules(t)
	var alerts []alertRule
	for _, a := range all {
		if a.forDur == "" {
			t.Errorf("%s (%s) has no for:", a.name, a.severity)
		}
		if a.annotations["summary"] == "" || !strings.Contains(a.annotations["description"], "$value") {
			t.Errorf("%s (%s): wants a summary and a description showing {{ $value }}: %q", a.name, a.severity, a.annotations)
		}
		if a.file == "alerts.yml" {
			alerts = append(alerts, a)
		}
	}
	var got, want []string
	for _, a := range alerts {
		got = append(got, a.name+"/"+a.severity)
	}
	for _, s := range seed {
		want = append(want, s.alert+"/"+s.severity)
		i := slices.IndexFunc(alerts, func(a alertRule) bool { return a.name == s.alert && a.severity == s.severity })
		if i < 0 {
			t.Errorf("seed %q: no alert %s with severity %s", s.line, s.alert, s.severity)
			continue
		}
		if !strings.Contains(alerts[i].expr, s.expr) {
			t.Errorf("seed %q: %s (%s) expr %q does not contain %q", s.line, s.alert, s.severity, alerts[i].expr, s.expr)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("alerts are %v, the seed asks for exactly %v", got, want)
	}
}

// TestEveryAlertIsProven checks that tests/*.yml make every alert (name and severity) fire
// and also keep it silent in some evaluation.
func TestEveryAlertIsProven(t *testing.T) {
	type expAlert struct {
		Labels map[string]string `yaml:"exp_labels"`
	}
	var fires, silent = map[string]bool{}, map[string]bool{}
	for _, f := range glob(t, "tests/*.yml") {
		var tf struct {
			Tests []struct {
				Name   string `yaml:"name"`
				Alerts []struct {
					Alertname string     `yaml:"alertname"`
					Exp       []expAlert `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		readYAML(t, f, &tf)
		for _, tc := range tf.Tests {
			for _, at := range tc.Alerts {
				sev := map[string]bool{}
				for _, e := range at.Exp {
					sev[e.Labels["severity"]] = true
					fires[at.Alertname+"/"+e.Labels["severity"]] = true
				}
				for _, s := range []string{"critical", "warning"} {
					if !sev[s] {
						silent[at.Alertname+"/"+s] = true
					}
				}
			}
		}
	}
	_, alerts := rules(t)
	for _, a := range alerts {
		k := a.name + "/" + a.severity
		if !fires[k] {
			t.Errorf("no promtool test makes %s (%s) fire", a.name, a.severity)
		}
		if !silent[k] {
			t.Errorf("no promtool test keeps %s (%s) silent", a.name, a.severity)
		}
	}
}

// dashboardExprs returns every PromQL expression of a Grafana dashboard (targets and
// annotation queries), by panel title.
func dashboardExprs(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: uid %q, title %q, %d panels", path, d.UID, d.Title, len(d.Panels))
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if p.Type != "text" && len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", path, p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: panel %q has an empty query", path, p.Title)
			}
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		out["annotation"] = append(out["annotation"], a.Expr)
	}
	return out
}

func TestDashboards(t *testing.T) {
	records, _ := rules(t)
	want := map[string][]string{ // what each service's dashboard must show
		"dashboards/edge.json": {"caddy_http_request_duration_seconds_count", "job:http_error_ratio:rate5m", "job:http_request_duration_seconds:p95_5m", "muejam_edge_circuit_breaker_state", "caddy_reverse_proxy_upstreams_healthy",
			"muejam_edge_rate_limit_decisions_total", "zone:muejam_edge_rate_limit_denied:ratio_rate5m", "muejam_edge_rate_limit_fallbacks_total",
			"muejam_edge_rate_limit_valkey_seconds_bucket", "muejam_edge_pii_redactions_total", "muejam_app_pii_redactions_total",
			"muejam_edge_cache_lookups_total", "cache:muejam_edge_cache_hit_ratio:rate5m", "muejam_edge_cache_l1_bytes", "muejam_edge_cache_purges_total",
			"muejam_edge_cache_l2_errors_total"},
		"dashboards/appserver.json": {"muejam_app_http_requests_total", "job:http_error_ratio:rate5m", "muejam_app_http_request_duration_seconds_bucket",
			"job:muejam_app_cache_hit_ratio:rate5m", "muejam_app_cache_lookups_total", "muejam_app_cache_l1_bytes", "muejam_app_cache_l2_errors_total"},
		"dashboards/database.json": {"muejam_db_node_up", "muejam_db_replication_lag_seconds", "muejam_db_pool_conns", "muejam_db_pool_acquire_wait_seconds_total"},
	}
	files := glob(t, "dashboards/*.json")
	for f := range want {
		if !slices.Contains(files, f) {
			t.Errorf("%s is missing", f)
		}
	}
	for _, f := range files {
		names := map[string]bool{}
		for _, exprs := range dashboardExprs(t, f) {
			for _, e := range exprs {
				for _, n := range metricNames(e) {
					names[n] = true
					if strings.Contains(n, ":") && records[n] == nil {
						t.Errorf("%s queries %s, which no recording rule records", f, n)
					}
				}
			}
		}
		for _, n := range want[f] {
			if !names[n] {
				t.Errorf("%s shows no %s", f, n)
			}
		}
	}
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)|\boffset\s+-?[0-9a-z]+`)
	promqlTokens   = regexp.MustCompile(`[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?|[A-Za-z_:][A-Za-z0-9_:]*\s*\(?`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames returns the series names a PromQL expression selects: identifiers outside
// strings, label matchers, ranges, offsets and grouping clauses that are not functions or
// keywords.
func metricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, tok := range promqlTokens.FindAllString(s, -1) {
		if tok[0] >= '0' && tok[0] <= '9' || tok[0] == '.' || strings.HasSuffix(tok, "(") {
			continue
		}
		tok = strings.TrimSpace(tok)
		if promqlKeywords[tok] || slices.Contains(names, tok) {
			continue
		}
		names = append(names, tok)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.95, sum by (job, le) (rate(caddy_http_request_duration_seconds_bucket{code=~"5.."}[5m])))`, []string{"caddy_http_request_duration_seconds_bucket"}},
		{`a:b:c / on(job, instance) group_left() x_total offset 5m or absent(up{job="edge"}) > bool 1e18`, []string{"a:b:c", "x_total", "up"}},
		{`muejam_db_node_role{role="primary"} == 1 unless ignoring(role) y`, []string{"muejam_db_node_role", "y"}},
		{"sum without (node) (rate(muejam_db_queries_total[$__rate_interval])) * 0", []string{"muejam_db_queries_total"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// referenced returns every raw metric (not recorded by a rule) that a rule or a dashboard
// names, with where it is named.
func referenced(t *testing.T) map[string][]string {
	t.Helper()
	records, alerts := rules(t)
	refs := map[string][]string{}
	add := func(where, expr string) {
		for _, n := range metricNames(expr) {
			if records[n] == nil && !slices.Contains(refs[n], where) {
				refs[n] = append(refs[n], where)
			}
		}
	}
	for name, exprs := range records {
		for _, e := range exprs {
			add("record "+name, e)
		}
	}
	for _, a := range alerts {
		add("alert "+a.name, a.expr)
	}
	for _, f := range glob(t, "dashboards/*.json") {
		for panel, exprs := range dashboardExprs(t, f) {
			for _, e := range exprs {
				add(f+" "+panel, e)
			}
		}
	}
	return refs
}

// synthetic are series Prometheus makes itself, not exported by a binary.
var synthetic = map[string]bool{"up": true, "ALERTS": true}

// TestRulesAndDashboardsUseExportedMetrics runs bin/appserver and bin/caddy (dev.Caddyfile on
// free ports, its ip zone lowered to ipLimit, plus a route whose upstream is dead so the
// breakers trip), drives traffic through the edge (200, 404, 401, 429, 502, 503, an email in a
// query), scrapes both /metrics and fails on any metric a rule or dashboard names that
// neither exports, or that the wrong one exports, and on limiter and redaction counters
// that did not count that traffic.
func TestRulesAndDashboardsUseExportedMetrics(t *testing.T) {
	refs := referenced(t)
	s := startStack(t)

	get := func(path string, header ...string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.Edge+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	codes := map[int]int{}
	for range 10 {
		codes[get("/v1/discover")]++
		codes[get("/v1/no-such-route")]++
	}
	codes[get("/v1/discover", "Authorization", "Bearer not.a.token")]++
	for range 3 { // dial error (502) trips both breakers; then the handler answers 503
		codes[get(tripPath)]++
	}
	// An email in the query: the edge's pii_scrub access log replaces it (kind email).
	codes[get("/v1/discover?email=alice.liddell%40example.com")]++
	// Anonymous traffic from one IP past the ip zone's limit (ipLimit a minute): 429. (Not on
	// /v1/health: the limiter exempts health checks from the edge's own networks.)
	for i := 0; i <= ipLimit && codes[http.StatusTooManyRequests] == 0; i++ {
		codes[get("/v1/discover")]++
	}
	for _, c := range []int{200, 404, 401, 429, 502, 503} {
		if codes[c] == 0 {
			t.Errorf("traffic through the edge got no %d (got %v)", c, codes)
		}
	}

	// The database monitor and the pools report on their own schedule: scrape until every
	// name is there or 10 s have passed.
	edgeURL, appURL := "http://"+s.EdgeMetrics+"/metrics", "http://"+s.AppMetrics+"/metrics"
	var edge, app map[string]bool
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		edge, app = scrape(t, edgeURL), scrape(t, appURL)
		missing = missing[:0]
		for n := range refs {
			if !synthetic[n] && !edge[n] && !app[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s is named by %s but neither bin/caddy nor bin/appserver exports it (stale binary? make caddy appserver)", n, strings.Join(refs[n], "; "))
	}
	// The limiter and the scrubbers counted that traffic, not just declared their series:
	// every anonymous request but the bad token's (refused before the limiter) met the ip
	// zone; Valkey admitted exactly ipLimit, and a decision that fell back to the node's
	// local window (Valkey slower than its 25 ms timeout, seen on the first decisions after
	// start) may have admitted one more each; the email was redacted at the edge, and the
	// app server's scrubber replaced something in its own log.
	ipFallbacks := sample(t, edgeURL, "muejam_edge_rate_limit_fallbacks_total", `zone="ip"`)
	if ipFallbacks > 0 {
		t.Logf("the ip zone fell back to local windows %v times with Valkey up", ipFallbacks)
	}
	for _, c := range []struct {
		url, name string
		labels    []string
		ok        func(float64) bool
		want      string
	}{
		{edgeURL, "muejam_edge_rate_limit_decisions_total", []string{`zone="ip"`, `outcome="allowed"`}, func(v float64) bool { return v >= ipLimit && v <= ipLimit+ipFallbacks }, fmt.Sprintf("%d (+ at most %v fallbacks)", ipLimit, ipFallbacks)},
		{edgeURL, "muejam_edge_rate_limit_decisions_total", []string{`zone="ip"`, `outcome="denied"`}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{edgeURL, "muejam_edge_rate_limit_valkey_seconds_count", []string{`zone="ip"`}, func(v float64) bool { return v > ipLimit }, fmt.Sprintf("> %d", ipLimit)},
		{edgeURL, "muejam_edge_pii_redactions_total", []string{`kind="email"`}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{appURL, "muejam_app_pii_redactions_total", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
	} {
		if v := sample(t, c.url, c.name, c.labels...); !c.ok(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}

	// Each family where its job is scraped from.
	for n := range refs {
		switch {
		case strings.HasPrefix(n, "caddy_") || strings.HasPrefix(n, "muejam_edge_"):
			if !edge[n] {
				t.Errorf("%s is not in bin/caddy's /metrics (job edge)", n)
			}
		case strings.HasPrefix(n, "muejam_app_") || strings.HasPrefix(n, "muejam_db_"):
			if !app[n] {
				t.Errorf("%s is not in bin/appserver's /metrics (job appserver)", n)
			}
		case strings.HasPrefix(n, "process_") || n == "go_sched_gomaxprocs_threads" || n == "go_gc_gomemlimit_bytes":
			if !edge[n] || !app[n] {
				t.Errorf("%s must be exported by both binaries (edge %v, appserver %v)", n, edge[n], app[n])
			}
		}
	}
	if t.Failed() {
		t.Logf("referenced metrics: %s", fmt.Sprint(keys(refs)))
	}
}

func keys(m map[string][]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
