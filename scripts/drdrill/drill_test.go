package drdrill

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/internal/testenv"
)

var (
	scale          = flag.Float64("drill.scale", 0.005, "appserver seed -scale of the drilled data set (the bench's is 0.1)")
	writeFor       = flag.Duration("drill.write", 15*time.Second, "how long the workload writes between the base backup and the loss of the primary (longer while the archiver lags behind its DELETE)")
	archiveTimeout = flag.Duration("drill.archive-timeout", 5*time.Second, "archive_timeout of the drilled primary (scripts/services.sh sets 60s)")
)

// The seed's objectives.
const (
	maxRPO = 5 * time.Minute
	maxRTO = time.Hour
)

// stanza is the pgBackRest stanza of the drill, in a repository of its own.
const stanza = "drill"

// marker starts the body of every whisper the workload writes, followed by its number.
const marker = "dr-drill write "

// TestDisasterRecoveryDrill is the drill the package documentation describes.
func TestDisasterRecoveryDrill(t *testing.T) {
	if *archiveTimeout < time.Second {
		t.Fatalf("-drill.archive-timeout %s: PostgreSQL takes whole seconds, at least 1", *archiveTimeout)
	}
	appserver := testenv.Binary(t, "appserver")
	br := newBackRest(t)

	// The stack before the disaster: an archived primary, its replica, the app server.
	oldDir := testenv.PostgresDir(t)
	old := testenv.NewClusterWith(t, testenv.ClusterOptions{Dir: oldDir, PrimaryConf: br.archiving(filepath.Join(oldDir, "primary"))})
	br.run(t, "stanza-create", "--pg1-path="+filepath.Join(oldDir, "primary"), "--pg1-port="+strconv.Itoa(old.PrimaryPort))
	started := time.Now()
	rows := seed(t, appserver, old.PrimaryURL)
	seedTook := time.Since(started)
	started = time.Now()
	br.run(t, "backup", "--type=full", "--pg1-path="+filepath.Join(oldDir, "primary"), "--pg1-port="+strconv.Itoa(old.PrimaryPort))
	backupTook := time.Since(started)
	size := br.backupSize(t)
	dbSize := databaseSize(t, old.PrimaryURL)
	t.Logf("data set: appserver seed -scale %g, %d rows in %.1fs, database muejam %.1f MB, cluster %.1f MB; full backup in %.1fs",
		*scale, rows, seedTook.Seconds(), mb(dbSize), mb(size), backupTook.Seconds())

	app := startApp(t, appserver, old)
	w := runWorkload(t, app, old.PrimaryURL, *writeFor)

	// The disaster: the primary's data directory is gone. The replica goes with it (the
	// bad DELETE is in its data too, and a region loss takes it as well): the drill recovers
	// from the backup and the archive alone.
	lost := time.Now()
	old.DestroyPrimary(t)
	old.StopReplica(t)
	app.Stop(t)
	t.Logf("primary destroyed at %s, %d writes acknowledged, the last at %s",
		lost.Format(time.TimeOnly), len(w.acked), w.acked[len(w.acked)-1].at.Format("15:04:05.000"))

	// Case 1: the latest consistent point, on a new primary with a new replica.
	latest, restoreTook := br.restoredCluster(t, "--type=default")
	latestApp := startApp(t, appserver, latest)
	postUntilAccepted(t, latestApp)
	rto := time.Since(lost)
	survivors := drillWrites(t, latest.PrimaryURL)
	last := w.checkLatest(t, survivors)
	rpo := lost.Sub(w.acked[last].at)
	latestApp.mustGet(t, w.acked[last].id, http.StatusOK)
	latestApp.mustGet(t, w.acked[w.deletedUpTo].id, http.StatusNotFound)
	t.Logf("latest point: restored %.1f MB in %.1fs (%.1f MB/s); %d of %d writes survived, the last acknowledged %.1fs before the loss; the API accepted a write %.1fs after the loss",
		mb(size), restoreTook.Seconds(), mb(size)/restoreTook.Seconds(), len(survivors), len(w.acked)-w.deletedUpTo-1, rpo.Seconds(), rto.Seconds())

	// Case 2: the named time just before the bad DELETE, on another new cluster.
	pitrStart := time.Now()
	pitr, pitrTook := br.restoredCluster(t, "--type=time", "--target="+w.beforeDelete.UTC().Format("2006-01-02 15:04:05.999999-07"),
		"--target-action=promote", "--target-timeline=current")
	pitrApp := startApp(t, appserver, pitr)
	postUntilAccepted(t, pitrApp)
	w.checkBeforeDelete(t, drillWrites(t, pitr.PrimaryURL))
	pitrApp.mustGet(t, w.acked[0].id, http.StatusOK)
	t.Logf("point in time %s (before the DELETE of %d writes): restored in %.1fs, the API took a write %.1fs after the restore began",
		w.beforeDelete.Format("15:04:05.000000"), w.deletedUpTo+1, pitrTook.Seconds(), time.Since(pitrStart).Seconds())

	t.Logf("RPO %.1fs (objective %s, archive_timeout %s), RTO %.1fs (objective %s), restore %.1f MB/s, data set %d rows, %.1f MB",
		rpo.Seconds(), maxRPO, *archiveTimeout, rto.Seconds(), maxRTO, mb(size)/restoreTook.Seconds(), rows, mb(size))
	if rpo > maxRPO {
		t.Errorf("RPO %s exceeds the objective %s", rpo, maxRPO)
	}
	if rto > maxRTO {
		t.Errorf("RTO %s exceeds the objective %s", rto, maxRTO)
	}
}

