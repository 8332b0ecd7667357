package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/readmodel"
)

// DBReads counts the read model's reads by target (the role of the member
// that ran them: primary or replica) and reason (balanced, causal, sticky,
// token_fallback, marked, not_plain, no_replica, retried: see
// readmodel.ReadReason). Use ObserveRead as readmodel.Config.ObserveRead.
type DBReads struct {
	reads *prometheus.CounterVec
}

// NewDBReads creates jetfleet_db_reads_total and registers it on reg.
func NewDBReads(reg prometheus.Registerer) (*DBReads, error) {
	d := &DBReads{reads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetfleet_db_reads_total",
		Help: "Read-model reads by the role of the member that ran them and why they went there (sticky and token_fallback are reads sent to the primary for consistency).",
	}, []string{"target", "reason"})}
	if err := register(reg, d.reads); err != nil {
		return nil, err
	}
	return d, nil
}

// ObserveRead counts one read; use it as readmodel.Config.ObserveRead.
func (d *DBReads) ObserveRead(target readmodel.Role, why readmodel.ReadReason) {
	d.reads.WithLabelValues(string(target), string(why)).Inc()
}

// dbMembers is a collector of the pool members' health.
type dbMembers struct {
	members                func() []readmodel.MemberState
	up, inPool, replicaLag *prometheus.Desc
}

// RegisterDBMembers registers on reg a collector of the read model's
// members as of their last health check (members is usually
// (*readmodel.DB).Members, which costs no query):
// jetfleet_db_member_up{member,role}, jetfleet_db_member_in_pool{member,role}
// and jetfleet_db_replica_lag_seconds{member}. The member label is the
// configured address, so it is bounded by the configuration.
func RegisterDBMembers(reg prometheus.Registerer, members func() []readmodel.MemberState) error {
	l := []string{"member", "role"}
	return register(reg, &dbMembers{
		members:    members,
		up:         prometheus.NewDesc("jetfleet_db_member_up", "1 when the last health check reached the database member.", l, nil),
		inPool:     prometheus.NewDesc("jetfleet_db_member_in_pool", "1 when the member serves its role: a replica in the read pool, a primary up and writable.", l, nil),
		replicaLag: prometheus.NewDesc("jetfleet_db_replica_lag_seconds", "A replica's staleness as of its last health check.", []string{"member"}, nil),
	})
}

// Describe implements prometheus.Collector.
func (c *dbMembers) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.inPool
	ch <- c.replicaLag
}

// Collect implements prometheus.Collector.
func (c *dbMembers) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.members() {
		role := string(m.Role)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, boolFloat(m.Up), m.Addr, role)
		ch <- prometheus.MustNewConstMetric(c.inPool, prometheus.GaugeValue, boolFloat(m.InPool), m.Addr, role)
		if m.Role == readmodel.RoleReplica {
			ch <- prometheus.MustNewConstMetric(c.replicaLag, prometheus.GaugeValue, m.Lag.Seconds(), m.Addr)
		}
	}
}
