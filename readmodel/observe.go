package readmodel

// ReadReason says why a read went to the member it went to; it is reported
// with the member's role to Config.ObserveRead, for metrics.
type ReadReason string

// Reasons reported to Config.ObserveRead.
const (
	// ReadBalanced: a replica of the read pool, round-robin.
	ReadBalanced ReadReason = "balanced"
	// ReadCausal: a replica that has applied the context's causal token.
	ReadCausal ReadReason = "causal"
	// ReadTokenFallback: the primary, because no replica reached the
	// context's causal token within CausalWait.
	ReadTokenFallback ReadReason = "token_fallback"
	// ReadSticky: the primary, because the context's Sticky scope wrote.
	ReadSticky ReadReason = "sticky"
	// ReadMarked: the primary, because the context was marked UsePrimary.
	ReadMarked ReadReason = "marked"
	// ReadNotPlain: the primary, because the statement locks or is not a
	// read.
	ReadNotPlain ReadReason = "not_plain"
	// ReadNoReplica: the primary, because no replica is configured or none
	// is in the read pool.
	ReadNoReplica ReadReason = "no_replica"
	// ReadRetried: the second try of a read whose first member failed.
	ReadRetried ReadReason = "retried"
)

// observeRead reports a read on m to Config.ObserveRead when it is set.
func (d *DB) observeRead(m *member, why ReadReason) {
	if d.cfg.ObserveRead != nil {
		d.cfg.ObserveRead(m.role, why)
	}
}
