package dbrouter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/muejam/edge/internal/rywtoken"
)

// metrics are the muejam_db_* series of one router. Labels are bounded: node is a configured
// node name, never a URL.
type metrics struct {
	up         *prometheus.GaugeVec   // node
	role       *prometheus.GaugeVec   // node, role
	lagBytes   *prometheus.GaugeVec   // node
	lagSeconds *prometheus.GaugeVec   // node
	queries    *prometheus.CounterVec // node, kind (read, write)
	retries    *prometheus.CounterVec // kind (read, tx, auth)
	slow       *prometheus.CounterVec // node
	failovers  prometheus.Counter
	tokens     *prometheus.CounterVec // outcome
	pools      *poolCollector
	archive    *archiveCollector
}

func newMetrics(r *Router) *metrics {
	node := []string{"node"}
	return &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "muejam_db_node_up", Help: "1 if the database node answered its last check, else 0.",
		}, node),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "muejam_db_node_role", Help: "1 for the role (primary, replica) the database node last reported.",
		}, []string{"node", "role"}),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "muejam_db_replication_lag_bytes", Help: "WAL bytes the replica has not replayed yet.",
		}, node),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "muejam_db_replication_lag_seconds", Help: "Estimated replication lag of the replica; 0 when it has replayed everything.",
		}, node),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_db_queries_total", Help: "Statements (and WithTx transactions) sent, by node and kind (read, write).",
		}, []string{"node", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_db_retries_total", Help: "Retries: read (on another node after a connection error), tx (serialization failure or deadlock), auth (after a refused password).",
		}, []string{"kind"}),
		slow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_db_slow_queries_total", Help: "Statements slower than the slow-query threshold.",
		}, node),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "muejam_db_failovers_total", Help: "Times the router found a new primary.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "muejam_db_read_your_writes_tokens_total",
			Help: "Read-your-writes tokens requests carried, by outcome: valid (honoured), invalid (forged, malformed or signed with a retired key), expired, future (issued ahead of this clock); all but valid are ignored.",
		}, []string{"outcome"}),
		pools:   &poolCollector{r: r},
		archive: &archiveCollector{r: r},
	}
}

// register registers every series on reg (nil: none).
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, o := range rywtoken.Outcomes {
		m.tokens.WithLabelValues(o.String())
	}
	for _, c := range []prometheus.Collector{m.up, m.role, m.lagBytes, m.lagSeconds, m.queries, m.retries, m.slow, m.failovers, m.tokens, m.pools, m.archive} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// initNode creates a node's series so that they exist before its first event, and returns
// its query counters for reads and writes.
func (m *metrics) initNode(name string) (reads, writes prometheus.Counter) {
	m.slow.WithLabelValues(name)
	return m.queries.WithLabelValues(name, "read"), m.queries.WithLabelValues(name, "write")
}

// observe records a node's status after a check.
func (m *metrics) observe(s NodeStatus) {
	up, primary := 0.0, 0.0
	if s.Up {
		up = 1
	}
	if s.Primary {
		primary = 1
	}
	m.up.WithLabelValues(s.Name).Set(up)
	m.role.WithLabelValues(s.Name, "primary").Set(primary)
	m.role.WithLabelValues(s.Name, "replica").Set(1 - primary)
	m.lagBytes.WithLabelValues(s.Name).Set(float64(s.LagBytes))
	m.lagSeconds.WithLabelValues(s.Name).Set(s.LagSeconds)
}

// poolCollector reads the pools' statistics at scrape time.
type poolCollector struct{ r *Router }

var (
	poolConnsDesc = prometheus.NewDesc("muejam_db_pool_conns",
		"Connections of the node's pool by state (in_use, idle, constructing).", []string{"node", "state"}, nil)
	poolMaxDesc = prometheus.NewDesc("muejam_db_pool_max_conns",
		"Size of the node's pool.", []string{"node"}, nil)
	poolAcquiresDesc = prometheus.NewDesc("muejam_db_pool_acquires_total",
		"Connections acquired from the node's pool.", []string{"node"}, nil)
	poolAcquireSecondsDesc = prometheus.NewDesc("muejam_db_pool_acquire_wait_seconds_total",
		"Total time spent acquiring connections from the node's pool (divide by acquires for the mean wait).", []string{"node"}, nil)
	poolEmptyWaitDesc = prometheus.NewDesc("muejam_db_pool_empty_acquire_wait_seconds_total",
		"Total time acquirers waited because the node's pool had no idle connection.", []string{"node"}, nil)
)

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolConnsDesc, poolMaxDesc, poolAcquiresDesc, poolAcquireSecondsDesc, poolEmptyWaitDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.r.nodes {
		s := n.pool.Stat()
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.AcquiredConns()), n.name, "in_use")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.IdleConns()), n.name, "idle")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.ConstructingConns()), n.name, "constructing")
		ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(s.MaxConns()), n.name)
		ch <- prometheus.MustNewConstMetric(poolAcquiresDesc, prometheus.CounterValue, float64(s.AcquireCount()), n.name)
		ch <- prometheus.MustNewConstMetric(poolAcquireSecondsDesc, prometheus.CounterValue, s.AcquireDuration().Seconds(), n.name)
		ch <- prometheus.MustNewConstMetric(poolEmptyWaitDesc, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds(), n.name)
	}
}
