package workers

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// TestParseAckReplyAgreesWithNATS checks the fast parse against nats.go's
// on both forms of the ack subject, and that it refuses what is not one.
func TestParseAckReplyAgreesWithNATS(t *testing.T) {
	for _, reply := range []string{
		"$JS.ACK.JOBS.q-default.2.1234.567.1733000000123456789.42",
		"$JS.ACK.hub.ACCHASH.JOBS.q-default.1.99.98.1733000000123456789.0.tok",
		"$JS.ACK._.ACCHASH.JOBS.q-default.3.5.4.1733000000123456789.7.tok",
	} {
		got, ok := parseAckReply(reply)
		if !ok {
			t.Fatalf("parseAckReply(%q) refused it", reply)
		}
		want, err := (&nats.Msg{Reply: reply, Sub: &nats.Subscription{}}).Metadata()
		if err != nil {
			t.Fatalf("nats.go refused %q: %v", reply, err)
		}
		if got.Stream != want.Stream || got.Consumer != want.Consumer || got.Domain != want.Domain ||
			got.NumDelivered != want.NumDelivered || got.NumPending != want.NumPending ||
			got.Sequence.Stream != want.Sequence.Stream || got.Sequence.Consumer != want.Sequence.Consumer ||
			!got.Timestamp.Equal(want.Timestamp) {
			t.Fatalf("%q: got %+v, nats.go %+v", reply, got, want)
		}
	}
	for _, reply := range []string{"", "_INBOX.x", "$JS.ACK.JOBS.q.1.2.3", "$JS.ACK.JOBS.q.x.2.3.4.5", "$JS.ACK.a.b.c.d.e.f.g.h.i.j.k.l.m"} {
		if md, ok := parseAckReply(reply); ok {
			t.Fatalf("parseAckReply(%q) = %+v, want refused", reply, md)
		}
	}
}

// TestFirstDeliveryReadsTheDeliveryCount: both forms of the ack subject,
// a first delivery and later ones; anything else is not a first one.
func TestFirstDeliveryReadsTheDeliveryCount(t *testing.T) {
	for reply, want := range map[string]bool{
		"$JS.ACK.JOBS.q-default.1.1234.567.1733000000123456789.42":             true,
		"$JS.ACK.JOBS.q-default.2.1234.567.1733000000123456789.42":             false,
		"$JS.ACK.JOBS.q-default.11.1234.567.1733000000123456789.42":            false,
		"$JS.ACK.hub.ACCHASH.JOBS.q-default.1.99.98.1733000000123456789.0.tok": true,
		"$JS.ACK.hub.ACCHASH.JOBS.q-default.3.99.98.1733000000123456789.0.tok": false,
		"$JS.ACK._.ACCHASH.JOBS.q-default.1.5.4.1733000000123456789.7.tok":     true,
		"":           false,
		"_INBOX.abc": false,
	} {
		if got := firstDelivery(reply); got != want {
			t.Errorf("firstDelivery(%q) = %v, want %v", reply, got, want)
		}
	}
}
