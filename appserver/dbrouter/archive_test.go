package dbrouter

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/muejam/edge/internal/testenv"
)

// TestArchiveMetrics runs a private primary that archives (to nowhere: archive_command
// true, then false) and checks the muejam_db_wal_archive_* series follow pg_stat_archiver.
func TestArchiveMetrics(t *testing.T) {
	c := testenv.NewClusterWith(t, testenv.ClusterOptions{PrimaryConf: `
archive_mode = on
archive_command = 'true'
`})
	reg := prometheus.NewRegistry()
	r := newRouter(t, c.PrimaryURL, c.ReplicaURL, Config{Registerer: reg})
	ctx := testCtx(t)
	gauge := func(name string) float64 {
		t.Helper()
		v, err := testutil.GatherAndCount(reg, name)
		if err != nil || v != 1 {
			t.Fatalf("%s: %d series (%v), want 1", name, v, err)
		}
		families, _ := reg.Gather()
		for _, f := range families {
			if f.GetName() == name {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}

	// pg_switch_wal() does nothing when no WAL was written since the last switch, and the
	// replica's base backup ended with one: something is written first.
	start := float64(time.Now().Add(-time.Second).Unix())
	for _, sql := range []string{"create table archive_first (i int)", "select pg_switch_wal()"} {
		if _, err := r.Primary().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, "muejam_db_wal_archive_last_success_timestamp_seconds moved after pg_switch_wal()", func() bool {
		return gauge("muejam_db_wal_archive_last_success_timestamp_seconds") >= start
	})
	if v := gauge("muejam_db_wal_archiving"); v != 1 {
		t.Errorf("muejam_db_wal_archiving = %v on a primary with archive_mode on, want 1", v)
	}
	if v := gauge("muejam_db_wal_archive_last_failure_timestamp_seconds"); v != 0 {
		t.Errorf("muejam_db_wal_archive_last_failure_timestamp_seconds = %v before any failure, want 0", v)
	}

	// A failing archive_command (a full or unreachable repository) shows as a failure newer
	// than the last success.
	for _, sql := range []string{"alter system set archive_command = 'false'", "select pg_reload_conf()"} {
		if _, err := r.Primary().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the archiver rereads its configuration
	for _, sql := range []string{"create table archive_probe (i int)", "select pg_switch_wal()"} {
		if _, err := r.Primary().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, "muejam_db_wal_archive_last_failure_timestamp_seconds past the last success with archive_command false", func() bool {
		return gauge("muejam_db_wal_archive_last_failure_timestamp_seconds") > gauge("muejam_db_wal_archive_last_success_timestamp_seconds")
	})
}
