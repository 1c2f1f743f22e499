package monitoring_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/muejam/edge/internal/testenv"
)

// stack is the edge and the app server running on free loopback ports.
type stack struct {
	Edge, EdgeAdmin, EdgeMetrics string // host:port
	App, AppMetrics              string
	Dead                         string // a free port nothing listens on
}

// devCaddyfile returns caddyfiles/dev.Caddyfile with its addresses moved to the stack's, so
// the test runs what `make run` runs (metrics per_host, JSON access log, the jwt provider,
// reverse_proxy) next to the end-to-end test, which holds the dev ports, plus a breaker
// route (tripPath).
func devCaddyfile(t *testing.T, s stack) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "caddyfiles", "dev.Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	cf := string(raw)
	for _, r := range []struct{ old, new string }{
		{"admin localhost:2019", "admin " + s.EdgeAdmin},
		{"http://:8080", "http://:" + port(s.Edge)},
		{"http://:9180", "http://:" + port(s.EdgeMetrics)},
		{"reverse_proxy 127.0.0.1:8081", "reverse_proxy " + s.App},
		// The anonymous per-IP zone down to ipLimit, so the test's traffic meets a 429.
		{"events 60\n", fmt.Sprintf("events %d\n", ipLimit)},
	} {
		if strings.Count(cf, r.old) != 1 {
			t.Fatalf("dev.Caddyfile no longer contains %q exactly once: update devCaddyfile in %s", r.old, "infra/monitoring/stack_test.go")
		}
		cf = strings.ReplaceAll(cf, r.old, r.new)
	}
	// A route to a dead upstream, guarded by both breakers, so that their series exist.
	trip := fmt.Sprintf(`	handle %s {
		circuit_breaker monitoring-trip {
			consecutive_failures 1
			open_duration 1m
		}
		reverse_proxy %s {
			transport circuit_breaker {
				consecutive_failures 1
				open_duration 1m
			}
		}
	}
`, tripPath, s.Dead)
	at := "\treverse_proxy " + s.App + " {"
	if !strings.Contains(cf, at) {
		t.Fatalf("dev.Caddyfile has no line %q", at)
	}
	return strings.Replace(cf, at, trip+at, 1)
}

// ipLimit is the events per minute of the ip zone (anonymous requests per client IP) in
// devCaddyfile: dev.Caddyfile's 60, lowered so a few dozen requests meet the limit.
const ipLimit = 30

// tripPath is the route of devCaddyfile whose upstream never answers.
const tripPath = "/monitoring-trip/x"

func port(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }

// startStack runs bin/appserver (migrated, on a fresh database) and bin/caddy with the dev
// Caddyfile, both on free ports, and waits until both answer.
func startStack(t *testing.T) stack {
	t.Helper()
	appserver := testenv.Binary(t, "appserver")
	s := stack{
		Edge:        testenv.FreeAddr(t),
		EdgeAdmin:   testenv.FreeAddr(t),
		EdgeMetrics: testenv.FreeAddr(t),
		App:         testenv.FreeAddr(t),
		AppMetrics:  testenv.FreeAddr(t),
		Dead:        testenv.FreeAddr(t),
	}
	db := testenv.NewDatabase(t)
	valkey := testenv.NewValkey(t) // the edge's limiter counters stay private to this test
	if out, err := exec.Command(appserver, "migrate", "-database-url", db.PrimaryURL).CombinedOutput(); err != nil {
		t.Fatalf("appserver migrate: %v\n%s", err, out)
	}
	testenv.Start(t, []string{
		"APP_ADDR=" + s.App,
		"APP_METRICS_ADDR=" + s.AppMetrics,
		"DATABASE_URL=" + db.PrimaryURL,
		"DATABASE_REPLICA_URLS=" + db.ReplicaURL,
		"VALKEY_ADDR=" + valkey,
		// info: the startup line names the database URL, whose password (already masked by
		// net/url) the log scrubber still replaces, so muejam_app_pii_redactions_total has a
		// series without the test needing a request that makes the app log personal data.
		"LOG_LEVEL=info",
	}, appserver)

	testenv.StartCaddy(t, []string{"VALKEY_ADDR=" + valkey}, devCaddyfile(t, s), "caddyfile")
	testenv.WaitHTTP(t, "http://"+s.App+"/v1/health")
	testenv.WaitHTTP(t, "http://"+s.EdgeAdmin+"/config/")
	testenv.WaitHTTP(t, "http://"+s.Edge+"/v1/health")
	return s
}

// scrape returns the sample names (metric names with their _bucket, _sum, _count suffixes,
// as Prometheus stores them) of a text exposition.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("GET %s: no samples", url)
	}
	return names
}

// sample returns the sum of the samples of a text exposition whose name is name and whose
// labels contain every one of labels (e.g. `zone="ip"`).
func sample(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		for _, l := range labels {
			if !strings.Contains(line[:sp], l) {
				continue next
			}
		}
		var v float64
		if _, err := fmt.Sscan(line[sp+1:], &v); err != nil {
			t.Fatalf("%s: sample %q: %v", url, line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}