func mb(bytes int64) float64 { return float64(bytes) / 1e6 }

// backRest runs pgBackRest with the drill's configuration: a repository, a lock directory
// and a log directory of its own.
type backRest struct {
	conf string
}

func newBackRest(t *testing.T) *backRest {
	t.Helper()
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Fatal("pgbackrest is not installed (scripts/services.sh up installs it)")
	}
	dir := testenv.PostgresDir(t)
	b := &backRest{conf: filepath.Join(dir, "pgbackrest.conf")}
	conf := fmt.Sprintf(`[global]
repo1-path=%[1]s/repo
repo1-retention-full=1
lock-path=%[1]s/lock
log-level-console=warn
log-level-stderr=warn
log-level-file=off
start-fast=y
compress-type=lz4
process-max=2
`, dir)
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// archiving is the postgresql.conf block that archives the primary in dataDir to the
// drill's repository.
func (b *backRest) archiving(dataDir string) string {
	return fmt.Sprintf(`
archive_mode = on
archive_command = 'pgbackrest --config=%s --stanza=%s --pg1-path=%s archive-push %%p'
archive_timeout = '%ds'
`, b.conf, stanza, dataDir, int(archiveTimeout.Seconds()))
}

// command is pgbackrest with args, as the servers' OS user; the server is reached over TCP
// (the clusters have no Unix socket): pgBackRest leaves the host to libpq's PGHOST.
func (b *backRest) command(args ...string) *exec.Cmd {
	cmd := testenv.PostgresCommand("pgbackrest", append([]string{"--config=" + b.conf, "--stanza=" + stanza}, args...)...)
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1")
	return cmd
}

