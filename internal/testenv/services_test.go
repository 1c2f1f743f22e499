package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestServicesScriptInPrivateCheckout runs scripts/services.sh up, status and down from a
// checkout in a directory that only its owner can enter (t.TempDir's parent is 0700, like
// root's home or a mktemp -d directory), on ports of its own beside the dev services. As root,
// the postgres user cannot reach that checkout, so the clusters must live in the /var/tmp
// fallback and nothing run as postgres may go through the checkout (issue 25). The script
// needs nothing of the checkout but itself, so the working tree's copy is what is tested.
func TestServicesScriptInPrivateCheckout(t *testing.T) {
	checkout := filepath.Join(t.TempDir(), "edge")
	script := filepath.Join(checkout, "scripts", "services.sh")
	src, err := os.ReadFile(filepath.Join(RepoRoot(t), "scripts", "services.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, src, 0o755); err != nil {
		t.Fatal(err)
	}

	primary, replica, valkey := freePort(t), freePort(t), freePort(t)
	cluster := clusterPorts(t, 6, true)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MUEJAM_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"MUEJAM_PG_PRIMARY_PORT="+strconv.Itoa(primary),
		"MUEJAM_PG_REPLICA_PORT="+strconv.Itoa(replica),
		"MUEJAM_VALKEY_PORT="+strconv.Itoa(valkey),
		"MUEJAM_VALKEY_CLUSTER_PORT="+strconv.Itoa(cluster[0]))
	services := func(arg string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", script, arg) // bash: $TMPDIR may be noexec
		cmd.Env, cmd.Dir = env, checkout
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	pgLink := filepath.Join(checkout, ".run", "pg")
	t.Cleanup(func() {
		if out, err := services("down"); err != nil {
			t.Errorf("services.sh down: %v\n%s", err, out)
		}
		if dir, err := filepath.EvalSymlinks(pgLink); err == nil && strings.HasPrefix(dir, "/var/tmp/muejam-edge-") {
			os.RemoveAll(dir)
		}
	})

	start := time.Now()
	out, err := services("up")
	if err != nil {
		t.Fatalf("services.sh up: %v\n%s", err, out)
	}
	t.Logf("services.sh up took %s:\n%s", time.Since(start).Round(time.Millisecond), out)

	if os.Geteuid() == 0 {
		dir, err := filepath.EvalSymlinks(pgLink)
		if err != nil || !strings.HasPrefix(dir, "/var/tmp/muejam-edge-") {
			t.Fatalf(".run/pg resolves to %q (%v); want the /var/tmp fallback", dir, err)
		}
		if !strings.Contains(out, "clusters live in "+dir) {
			t.Errorf("services.sh up does not say where the clusters live (%s)", dir)
		}
		if _, err := os.Stat(filepath.Join(dir, "primary", "PG_VERSION")); err != nil {
			t.Errorf("the primary is not in the fallback: %v", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pgURL := func(port int) string {
		return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/muejam?sslmode=disable", port)
	}
	var streaming int
	queryPG(ctx, t, pgURL(primary), "select count(*) from pg_stat_replication where state = 'streaming'", &streaming)
	if streaming != 1 {
		t.Errorf("the primary on :%d streams to %d replicas; want 1", primary, streaming)
	}
	var recovering bool
	queryPG(ctx, t, pgURL(replica), "select pg_is_in_recovery()", &recovering)
	if !recovering {
		t.Errorf("the replica on :%d is not in recovery", replica)
	}
	if !ping("127.0.0.1:" + strconv.Itoa(valkey)) {
		t.Errorf("valkey on :%d does not answer PING", valkey)
	}
	var primaries, replicas int
	for _, port := range cluster {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := clusterStateOK(addr); err != nil {
			t.Fatal(err)
		}
		role, err := respDo(addr, "ROLE")
		if err != nil {
			t.Fatalf("ROLE on %s: %v", addr, err)
		}
		if r, _ := role.([]any); len(r) > 0 && r[0] == "master" {
			primaries++
		} else {
			replicas++
		}
	}
	if primaries != 3 || replicas != 3 {
		t.Errorf("the cluster has %d primaries and %d replicas; want 3 and 3", primaries, replicas)
	}

	// Up again reuses everything.
	if out, err = services("up"); err != nil {
		t.Fatalf("services.sh up, again: %v\n%s", err, out)
	}
	if strings.Contains(out, "creating") || strings.Count(out, "already running") != 3 {
		t.Errorf("services.sh up, again, did not reuse the running services:\n%s", out)
	}
	if out, err = services("status"); err != nil {
		t.Errorf("services.sh status: %v\n%s", err, out)
	}

	if out, err = services("down"); err != nil {
		t.Fatalf("services.sh down: %v\n%s", err, out)
	}
	if ping("127.0.0.1:"+strconv.Itoa(valkey)) || ping("127.0.0.1:"+strconv.Itoa(cluster[0])) {
		t.Error("valkey or a cluster node still answers after services.sh down")
	}
	if _, err = services("status"); err == nil {
		t.Error("services.sh status succeeds after down")
	}
}

// queryPG runs a one-row, one-column query on the server at url and scans its value into dst.
func queryPG(ctx context.Context, t *testing.T, url, sql string, dst any) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dst); err != nil {
		t.Fatalf("%s on %s: %v", sql, url, err)
	}
}
