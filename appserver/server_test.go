package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/muejam/edge/appserver/health"
	"github.com/muejam/edge/internal/testenv"
)

func TestServeUntilDoneDrainsInFlightRequests(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveUntilDone(ctx, srv, ln, time.Minute) }()

	type reply struct {
		body string
		err  error
	}
	got := make(chan reply, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- reply{string(b), err}
	}()
	select {
	case <-started:
	case r := <-got:
		t.Fatalf("request finished before the handler started: %+v", r)
	}
	cancel() // SIGTERM

	select {
	case err := <-served:
		t.Fatalf("server returned with a request in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("server still accepts connections after shutdown began")
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: body %q, err %v", r.body, r.err)
	}
	if err := <-served; err != nil {
		t.Errorf("serveUntilDone = %v, want nil after a clean drain", err)
	}
}

func TestServeUntilDoneGivesUpAfterDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	started := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-block
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveUntilDone(ctx, srv, ln, 50*time.Millisecond) }()
	go http.Get("http://" + ln.Addr().String()) //nolint:errcheck // the server cuts it
	<-started
	cancel()
	err = <-served
	if err == nil || !strings.Contains(err.Error(), "in-flight requests still running after 50ms") {
		t.Errorf("serveUntilDone = %v, want the deadline error", err)
	}
}

// startServer runs the app server in-process against the given config and waits until it
// answers.
func startServer(t *testing.T, env map[string]string) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	env["APP_ADDR"] = addr
	env["APP_METRICS_ADDR"] = testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envMap(env), io.Discard, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case err := <-done:
			done <- nil // for the cleanup, which waits for run to return
			t.Fatalf("app server exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("app server did not start listening")
	return ""
}

func getHealth(t *testing.T, base string) (int, health.Report) {
	t.Helper()
	resp, err := http.Get(base + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep health.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, rep
}

// TestHealthFollowsDependencies takes the replica and Valkey down and back up (by cutting a
// proxy in front of the real servers) and checks /v1/health follows without a restart.
func TestHealthFollowsDependencies(t *testing.T) {
	db := testenv.NewDatabase(t)
	replica := testenv.NewProxy(t, testenv.Host(t, db.ReplicaURL))
	valkey := testenv.NewProxy(t, testenv.ValkeyAddr)
	base := startServer(t, map[string]string{
		"DATABASE_URL":          db.PrimaryURL,
		"DATABASE_REPLICA_URLS": testenv.WithHost(t, db.ReplicaURL, replica.Addr),
		"VALKEY_ADDR":           valkey.Addr,
		"HEALTH_CHECK_TIMEOUT":  "1s",
		"MIGRATE_ON_START":      "true",
	})

	assertHealth := func(wantCode int, wantDown string) {
		t.Helper()
		code, rep := getHealth(t, base)
		if code != wantCode {
			t.Errorf("status %d, want %d; report %+v", code, wantCode, rep)
		}
		for _, name := range []string{"primary", "replica-1", "valkey"} {
			c, ok := rep.Checks[name]
			if !ok {
				t.Errorf("check %q missing from %+v", name, rep.Checks)
				continue
			}
			want := "up"
			if name == wantDown {
				want = "down"
			}
			if c.Status != want || (want == "down") != (c.Error != "") {
				t.Errorf("check %s = %+v, want %s", name, c, want)
			}
		}
		if rep.Timestamp.IsZero() || time.Since(rep.Timestamp) > time.Minute {
			t.Errorf("timestamp %v", rep.Timestamp)
		}
		wantStatus := "healthy"
		if wantDown != "" {
			wantStatus = "unhealthy"
		}
		if rep.Status != wantStatus {
			t.Errorf("status %q, want %q", rep.Status, wantStatus)
		}
	}

	assertHealth(http.StatusOK, "")
	_, rep := getHealth(t, base)
	if rep.Checks["primary"].Details["role"] != "primary" || rep.Checks["replica-1"].Details["role"] != "replica" {
		t.Errorf("roles: %+v", rep.Checks)
	}
	if d := rep.Checks["replica-1"].Details; d["in_rotation"] != true || d["lag_bytes"] == nil || d["lag_seconds"] == nil {
		t.Errorf("replica details: %+v", d)
	}

	valkey.Down()
	assertHealth(http.StatusServiceUnavailable, "valkey")
	valkey.Up(t)
	assertHealth(http.StatusOK, "")

	replica.Down()
	assertHealth(http.StatusServiceUnavailable, "replica-1")
	replica.Up(t)
	assertHealth(http.StatusOK, "")
}

func TestHealthStartsWithValkeyDown(t *testing.T) {
	db := testenv.NewDatabase(t)
	valkey := testenv.NewProxy(t, testenv.ValkeyAddr)
	valkey.Down()
	base := startServer(t, map[string]string{
		"DATABASE_URL":          db.PrimaryURL,
		"DATABASE_REPLICA_URLS": db.ReplicaURL,
		"VALKEY_ADDR":           valkey.Addr,
	})
	if code, rep := getHealth(t, base); code != http.StatusServiceUnavailable || rep.Checks["valkey"].Status != "down" {
		t.Errorf("with Valkey down at start: %d %+v", code, rep)
	}
	valkey.Up(t)
	if code, rep := getHealth(t, base); code != http.StatusOK {
		t.Errorf("after Valkey came up: %d %+v", code, rep)
	}
}

func TestUnknownRoutesAnswerJSON(t *testing.T) {
	db := testenv.NewDatabase(t)
	base := startServer(t, map[string]string{"DATABASE_URL": db.PrimaryURL, "DATABASE_REPLICA_URLS": db.ReplicaURL})
	tests := []struct {
		method, path string
		code         int
		errCode      string
	}{
		{"GET", "/v1/nope", http.StatusNotFound, "not_found"},
		{"POST", "/v1/health", http.StatusMethodNotAllowed, "method_not_allowed"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code, Message string }
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tt.code || body.Error.Code != tt.errCode {
			t.Errorf("%s %s: %d %+v (%v), want %d %s", tt.method, tt.path, resp.StatusCode, body, err, tt.code, tt.errCode)
		}
		if tt.code == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
			t.Errorf("405 without Allow")
		}
	}
}

