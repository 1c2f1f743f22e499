package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a private PostgreSQL primary and streaming replica for one test, on free ports
// under t.TempDir(); its primary may be restored from a backup (NewClusterWith). Tests that
// stop, pause, promote or destroy a server use a Cluster, never the shared dev services. Every role is trusted, except members of the group role scram_auth,
// which must log in with a password (scram-sha-256). The database is muejam.
type Cluster struct {
	PrimaryURL  string // superuser URL of the primary
	ReplicaURL  string // superuser URL of the replica
	PrimaryPort int
	ReplicaPort int

	bin                    string
	primaryDir, replicaDir string
	logDir                 string
}

// NewCluster creates, starts and waits for a primary and a streaming replica; both are
// stopped (immediately) and removed when the test ends.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	return NewClusterWith(t, ClusterOptions{})
}

// ClusterOptions change the cluster NewClusterWith makes; the zero value is NewCluster's.
type ClusterOptions struct {
	// Dir holds the data directories, Dir/primary and Dir/replica, and the servers' logs;
	// empty for a fresh PostgresDir.
	Dir string
	// PrimaryConf is appended to the primary's postgresql.conf (archiving settings, say),
	// before its first start, whether the primary is new or restored.
	PrimaryConf string
	// Restore, when set, makes the primary's data directory, which does not exist yet, from a
	// backup instead of initdb, with recovery configured to promote at its end (pgBackRest's
	// restore). The primary then starts on a port of its own, and NewClusterWith waits until
	// it has left recovery before it attaches a fresh replica.
	Restore func(dataDir string) error
}

// NewClusterWith creates (or restores, see ClusterOptions.Restore), starts and waits for a
// primary and a streaming replica; both are stopped (immediately) when the test ends.
func NewClusterWith(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{bin: pgBin(t)}
	base := opts.Dir
	if base == "" {
		base = PostgresDir(t)
	}
	c.primaryDir = filepath.Join(base, "primary")
	c.replicaDir = filepath.Join(base, "replica")
	c.logDir = base
	c.PrimaryPort, c.ReplicaPort = freePort(t), freePort(t)
	c.PrimaryURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/muejam?sslmode=disable", c.PrimaryPort)
	c.ReplicaURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/muejam?sslmode=disable", c.ReplicaPort)

	t.Cleanup(func() {
		// Immediate: a test may leave either server stopped, running or promoted.
		// Errors are expected for a server the test already stopped.
		_ = c.pgCtl(t, c.replicaDir, "replica", "-m", "immediate", "stop")
		_ = c.pgCtl(t, c.primaryDir, "primary", "-m", "immediate", "stop")
	})
	if opts.Restore != nil {
		if err := opts.Restore(c.primaryDir); err != nil {
			t.Fatalf("restoring the primary: %v", err)
		}
		// The restored postgresql.conf is the backed-up server's: only the port changes.
		c.writeFile(t, filepath.Join(c.primaryDir, "postgresql.conf"), fmt.Sprintf("\nport = %d\n%s", c.PrimaryPort, opts.PrimaryConf), true)
		// Recovery replays every archived WAL segment before the server promotes itself.
		if err := c.pgCtl(t, c.primaryDir, "primary", "-w", "-t", "3600", "start"); err != nil {
			t.Fatalf("starting the restored primary: %v", err)
		}
		c.waitPromoted(t, time.Hour)
	} else {
		c.initPrimary(t, opts.PrimaryConf)
	}
	c.run(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(c.PrimaryPort), "-U", "postgres",
		"-D", c.replicaDir, "-R", "-X", "stream", "-c", "fast")
	c.writeFile(t, filepath.Join(c.replicaDir, "postgresql.conf"), fmt.Sprintf("\nport = %d\n", c.ReplicaPort), true)
	c.StartReplica(t)
	c.waitStreaming(t)
	return c
}

