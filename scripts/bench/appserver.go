package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/internal/promtext"
)

// The app-server scenarios (Needs: "appserver") run bin/appserver over the dev Postgres
// primary and replica that scripts/services.sh keeps under .run/ (started or reused), in a
// database of their own, seeded once and reused while its seed parameters and the code that
// shapes the data are unchanged.
const (
	pgPrimary   = "127.0.0.1:55432" // scripts/services.sh
	pgReplica   = "127.0.0.1:55433"
	pgUser      = "postgres"
	benchDBName = "muejam_bench"

	// servicesTimeout bounds `scripts/services.sh up`, which may install Debian packages
	// and create the clusters on a fresh machine.
	servicesTimeout = 5 * time.Minute
	// seedTimeout bounds migrating and seeding the bench database.
	seedTimeout = 3 * time.Minute
)

// benchSeed is the data set of the app-server scenarios: `appserver seed -scale 0.1`, about
// 430k rows (5k stories, 50k chapters, 100k whispers), seeded in a few seconds. Every hot
// query is index-backed, so the scale moves the figures little; it is kept small so that a
// fresh machine seeds within the bench's time budget.
var benchSeed = seedParams{Scale: 0.1, Seed: 1}

// seedParams are the arguments of `appserver seed` the bench database was made with.
type seedParams struct {
	Scale float64
	Seed  int64
}

func (p seedParams) args() []string {
	return []string{"-scale", strconv.FormatFloat(p.Scale, 'g', -1, 64), "-seed", strconv.FormatInt(p.Seed, 10)}
}

// seedMarkerPrefix starts the comment of a seeded bench database (COMMENT ON DATABASE): the
// marker lives with the data, so a database dropped or recreated by anyone is never taken for
// a seeded one.
const seedMarkerPrefix = "muejam-bench seed v1"

// seedMarker is what the comment of a bench database seeded with p from sources must start
// with; sources is the hash of the migrations and the generator (sourceHash).
func seedMarker(p seedParams, sources string) string {
	return fmt.Sprintf("%s scale=%g seed=%d sources=%s", seedMarkerPrefix, p.Scale, p.Seed, sources)
}

// seedComment is the database comment after a seed: the marker, then what the seed did.
func seedComment(marker string, at time.Time, took time.Duration, rows int64) string {
	return fmt.Sprintf("%s; seeded %s in %.1fs, %d rows", marker, at.UTC().Format("2006-01-02 15:04 UTC"), took.Seconds(), rows)
}

// matchSeedComment reports whether comment is that of a database seeded under marker, and
// returns what it says about that seed.
func matchSeedComment(comment, marker string) (info string, ok bool) {
	m, info, _ := strings.Cut(comment, "; ")
	if m != marker {
		return "", false
	}
	return info, true
}

// sourceFiles are the files whose content decides the seeded data set: the migrations (the
// schema) and the generator.
var sourceFiles = []string{"appserver/migrate/sql/*.sql", "appserver/seed/*.go"}

// sourceHash hashes the names and contents of sourceFiles under root (tests excluded): a
// bench database seeded by other code is seeded again.
func sourceHash(root string) (string, error) {
	var files []string
	for _, pattern := range sourceFiles {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return "", err
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "_test.go") {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		return "", fmt.Errorf("no file matches %v under %s", sourceFiles, root)
	}
	slices.Sort(files)
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// pgURL is the URL of database db on the node at addr.
func pgURL(addr, db string) string {
	return "postgres://" + pgUser + "@" + addr + "/" + db + "?sslmode=disable"
}

// appEnv is what the app-server scenarios run against.
type appEnv struct {
	// Addr is the app server's API address, Metrics its internal metrics listener.
	Addr, Metrics string
	// Story is a published story with the most whispers; Whispers how many it has.
	Story    int64
	Whispers int64
	// Note says which data set, and whether this run seeded it (and how long it took).
	Note string
}

// servicesUp runs `scripts/services.sh up`: it starts the dev Postgres primary, replica and
// Valkey, or reuses them when they run, and installs what is missing. They stay up after the
// bench, as after `make test` (other tests share them; `make services-down` stops them).
func servicesUp(ctx context.Context, root string, log io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, servicesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "services.sh"), "up")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/services.sh up: %w", err)
	}
	return nil
}