func (b *backRest) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.command(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbackrest %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// restoredCluster restores the latest backup, with the recovery settings of args, as the
// primary of a fresh cluster (archived to the drill's repository in turn), and returns it
// once it has promoted itself and has a streaming replica, with the time pgbackrest restore
// took.
func (b *backRest) restoredCluster(t *testing.T, args ...string) (*testenv.Cluster, time.Duration) {
	t.Helper()
	var took time.Duration
	dir := testenv.PostgresDir(t)
	c := testenv.NewClusterWith(t, testenv.ClusterOptions{
		Dir:         dir,
		PrimaryConf: b.archiving(filepath.Join(dir, "primary")),
		Restore: func(dataDir string) error {
			start := time.Now()
			out, err := b.command(append([]string{"restore", "--pg1-path=" + dataDir}, args...)...).CombinedOutput()
			took = time.Since(start)
			if err != nil {
				return fmt.Errorf("pgbackrest restore %s: %v: %s", strings.Join(args, " "), err, out)
			}
			return nil
		},
	})
	return c, took
}

// backupSize is the size of the cluster in the newest backup: what a restore writes.
func (b *backRest) backupSize(t *testing.T) int64 {
	t.Helper()
	var info []struct {
		Backup []struct {
			Info struct {
				Size int64 `json:"size"`
			} `json:"info"`
		} `json:"backup"`
	}
	if err := json.Unmarshal([]byte(b.run(t, "info", "--output=json")), &info); err != nil {
		t.Fatalf("pgbackrest info: %v", err)
	}
	if len(info) != 1 || len(info[0].Backup) == 0 {
		t.Fatalf("pgbackrest info lists no backup of stanza %s", stanza)
	}
	return info[0].Backup[len(info[0].Backup)-1].Info.Size
}

// seed migrates and seeds the database at url with bin/appserver, returning the rows seeded.
func seed(t *testing.T, appserver, url string) int64 {
	t.Helper()
	cmd := exec.Command(appserver, "seed", "-migrate=true", "-scale", strconv.FormatFloat(*scale, 'g', -1, 64))
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("appserver seed: %v: %s", err, out)
	}
	m := regexp.MustCompile(`seeded (\d+) rows`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("appserver seed did not say how many rows it seeded: %s", out)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	t.Logf("appserver seed:\n%s", out)
	return n
}

func databaseSize(t *testing.T, url string) int64 {
	t.Helper()
	var n int64
	query(t, url, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "select pg_database_size('muejam')").Scan(&n)
	})
	return n
}

// query runs f on a connection to url.
func query(t *testing.T, url string, f func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := f(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// drillWrites returns the numbers of the workload's whispers in the database at url, mapped
// to their ids.
func drillWrites(t *testing.T, url string) map[int]int64 {
	t.Helper()
	found := map[int]int64{}
	query(t, url, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "select id, body from whispers where body like $1", marker+"%")
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var body string
			if err := rows.Scan(&id, &body); err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimPrefix(body, marker))
			if err != nil {
				return fmt.Errorf("whisper %d: %q is not a drill write", id, body)
			}
			found[n] = id
		}
		return rows.Err()
	})
	return found
}

// app is an app server of the drill, on a private Valkey (a restored stack starts with an
// empty cache: entries cached before a point-in-time restore may describe rows it undid).
type app struct {
	*testenv.Process
	url string
}

func startApp(t *testing.T, bin string, c *testenv.Cluster) *app {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p := testenv.Start(t, []string{
		"APP_ADDR=" + addr,
		"APP_METRICS_ADDR=" + testenv.FreeAddr(t),
		"DATABASE_URL=" + c.PrimaryURL,
		"DATABASE_REPLICA_URLS=" + c.ReplicaURL,
		"VALKEY_ADDR=" + testenv.NewValkey(t),
		"LOG_LEVEL=warn",
	}, bin)
	a := &app{Process: p, url: "http://" + addr}
	testenv.WaitHTTP(t, a.url+"/v1/health")
	return a
}

// post writes a whisper with body as the drill's user and returns its id.
func (a *app) post(body string) (int64, error) {
	b, _ := json.Marshal(map[string]string{"body": body})
	req, _ := http.NewRequest(http.MethodPost, a.url+"/v1/whispers", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-User", "dr-drill")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			ID int64 `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("POST /v1/whispers: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("POST /v1/whispers: %v", err)
	}
	return out.Data.ID, nil
}

// postUntilAccepted posts whispers until one is accepted (the app server may still be
// finding its primary) and returns its id; it fails the test after a minute.
func postUntilAccepted(t *testing.T, a *app) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		id, err := a.post("dr-drill: the restored stack takes writes")
		if err == nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restored stack accepted no write within a minute: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustGet fails the test unless GET /v1/whispers/{id} answers want.
func (a *app) mustGet(t *testing.T, id int64, want int) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/v1/whispers/%d", a.url, id))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("GET /v1/whispers/%d: %s, want %d", id, resp.Status, want)
	}
}

// write is one whisper the workload wrote and the app server acknowledged.
type write struct {
	id int64
	at time.Time // when the 201 arrived
}

// workload is what runWorkload wrote: acked[n] is the write of the whisper numbered n.
type workload struct {
	acked []write
	// beforeDelete is the named time of the second restore: every write before it was
	// acknowledged before it, and the bad DELETE began after it.
	beforeDelete time.Time
	// deletedUpTo is the number of the last write the bad DELETE removed (the DELETE removed
	// 0 to deletedUpTo).
	deletedUpTo int
}

