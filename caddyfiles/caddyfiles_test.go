// Package caddyfiles_test checks every Caddyfile operators edit with the built custom Caddy
// (bin/caddy, from `make caddy`) and runs the dev stack end to end: bin/caddy with
// dev.Caddyfile in front of bin/appserver, against the real services of `make services-up`.
package caddyfiles_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/muejam/edge"
	"github.com/muejam/edge/appserver/health"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/modules/edgeadmin"
)

func caddyfiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.Caddyfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Caddyfiles found (%v)", err)
	}
	return files
}

func TestCaddyfilesValidateAndAreFormatted(t *testing.T) {
	for _, f := range caddyfiles(t) {
		t.Run(f, func(t *testing.T) {
			// production.Caddyfile reads its pseudonym key, CDN origin secret and read-your-writes
			// key at run time ({env.NAME}, never in the adapted config) and refuses to start
			// without them: give validate throwaway values.
			testenv.CheckCaddyfile(t, f, "PII_PSEUDONYM_KEY=validate-only-throwaway-key",
				"CDN_ORIGIN_SECRET=validate-only-throwaway-secret",
				"READ_YOUR_WRITES_KEY=validate-only-throwaway-read-your-writes-key")
		})
	}
}

func TestBinaryCarriesPinnedCaddyAndOurModules(t *testing.T) {
	caddy := testenv.Binary(t, "caddy")
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		CaddyVersion string `json:"caddy_version"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command(caddy, "build-info").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "dep\tgithub.com/caddyserver/caddy/v2\t" + manifest.CaddyVersion + "\t"; !strings.Contains(string(info), want) {
		t.Errorf("build-info does not show Caddy %s:\n%s", manifest.CaddyVersion, info)
	}
	out, err := exec.Command(caddy, "list-modules", "--skip-standard").Output()
	if err != nil {
		t.Fatal(err)
	}
	listed := strings.Fields(string(out))
	// This test binary imports the root package, so it registers every module of ours.
	for _, m := range edgeadmin.EdgeModules() {
		if !slices.Contains(listed, m.ID) {
			t.Errorf("bin/caddy list-modules does not list %s (is bin/caddy stale? make caddy)", m.ID)
		}
	}
}

func requireFree(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s is taken (is `make run` running?): %v", a, err)
		}
		ln.Close()
	}
}

// devStack is the stack of `make run`, started for one test: bin/appserver on :8081, on a
// fresh migrated database, behind bin/caddy running dev.Caddyfile as it is on :8080, both
// with a private Valkey (the edge's limiter counters and cache never leak between tests).
type devStack struct {
	db        testenv.Database
	app, edge *testenv.Process
}

func startDevStack(t *testing.T) devStack {
	t.Helper()
	requireFree(t, "127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:9081", "127.0.0.1:2019", "127.0.0.1:9180")
	db := testenv.NewDatabase(t)
	env := []string{
		"DATABASE_URL=" + db.PrimaryURL,
		"DATABASE_REPLICA_URLS=" + db.ReplicaURL,
		"VALKEY_ADDR=" + testenv.NewValkey(t),
	}
	appserver := testenv.Binary(t, "appserver")
	if out, err := exec.Command(appserver, "migrate", "-database-url", db.PrimaryURL).CombinedOutput(); err != nil {
		t.Fatalf("appserver migrate: %v\n%s", err, out)
	}
	app := testenv.Start(t, env, appserver)
	edge := testenv.Start(t, env, testenv.Binary(t, "caddy"), "run", "--config", "caddyfiles/dev.Caddyfile", "--adapter", "caddyfile")
	testenv.WaitHTTP(t, "http://127.0.0.1:8081/v1/health")
	testenv.WaitHTTP(t, "http://127.0.0.1:2019/config/")
	return devStack{db: db, app: app, edge: edge}
}

// stop stops the edge, then the app server, and fails the test unless both exit cleanly.
func (s devStack) stop(t *testing.T) {
	t.Helper()
	s.edge.Stop(t)
	s.app.Stop(t)
}

func TestDevStackEndToEnd(t *testing.T) {
	stack := startDevStack(t)

	resp, err := http.Get("http://127.0.0.1:8080/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var rep health.Report
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || rep.Status != "healthy" {
		t.Errorf("GET :8080/v1/health = %d %+v, want 200 healthy", resp.StatusCode, rep)
	}
	for _, name := range []string{"primary", "replica-1", "valkey"} {
		if rep.Checks[name].Status != "up" {
			t.Errorf("check %s = %+v", name, rep.Checks[name])
		}
	}
	if via := resp.Header.Get("Via"); !strings.Contains(via, "Caddy") {
		t.Errorf("response did not come through the edge: Via %q", via)
	}

	// The jwt provider lets anonymous requests through and refuses a bad token at the edge.
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/v1/health", nil)
	req.Header.Set("Authorization", "Bearer not.a.token")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("bad token through the edge: %d, WWW-Authenticate %q; want 401 Bearer", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	resp, err = http.Get("http://127.0.0.1:2019/edge/status")
	if err != nil {
		t.Fatal(err)
	}
	var st edgeadmin.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /edge/status: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(st.CaddyVersion, "v2.") || st.Edge.Version != "v0.0.0" || len(st.Modules) == 0 {
		t.Errorf("/edge/status from bin/caddy = %+v", st)
	}
	if got, want := fmt.Sprint(st.Modules), fmt.Sprint(edgeadmin.EdgeModules()); got != want {
		t.Errorf("bin/caddy reports modules %s, the source registers %s", got, want)
	}

	// The deployment smoke tests pass against the local stack too.
	smoke := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts/deployment/smoke-tests.sh"), "http://127.0.0.1:8080")
	smoke.Env = append(os.Environ(), "EDGE_METRICS_URL=http://127.0.0.1:9180/metrics", "APP_METRICS_URL=http://127.0.0.1:9081/metrics")
	out, err := smoke.CombinedOutput()
	if err != nil {
		t.Errorf("smoke-tests.sh against the local stack: %v\n%s", err, out)
	}
	// The dev stack runs every module: nothing is "not yet available" (the cached read is a
	// hit through edge_cache, the limiter's headers are there).
	if !strings.Contains(string(out), " 0 skipped") {
		t.Errorf("smoke-tests.sh skipped checks against the local stack:\n%s", out)
	}

	stack.stop(t)
}