// ensureBenchDB makes sure benchDBName on the primary is migrated and seeded with benchSeed
// by the current sources: it reuses it when its comment says so, else drops it, creates it
// and runs `appserver migrate` and `appserver seed`. Then it waits until the replica has
// replayed the primary's WAL, so that reads from it see the data set. It returns a note.
func ensureBenchDB(ctx context.Context, root, appBin string, log io.Writer) (string, error) {
	sources, err := sourceHash(root)
	if err != nil {
		return "", err
	}
	marker := seedMarker(benchSeed, sources)
	admin, err := pgx.Connect(ctx, pgURL(pgPrimary, "postgres"))
	if err != nil {
		return "", fmt.Errorf("primary: %w", err)
	}
	defer admin.Close(context.Background())
	var comment string
	err = admin.QueryRow(ctx, `select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = $1`, benchDBName).Scan(&comment)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("primary: %w", err)
	}
	var note string
	if info, ok := matchSeedComment(comment, marker); ok {
		note = fmt.Sprintf("database %s reused (scale %g, %s)", benchDBName, benchSeed.Scale, info)
		fmt.Fprintf(log, "bench: %s\n", note)
	} else {
		fmt.Fprintf(log, "bench: seeding database %s at scale %g (its comment %q is not %q)\n", benchDBName, benchSeed.Scale, comment, marker)
		// Only our own database: WITH (FORCE) ends the connections to it, which can only be
		// an app server a killed bench left behind.
		for _, sql := range []string{"drop database if exists " + benchDBName + " with (force)", "create database " + benchDBName} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				return "", fmt.Errorf("primary: %s: %w", sql, err)
			}
		}
		start := time.Now()
		rows, err := seedBenchDB(ctx, appBin, log)
		if err != nil {
			return "", err
		}
		took := time.Since(start)
		c := seedComment(marker, time.Now(), took, rows)
		if _, err := admin.Exec(ctx, "comment on database "+benchDBName+" is "+quoteLiteral(c)); err != nil {
			return "", fmt.Errorf("primary: marking %s seeded: %w", benchDBName, err)
		}
		note = fmt.Sprintf("database %s seeded this run: scale %g, %s rows in %.1fs (migrations included)", benchDBName, benchSeed.Scale, fmtNum(float64(rows), 0), took.Seconds())
		fmt.Fprintf(log, "bench: %s\n", note)
	}
	var lsn string
	if err := admin.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("primary: %w", err)
	}
	if err := waitReplay(ctx, lsn, 30*time.Second); err != nil {
		return "", err
	}
	return note, nil
}

// seededRows is the last line `appserver seed` prints.
var seededRows = regexp.MustCompile(`(?m)^seeded (\d+) rows in`)

// seedBenchDB runs `appserver seed -migrate=true` with benchSeed into the bench database and
// returns how many rows it wrote.
func seedBenchDB(ctx context.Context, appBin string, log io.Writer) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	args := append([]string{"seed", "-migrate=true"}, benchSeed.args()...)
	cmd := exec.CommandContext(ctx, appBin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+pgURL(pgPrimary, benchDBName), "DATABASE_PASSWORD=")
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("appserver %s: %w", strings.Join(args, " "), err)
	}
	m := seededRows.FindStringSubmatch(out.String())
	if m == nil {
		return 0, nil
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n, nil
}

