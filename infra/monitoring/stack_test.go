package monitoring_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/muejam/edge/internal/testenv"
)

// binary returns the path of a built binary under bin/, failing when it is missing.
func binary(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(t), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run make caddy appserver (make test builds them first)", p)
	}
	return p
}

// process is a binary run by a test, its output kept for the failure report.
type process struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func start(t *testing.T, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...)}
	p.cmd.Dir = testenv.RepoRoot(t)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out.String())
		}
	})
	return p
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not answer within 20s", url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stack is the edge and the app server running on free loopback ports.
type stack struct {
	Edge, EdgeAdmin, App, AppMetrics string // host:port
	Dead                             string // a free port nothing listens on
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
		{"reverse_proxy 127.0.0.1:8081", "reverse_proxy " + s.App},
	} {
		if !strings.Contains(cf, r.old) {
			t.Fatalf("dev.Caddyfile no longer contains %q: update devCaddyfile in %s", r.old, "infra/monitoring/stack_test.go")
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

// tripPath is the route of devCaddyfile whose upstream never answers.
const tripPath = "/monitoring-trip/x"

func port(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }

// startStack runs bin/appserver (migrated, on a fresh database) and bin/caddy with the dev
// Caddyfile, both on free ports, and waits until both answer.
func startStack(t *testing.T) stack {
	t.Helper()
	appserver, caddy := binary(t, "appserver"), binary(t, "caddy")
	s := stack{
		Edge:       testenv.FreeAddr(t),
		EdgeAdmin:  testenv.FreeAddr(t),
		App:        testenv.FreeAddr(t),
		AppMetrics: testenv.FreeAddr(t),
		Dead:       testenv.FreeAddr(t),
	}
	db := testenv.NewDatabase(t)
	if out, err := exec.Command(appserver, "migrate", "-database-url", db.PrimaryURL).CombinedOutput(); err != nil {
		t.Fatalf("appserver migrate: %v\n%s", err, out)
	}
	start(t, []string{
		"APP_ADDR=" + s.App,
		"APP_METRICS_ADDR=" + s.AppMetrics,
		"DATABASE_URL=" + db.PrimaryURL,
		"DATABASE_REPLICA_URLS=" + db.ReplicaURL,
		"VALKEY_ADDR=" + testenv.ValkeyAddr,
		"LOG_LEVEL=warn",
	}, appserver)

	cfPath := filepath.Join(t.TempDir(), "monitoring.Caddyfile")
	if err := os.WriteFile(cfPath, []byte(devCaddyfile(t, s)), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, nil, caddy, "run", "--config", cfPath, "--adapter", "caddyfile")
	waitHTTP(t, "http://"+s.App+"/v1/health")
	waitHTTP(t, "http://"+s.EdgeAdmin+"/config/")
	waitHTTP(t, "http://"+s.Edge+"/v1/health")
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