func TestMetricsExposeDatabaseRouter(t *testing.T) {
	db := testenv.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": db.PrimaryURL, "DATABASE_REPLICA_URLS": db.ReplicaURL}
	startServer(t, env)
	resp, err := http.Get("http://" + env["APP_METRICS_ADDR"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`muejam_db_node_up{node="primary"} 1`,
		`muejam_db_node_up{node="replica-1"} 1`,
		`muejam_db_node_role{node="replica-1",role="replica"} 1`,
		`muejam_db_replication_lag_bytes{node="replica-1"}`,
		`muejam_db_pool_conns{node="primary",state="idle"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHealthOnValkeyCluster: pointed at the dev cluster's seeds with VALKEY_CLUSTER=on, the
// health check reports the cluster and its state; a standalone server given as a cluster is
// down, not taken for one.
func TestHealthOnValkeyCluster(t *testing.T) {
	db := testenv.NewDatabase(t)
	seeds := testenv.RequireValkeyCluster(t)
	base := startServer(t, map[string]string{
		"DATABASE_URL":          db.PrimaryURL,
		"DATABASE_REPLICA_URLS": db.ReplicaURL,
		"VALKEY_ADDR":           strings.Join(seeds, ","),
		"VALKEY_CLUSTER":        "on",
	})
	code, rep := getHealth(t, base)
	vk := rep.Checks["valkey"]
	if code != http.StatusOK || vk.Status != "up" || vk.Details["mode"] != "cluster" || vk.Details["cluster_state"] != "ok" {
		t.Errorf("on the cluster: %d %+v", code, rep)
	}

	wrong := startServer(t, map[string]string{
		"DATABASE_URL":          db.PrimaryURL,
		"DATABASE_REPLICA_URLS": db.ReplicaURL,
		"VALKEY_ADDR":           testenv.ValkeyAddr,
		"VALKEY_CLUSTER":        "on",
	})
	if code, rep := getHealth(t, wrong); code != http.StatusServiceUnavailable || rep.Checks["valkey"].Status != "down" ||
		!strings.Contains(rep.Checks["valkey"].Error, "not a cluster") {
		t.Errorf("a standalone server required as a cluster: %d %+v", code, rep)
	}
}