// waitReplay waits until the replica has replayed the primary's WAL up to lsn.
func waitReplay(ctx context.Context, lsn string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		caught, err := replayedTo(ctx, lsn)
		if caught {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica at %s has not replayed the primary's WAL up to %s within %s (last error: %v)", pgReplica, lsn, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func replayedTo(ctx context.Context, lsn string) (bool, error) {
	c, err := pgx.Connect(ctx, pgURL(pgReplica, "postgres"))
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	var ok bool
	err = c.QueryRow(ctx, "select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", lsn).Scan(&ok)
	return ok, err
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// pickStory returns the published, undeleted story with the most whispers about it (the
// lowest ID among equals, so the same data set gives the same story), and their number.
func pickStory(ctx context.Context) (id, whispers int64, err error) {
	c, err := pgx.Connect(ctx, pgURL(pgPrimary, benchDBName))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close(context.Background())
	err = c.QueryRow(ctx, `select s.id, count(*) from stories s join whispers w on w.story_id = s.id and w.deleted_at is null
		where s.published_at is not null and s.deleted_at is null
		group by s.id order by count(*) desc, s.id limit 1`).Scan(&id, &whispers)
	if err != nil {
		return 0, 0, fmt.Errorf("picking a story: %w", err)
	}
	return id, whispers, nil
}

// appServerEnv is the environment of the bench's app server: the bench database on the
// primary and the replica, the bench's Valkey, its own loopback ports, and nothing inherited
// that would change where it connects (a DATABASE_PASSWORD reference, another edge's CIDRs)
// or how it signs (READ_YOUR_WRITES_KEY: unset, the development key, which the template
// app-chain-cache.Caddyfile's read_your_writes verifies with dev_key).
func appServerEnv(addr, metrics, valkey string) []string {
	return []string{
		"APP_ADDR=" + addr,
		"APP_METRICS_ADDR=" + metrics,
		"DATABASE_URL=" + pgURL(pgPrimary, benchDBName),
		"DATABASE_REPLICA_URLS=" + pgURL(pgReplica, benchDBName),
		"VALKEY_ADDR=" + valkey,
		"DATABASE_PASSWORD=",
		"READ_YOUR_WRITES_KEY=",
		"READ_YOUR_WRITES_KEY_PREVIOUS=",
		"MIGRATE_ON_START=false",
		"TRUSTED_EDGE_CIDRS=127.0.0.0/8",
	}
}

// startAppServer brings up what the app-server scenarios need once the dev services run
// (servicesUp): the seeded bench database, and bin/appserver on free loopback ports with
// Valkey at valkey (the bench's own); it waits until the app's health check answers 200
// (primary, replica and Valkey reachable).
func startAppServer(ctx context.Context, ps *procSet, root, appBin, dir, cpus, valkey string, log io.Writer) (appEnv, error) {
	var env appEnv
	note, err := ensureBenchDB(ctx, root, appBin, log)
	if err != nil {
		return env, err
	}
	if env.Story, env.Whispers, err = pickStory(ctx); err != nil {
		return env, err
	}
	for _, a := range []*string{&env.Addr, &env.Metrics} {
		if *a, err = freeAddr(); err != nil {
			return env, err
		}
	}
	p, err := ps.startEnv(dir, cpus, appServerEnv(env.Addr, env.Metrics, valkey), appBin)
	if err != nil {
		return env, err
	}
	if err := p.waitStatus(ctx, "http://"+env.Addr+"/v1/health", http.StatusOK, 30*time.Second); err != nil {
		return env, fmt.Errorf("appserver: %w", err)
	}
	env.Note = fmt.Sprintf("bin/appserver over the dev primary (writes) and replica (reads); %s; the story paths ask for story %d (%d whispers)",
		note, env.Story, env.Whispers)
	return env, nil
}

// appSettle is how long a round waits after wrk before reading the app server's counters:
// the requests wrk left in flight are answered within it, and are not charged to the next
// scenario.
const appSettle = 300 * time.Millisecond

// appCounters are the app server's counters a round is charged with: requests it answered
// and statements it sent, all and to replicas.
type appCounters struct {
	Requests, Queries, ReplicaQueries float64
}

// readAppCounters reads appCounters from the app server's internal metrics at addr.
func readAppCounters(ctx context.Context, addr string) (appCounters, error) {
	text, err := promtext.Fetch(ctx, addr)
	if err != nil {
		return appCounters{}, err
	}
	return appCounters{
		Requests:       promtext.Sum(text, "muejam_app_http_requests_total", ""),
		Queries:        promtext.Sum(text, "muejam_db_queries_total", ""),
		ReplicaQueries: promtext.Sum(text, "muejam_db_queries_total", `node="replica`),
	}, nil
}

func (c appCounters) sub(o appCounters) appCounters {
	return appCounters{c.Requests - o.Requests, c.Queries - o.Queries, c.ReplicaQueries - o.ReplicaQueries}
}

// appNote says how much of a scenario's measured load reached the app server and Postgres:
// with the cache on, almost nothing; with it off, every request.
// l1Bytes, when not negative, is the edge cache's L1 size after the rounds.
func appNote(id string, c appCounters, requests int64, l1Bytes float64) string {
	s := fmt.Sprintf("%s: the app server answered %s during the rounds (wrk completed %s in time)",
		id, count(c.Requests, "request"), count(float64(requests), "request"))
	if c.Queries > 0 {
		s += fmt.Sprintf(" and sent %s, %.0f%% to the replica", count(c.Queries, "statement"), 100*c.ReplicaQueries/c.Queries)
		if c.Requests > 0 {
			s += fmt.Sprintf(" (%.2f per 100 requests it answered)", 100*c.Queries/c.Requests)
		}
	} else {
		s += " and sent no statement"
	}
	switch {
	case l1Bytes >= 1<<20:
		s += fmt.Sprintf("; the edge cache's L1 then held %.1f MiB", l1Bytes/(1<<20))
	case l1Bytes >= 0:
		s += fmt.Sprintf("; the edge cache's L1 then held %.1f KiB", l1Bytes/(1<<10))
	}
	return s
}

// edgeL1Bytes reads the edge cache's L1 size from the Caddy metrics at admin; -1 when
// there is none (no edge_cache) or the metrics do not answer.
func edgeL1Bytes(ctx context.Context, admin string) float64 {
	text, err := promtext.Fetch(ctx, admin)
	if err != nil || !strings.Contains(text, "muejam_edge_cache_l1_bytes") {
		return -1
	}
	return promtext.Sum(text, "muejam_edge_cache_l1_bytes", "")
}

// count is n and the noun, plural unless n is 1.
func count(n float64, noun string) string {
	if n != 1 {
		noun += "s"
	}
	return fmtNum(n, 0) + " " + noun
}
