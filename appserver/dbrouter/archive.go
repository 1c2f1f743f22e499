package dbrouter

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// archiveCollector reads the primary's WAL archiver statistics (pg_stat_archiver) at scrape
// time: the age of the newest archived segment bounds what a point-in-time restore loses
// (the RPO), whether the archive is pgBackRest's (the dev stack) or RDS's.
type archiveCollector struct{ r *Router }

var (
	archivingDesc = prometheus.NewDesc("muejam_db_wal_archiving",
		"1 if the primary archives its WAL (archive_mode on), else 0.", nil, nil)
	archiveSuccessDesc = prometheus.NewDesc("muejam_db_wal_archive_last_success_timestamp_seconds",
		"When the primary last archived a WAL segment (pg_stat_archiver.last_archived_time); 0 if never since its statistics were reset.", nil, nil)
	archiveFailureDesc = prometheus.NewDesc("muejam_db_wal_archive_last_failure_timestamp_seconds",
		"When archiving a WAL segment last failed on the primary (pg_stat_archiver.last_failed_time); 0 if never.", nil, nil)
)

// archiveTimeout bounds the scrape's query, so that an unreachable primary does not hold the
// scrape: the series are then left out, and muejam_db_node_up says why.
const archiveTimeout = 2 * time.Second

const archiveSQL = `select current_setting('archive_mode') <> 'off',
	coalesce(extract(epoch from last_archived_time), 0)::float8,
	coalesce(extract(epoch from last_failed_time), 0)::float8
	from pg_stat_archiver`

// Describe implements prometheus.Collector.
func (c *archiveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{archivingDesc, archiveSuccessDesc, archiveFailureDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *archiveCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.r.writeNode()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), archiveTimeout)
	defer cancel()
	var on bool
	var success, failure float64
	if err := n.pool.QueryRow(ctx, archiveSQL).Scan(&on, &success, &failure); err != nil {
		return
	}
	archiving := 0.0
	if on {
		archiving = 1
	}
	ch <- prometheus.MustNewConstMetric(archivingDesc, prometheus.GaugeValue, archiving)
	ch <- prometheus.MustNewConstMetric(archiveSuccessDesc, prometheus.GaugeValue, success)
	ch <- prometheus.MustNewConstMetric(archiveFailureDesc, prometheus.GaugeValue, failure)
}
