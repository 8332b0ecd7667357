package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// puller takes ready jobs from one queue's consumer without waiting, over
// one long-lived reply subscription. nats.go's FetchNoWait subscribes and
// unsubscribes on every call, and each new subscription empties the
// server's subject cache: under load that churn cost more than the jobs.
// Pulls are serial (the fetch loop makes one at a time), so every reply on
// the inbox belongs to the pull in progress.
type puller struct {
	nc      *nats.Conn
	subject string // $JS.API.CONSUMER.MSG.NEXT.JOBS.q-<queue>
	inbox   string
	sub     *nats.Subscription
	msgs    chan *nats.Msg
}

// pullWait bounds one no-wait pull; the server answers within a round trip.
const pullWait = 5 * time.Second

func newPuller(js jetstream.JetStream, queue string) (*puller, error) {
	p := &puller{nc: js.Conn(), subject: apiPrefix(js) + "CONSUMER.MSG.NEXT." + bus.JobsStream + "." + bus.ConsumerName(queue)}
	return p, p.subscribe()
}

func (p *puller) subscribe() error {
	p.inbox = p.nc.NewInbox()
	p.msgs = make(chan *nats.Msg, 1024)
	sub, err := p.nc.ChanSubscribe(p.inbox, p.msgs)
	if err != nil {
		return fmt.Errorf("workers: subscribe for pulls on %s: %w", p.subject, err)
	}
	p.sub = sub
	return nil
}

// close ends the reply subscription.
func (p *puller) close() { _ = p.sub.Unsubscribe() }

// fetchNoWait returns up to n jobs that are ready now. The server sends the
// jobs, and a "404 No Messages" or "408" status when it has fewer than n.
func (p *puller) fetchNoWait(n int) ([]jetstream.Msg, error) {
	req, _ := json.Marshal(struct {
		Batch  int  `json:"batch"`
		NoWait bool `json:"no_wait"`
	}{n, true})
	if err := p.nc.PublishRequest(p.subject, p.inbox, req); err != nil {
		return nil, fmt.Errorf("workers: pull from %s: %w", p.subject, err)
	}
	var out []jetstream.Msg
	timeout := time.NewTimer(pullWait)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case m := <-p.msgs:
			if done, err := pullStatus(m); done || err != nil {
				return out, err
			}
			if m.Reply == "" { // a heartbeat or other control message
				continue
			}
			out = append(out, wireMsg{m: m, nc: p.nc})
		case <-timeout.C:
			// A late answer must not land in a later pull: start over on a
			// fresh inbox. Jobs sent to the old one come back after AckWait.
			_ = p.sub.Unsubscribe()
			if err := p.subscribe(); err != nil {
				return out, err
			}
			return out, fmt.Errorf("workers: pull from %s: no answer within %s", p.subject, pullWait)
		}
	}
	return out, nil
}

// pullStatus reads a status message: 404 and 408 end the pull; other
// statuses (409 consumer deleted, leadership changed...) end it with an error.
func pullStatus(m *nats.Msg) (done bool, err error) {
	if len(m.Data) > 0 || m.Header == nil {
		return false, nil
	}
	code := m.Header.Get("Status")
	switch code {
	case "":
		return false, nil
	case "404", "408":
		return true, nil
	case "100":
		return false, nil
	}
	return true, fmt.Errorf("workers: pull ended with status %s %s", code, m.Header.Get("Description"))
}

// wireMsg is a delivered job message answered with the JetStream ack
// protocol on its reply subject.
type wireMsg struct {
	m  *nats.Msg
	nc *nats.Conn
}

var _ jetstream.Msg = wireMsg{}

func (w wireMsg) Data() []byte         { return w.m.Data }
func (w wireMsg) Headers() nats.Header { return w.m.Header }
func (w wireMsg) Subject() string      { return w.m.Subject }
func (w wireMsg) Reply() string        { return w.m.Reply }
func (w wireMsg) Ack() error           { return w.answer("+ACK") }
func (w wireMsg) Nak() error           { return w.answer("-NAK") }
func (w wireMsg) InProgress() error    { return w.answer("+WPI") }
func (w wireMsg) Term() error          { return w.answer("+TERM") }

func (w wireMsg) TermWithReason(reason string) error { return w.answer("+TERM " + reason) }

func (w wireMsg) NakWithDelay(delay time.Duration) error {
	return w.answer(`-NAK {"delay": ` + strconv.FormatInt(delay.Nanoseconds(), 10) + `}`)
}

// answer publishes on the reply subject through the connection rather than
// the subscription, which may be closed by then (a drain's hand-back).
func (w wireMsg) answer(body string) error { return w.nc.Publish(w.m.Reply, []byte(body)) }

// DoubleAck acks and waits for the server to confirm it.
func (w wireMsg) DoubleAck(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pullWait)
		defer cancel()
	}
	_, err := w.nc.RequestWithContext(ctx, w.m.Reply, []byte("+ACK"))
	return err
}

// Metadata parses the reply subject, as nats.go does for its own messages
// (parseAckReply, without the allocations of nats.go's, for the forms
// nats-server sends; nats.go's for anything else).
func (w wireMsg) Metadata() (*jetstream.MsgMetadata, error) {
	if md, ok := parseAckReply(w.m.Reply); ok {
		return md, nil
	}
	md, err := w.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered,
		NumPending:   md.NumPending,
		Timestamp:    md.Timestamp,
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Domain:       md.Domain,
	}, nil
}

// apiPrefix is the JetStream API prefix js uses ("$JS.API." by default,
// "$JS.<domain>.API." with a domain), for the pull requests nats.go does
// not make the way the puller needs.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	default:
		return jetstream.DefaultAPIPrefix
	}
}

// parseAckReply reads a JetStream ack subject: $JS.ACK.<stream>.<consumer>.
// <delivered>.<stream seq>.<consumer seq>.<time ns>.<pending>, or the form
// with <domain>.<account hash> before the stream and a token after. It
// reports false for anything else.
func parseAckReply(s string) (*jetstream.MsgMetadata, bool) {
	rest, ok := strings.CutPrefix(s, "$JS.ACK.")
	if !ok {
		return nil, false
	}
	var tok [12]string
	n := 0
	for ; n < len(tok); n++ {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			tok[n] = rest
			n++
			break
		}
		tok[n], rest = rest[:i], rest[i+1:]
	}
	md := &jetstream.MsgMetadata{}
	var t []string
	switch {
	case n == 7:
		t = tok[:7]
	case n >= 10 && n < len(tok):
		if tok[0] != "_" {
			md.Domain = tok[0]
		}
		t = tok[2:9]
	default:
		return nil, false
	}
	var num [5]uint64
	for i, v := range t[2:] {
		u, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, false
		}
		num[i] = u
	}
	md.Stream, md.Consumer = t[0], t[1]
	md.NumDelivered, md.Sequence.Stream, md.Sequence.Consumer = num[0], num[1], num[2]
	md.Timestamp, md.NumPending = time.Unix(0, int64(num[3])), num[4]
	return md, true
}