// runWorkload posts numbered whispers through the app server, one at a time, for d; after
// 60% of d it deletes every whisper written so far straight in the database at primaryURL,
// as a bad migration or a wrong console statement would. It writes on past d, for at most
// maxWait, until the WAL segment holding the DELETE is archived: on a loaded machine the
// archiver can fall behind the drill's short timeline, and a restore to the latest point
// must have something after the DELETE to find. (That can only make the measured RPO
// smaller when the archiver is slow; it never waits on a drill of the default length on an
// idle machine.)
func runWorkload(t *testing.T, a *app, primaryURL string, d time.Duration) *workload {
	t.Helper()
	const maxWait = 2 * time.Minute
	w := &workload{deletedUpTo: -1}
	var deleteWAL string // the WAL segment that holds the DELETE
	archived := func() bool {
		var last string
		query(t, primaryURL, func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, "select coalesce(last_archived_wal, '') from pg_stat_archiver").Scan(&last)
		})
		return len(last) >= 24 && last[:24] >= deleteWAL // segment names sort by timeline and position
	}
	start := time.Now()
	waited := false
	for n := 0; ; n++ {
		if time.Since(start) >= d {
			if archived() || time.Since(start) >= d+maxWait {
				break
			}
			waited = true
		}
		id, err := a.post(marker + strconv.Itoa(n))
		if err != nil {
			t.Fatalf("workload write %d: %v", n, err)
		}
		w.acked = append(w.acked, write{id: id, at: time.Now()})
		if w.deletedUpTo < 0 && time.Since(start) > d*6/10 {
			time.Sleep(20 * time.Millisecond)
			w.beforeDelete = time.Now()
			time.Sleep(20 * time.Millisecond)
			query(t, primaryURL, func(ctx context.Context, conn *pgx.Conn) error {
				if _, err := conn.Exec(ctx, "delete from whispers where body like $1", marker+"%"); err != nil {
					return err
				}
				return conn.QueryRow(ctx, "select pg_walfile_name(pg_current_wal_lsn())").Scan(&deleteWAL)
			})
			w.deletedUpTo = n
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w.deletedUpTo < 0 {
		t.Fatalf("the workload ended before its DELETE: -drill.write %s is too short", d)
	}
	if waited {
		t.Logf("the workload wrote %.1fs past -drill.write, until the DELETE's WAL was archived", (time.Since(start) - d).Seconds())
	}
	return w
}

// checkLatest checks the writes found after a restore to the latest point: none that the
// DELETE removed, and every later one up to the last that survived, which it returns.
func (w *workload) checkLatest(t *testing.T, found map[int]int64) int {
	t.Helper()
	last := w.deletedUpTo
	for n := w.deletedUpTo + 1; n < len(w.acked); n++ {
		if _, ok := found[n]; ok {
			last = n
		}
	}
	for n := range found {
		if n <= w.deletedUpTo {
			t.Errorf("write %d is back after the restore to the latest point, yet the DELETE removed it", n)
		}
	}
	for n := w.deletedUpTo + 1; n <= last; n++ {
		if id, ok := found[n]; !ok || id != w.acked[n].id {
			t.Errorf("write %d (whisper %d) is missing before the last surviving write %d (found id %d)", n, w.acked[n].id, last, id)
		}
	}
	if last == w.deletedUpTo {
		t.Fatalf("no write after the DELETE survived: the archive is older than the DELETE (%d writes after it lost)", len(w.acked)-last-1)
	}
	return last
}

// checkBeforeDelete checks the writes found after the restore to beforeDelete: exactly
// those the DELETE removed.
func (w *workload) checkBeforeDelete(t *testing.T, found map[int]int64) {
	t.Helper()
	for n := 0; n <= w.deletedUpTo; n++ {
		if id, ok := found[n]; !ok || id != w.acked[n].id {
			t.Errorf("write %d (whisper %d), acknowledged before %s, is missing after the restore to that time", n, w.acked[n].id, w.beforeDelete.Format(time.TimeOnly))
		}
	}
	for n := range found {
		if n > w.deletedUpTo {
			t.Errorf("write %d, acknowledged after the named time, is in the restore to that time", n)
		}
	}
}