// initPrimary creates the primary with initdb, appends conf to its postgresql.conf, starts
// it and creates the database muejam.
func (c *Cluster) initPrimary(t testing.TB, conf string) {
	t.Helper()
	c.run(t, "initdb", "-D", c.primaryDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N")
	c.writeFile(t, filepath.Join(c.primaryDir, "postgresql.conf"), fmt.Sprintf(`
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 5
hot_standby = on
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
`, c.PrimaryPort)+conf, true)
	c.writeFile(t, filepath.Join(c.primaryDir, "pg_hba.conf"), `
host all +scram_auth 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
`, false)
	c.StartPrimary(t)
	c.exec(t, c.PrimaryURL, "postgres", "create role scram_auth nologin")
	c.exec(t, c.PrimaryURL, "postgres", "create database muejam")
}

// PostgresDir returns a new directory, removed when the test ends, that the OS user of the
// private PostgreSQL servers owns: postgres when the test runs as root, else the test's.
func PostgresDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		return dir
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root needs the postgres OS user (scripts/services.sh creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// t.TempDir's parent is private to root: let postgres traverse it, and own ours.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// PostgresCommand returns a command that runs prog (a path, or a name looked up in PATH) as
// the OS user of the private PostgreSQL servers (see PostgresDir), for the tools that must
// run as that user, such as pgBackRest.
func PostgresCommand(prog string, args ...string) *exec.Cmd {
	if u := postgresUser(); u != "" {
		return exec.Command("runuser", append([]string{"-u", u, "--", prog}, args...)...)
	}
	return exec.Command(prog, args...)
}

// postgresUser is the OS user the private servers run as: postgres when the test runs as
// root, else "" (the test's own).
func postgresUser() string {
	if os.Geteuid() == 0 {
		return "postgres"
	}
	return ""
}

// DestroyPrimary crashes the primary (immediate shutdown, as a lost machine would) and
// removes its data directory.
func (c *Cluster) DestroyPrimary(t testing.TB) {
	t.Helper()
	if err := c.pgCtl(t, c.primaryDir, "primary", "-m", "immediate", "-w", "stop"); err != nil {
		t.Fatalf("crashing the primary: %v", err)
	}
	if err := os.RemoveAll(c.primaryDir); err != nil {
		t.Fatalf("removing the primary's data directory: %v", err)
	}
}

// waitPromoted waits up to timeout until the primary has left recovery.
func (c *Cluster) waitPromoted(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		var inRecovery bool
		conn, err := pgx.Connect(ctx, c.PrimaryURL)
		if err == nil {
			err = conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery)
			conn.Close(ctx)
		}
		if err == nil && !inRecovery {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the restored primary has not left recovery after %s (in recovery: %v, error: %v; log: %s)", timeout, inRecovery, err, c.logDir)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartPrimary starts the primary and waits until it accepts connections.
func (c *Cluster) StartPrimary(t testing.TB) {
	t.Helper()
	if err := c.pgCtl(t, c.primaryDir, "primary", "-w", "-t", "30", "start"); err != nil {
		t.Fatalf("starting the primary: %v", err)
	}
}

// StopPrimary stops the primary (fast shutdown: open connections are cut).
func (c *Cluster) StopPrimary(t testing.TB) {
	t.Helper()
	if err := c.pgCtl(t, c.primaryDir, "primary", "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("stopping the primary: %v", err)
	}
}

// StartReplica starts the replica and waits until it accepts connections.
func (c *Cluster) StartReplica(t testing.TB) {
	t.Helper()
	if err := c.pgCtl(t, c.replicaDir, "replica", "-w", "-t", "30", "start"); err != nil {
		t.Fatalf("starting the replica: %v", err)
	}
}

// StopReplica stops the replica (fast shutdown: open connections are cut).
func (c *Cluster) StopReplica(t testing.TB) {
	t.Helper()
	if err := c.pgCtl(t, c.replicaDir, "replica", "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("stopping the replica: %v", err)
	}
}

// PromoteReplica promotes the replica (pg_ctl promote) and waits until it leaves recovery.
func (c *Cluster) PromoteReplica(t testing.TB) {
	t.Helper()
	if err := c.pgCtl(t, c.replicaDir, "replica", "-w", "-t", "30", "promote"); err != nil {
		t.Fatalf("promoting the replica: %v", err)
	}
}

// PauseReplay pauses WAL replay on the replica (pg_wal_replay_pause); the replica keeps
// receiving WAL but its data stops moving.
func (c *Cluster) PauseReplay(t testing.TB) {
	t.Helper()
	c.exec(t, c.ReplicaURL, "muejam", "select pg_wal_replay_pause()")
}

// ResumeReplay resumes WAL replay on the replica.
func (c *Cluster) ResumeReplay(t testing.TB) {
	t.Helper()
	c.exec(t, c.ReplicaURL, "muejam", "select pg_wal_replay_resume()")
}

// waitStreaming waits until the primary reports the replica as streaming.
func (c *Cluster) waitStreaming(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from pg_stat_replication where state = 'streaming'").Scan(&n); err != nil {
			t.Fatalf("waiting for the replica to stream: %v", err)
		}
		if n > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replica of the private cluster is not streaming (log: %s)", c.logDir)
		case <-tick.C:
		}
	}
}

// exec runs one statement on the database db of the server at url.
func (c *Cluster) exec(t testing.TB, url, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pgCtl runs pg_ctl -D dir with args, logging the server to dir's log file.
func (c *Cluster) pgCtl(t testing.TB, dir, name string, args ...string) error {
	t.Helper()
	all := append([]string{"-D", dir, "-l", filepath.Join(c.logDir, name+".log")}, args...)
	out, err := c.command("pg_ctl", all...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *Cluster) run(t testing.TB, prog string, args ...string) {
	t.Helper()
	if out, err := c.command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", prog, err, out)
	}
}

// command runs a PostgreSQL program, as the postgres OS user when the test runs as root.
func (c *Cluster) command(prog string, args ...string) *exec.Cmd {
	return PostgresCommand(filepath.Join(c.bin, prog), args...)
}

// writeFile writes (or appends to) a file of a data directory, keeping its owner.
func (c *Cluster) writeFile(t testing.TB, path, text string, appendTo bool) {
	t.Helper()
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendTo {
		flag = os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// pgBin returns the bin directory of the newest installed PostgreSQL server.
func pgBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	if len(dirs) == 0 {
		t.Fatal("no PostgreSQL server in /usr/lib/postgresql/*/bin (run `make services-up`)")
	}
	return dirs[len(dirs)-1]
}

func freePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}
