package workers

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// A job delivered again is not always a job whose worker died. The server
// redelivers a message whose ack it did not get within AckWait, and in a
// cluster an ack or a heartbeat that reaches no consumer leader (one is
// being elected after a server stopped) is lost without a word: the job
// comes back while its first delivery still runs or waits for a slot in
// the same worker, or after it ran to its end. Both are told apart here,
// so that such a job is neither run twice by one worker nor, its tries
// used up, dead-lettered as "interrupted" after it succeeded.

// heldAlready reports whether m is another delivery of a job message this
// loop holds now (running, waiting for a limit's slot or being settled).
// The server keys heartbeats and acks by the message's stream sequence,
// so the first delivery's heartbeats keep both owned and its ack, nak or
// term settles both: the new one is left unanswered.
func (l *loop) heldAlready(m jetstream.Msg) bool {
	if firstDelivery(m.Reply()) {
		return false // nearly every delivery: no parse, no allocation
	}
	md, err := m.Metadata()
	if err != nil || md.NumDelivered < 2 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for r := range l.inFlight {
		if held, err := r.msg.Metadata(); err == nil && held.Sequence.Stream == md.Sequence.Stream && held.Stream == md.Stream {
			l.w.log.Warn().Str("subject", m.Subject()).Uint64("seq", md.Sequence.Stream).Uint64("delivered", md.NumDelivered).
				Msg("job delivered again while this worker holds it (a heartbeat or ack was lost); left to the delivery it holds")
			return true
		}
	}
	return false
}

// firstDelivery reports whether reply, a JetStream ack subject
// ($JS.ACK.<stream>.<consumer>.<delivered>.… or, with a domain and an
// account hash, $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.…),
// says the message is delivered for the first time. Anything else is not
// known to be a first delivery.
func firstDelivery(reply string) bool {
	index := 4 // of the delivery count, counting $JS as 0
	if strings.Count(reply, ".") >= 11 {
		index = 6
	}
	for range index {
		i := strings.IndexByte(reply, '.')
		if i < 0 {
			return false
		}
		reply = reply[i+1:]
	}
	return strings.HasPrefix(reply, "1.")
}

// settledBefore settles a job delivered again that needs no run: its
// dead letter is stored already (resumeDeadLetter), or it ended already
// (endedBefore). Their lookups can wait, up to 10 s, for a cluster that
// elects a leader: the job is heartbeated meanwhile, or the server would
// hand it out again after AckWait.
func (l *loop) settledBefore(r *run, job *bus.Job) bool {
	r.busy.Store(true)
	defer r.busy.Store(false)
	return l.resumeDeadLetter(r, job) || l.endedBefore(r, job)
}

// endedBefore settles a job delivered again whose record says that this
// very message ran to its end (succeeded, or was cancelled) — its ack was
// lost: it is acked (or removed) again, not run. It reports whether it
// settled the job. With the job history off, when the record cannot be
// read, or when the record was lost with the ack (both are sent without
// waiting for the server: a NATS node that dies at that moment takes
// both), the job runs again: at least once.
func (l *loop) endedBefore(r *run, job *bus.Job) bool {
	if !l.status.history {
		return false
	}
	ctx, cancel := context.WithTimeout(l.jobCtx, 10*time.Second)
	state, ended, err := l.dlq.Ended(ctx, job.ID, job.Seq)
	cancel()
	if err != nil {
		r.log.Warn().Err(err).Msg("cannot read the job's record to tell whether it ended already; running it")
		return false
	}
	if !ended {
		return false
	}
	r.log.Warn().Str("state", string(state)).Msg("job ended already (its ack was lost); settling it again without running it")
	if state == bus.JobCancelled {
		l.removeCancelled(r, job)
		return true
	}
	l.acked(r, job) // frees a unique job's key too
	return true
}
