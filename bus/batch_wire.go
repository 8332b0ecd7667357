package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// This file holds the JetStream calls batches and chains build on, which
// nats.go v1.55 does not wrap: atomic batch publishes (nats-server 2.12+,
// ADR-50: Nats-Batch-Id, Nats-Batch-Sequence, Nats-Batch-Commit),
// compare-and-set publishes (Nats-Expected-Last-Subject-Sequence) and
// reads of a subject's last message from the stream's leader.

// JetStream headers used by batches.
const (
	headerBatchID       = "Nats-Batch-Id"
	headerBatchSeq      = "Nats-Batch-Sequence"
	headerBatchCommit   = "Nats-Batch-Commit"
	headerExpectLastSeq = "Nats-Expected-Last-Subject-Sequence"
	headerTTL           = "Nats-TTL"
)

// JetStream API error codes batches tell apart.
const (
	errCodeWrongLastSeq    = 10071 // a compare-and-set lost: the subject moved on
	errCodeLastSeqInFlight = 10164 // a clustered stream has another write of the subject in flight: the compare-and-set cannot win now
	errCodeAtomicDuplicate = 10201 // an atomic batch holds a Nats-Msg-Id already stored
	errCodeAtomicInflight  = 10210 // too many atomic batches open on the stream (50) or server (1,000)
)

// errBusy is an atomic publish refused because too many were open at once.
var errBusy = errors.New("bus: too many atomic publishes in flight")

// errConflict is a compare-and-set that lost: the subject's last sequence
// was not the expected one, or (on a cluster) another write of the
// subject was still in flight. The caller reads again and retries.
var errConflict = errors.New("bus: concurrent change of the batch's state")

// errDuplicate is an atomic publish refused because one of its messages'
// Nats-Msg-Id was stored already.
var errDuplicate = errors.New("bus: atomic publish holds a job ID stored already")

// pubResponse is JetStream's answer to a publish.
type pubResponse struct {
	Seq   uint64 `json:"seq"`
	Count uint64 `json:"count"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// requestPublish publishes msg as a request and reads JetStream's answer:
// the stored sequence, or errConflict, errDuplicate or another error.
func requestPublish(ctx context.Context, nc *nats.Conn, msg *nats.Msg) (uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("bus: publish %s: %w", msg.Subject, err)
	}
	var resp pubResponse
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return 0, fmt.Errorf("bus: publish %s: bad reply %q: %w", msg.Subject, reply.Data, err)
	}
	if resp.Error != nil {
		switch resp.Error.ErrCode {
		case errCodeWrongLastSeq, errCodeLastSeqInFlight:
			return 0, fmt.Errorf("%w (%s)", errConflict, resp.Error.Description)
		case errCodeAtomicDuplicate:
			return 0, fmt.Errorf("%w (%s)", errDuplicate, resp.Error.Description)
		case errCodeAtomicInflight:
			return 0, fmt.Errorf("%w (%s)", errBusy, resp.Error.Description)
		}
		return 0, fmt.Errorf("bus: publish %s: %s (%d/%d)", msg.Subject, resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
	}
	return resp.Seq, nil
}

// publishAtomic stores msgs in one stream all together or not at all (an
// atomic batch publish): the first message is a request, so that a batch
// the server cannot open now (too many open at once: 50 per stream, 1,000
// per server by default) is known at once and tried again, for up to
// about 5 seconds; the others but the last are sent without waiting, and
// the last commits. It returns the sequence of the last message. The
// stream must allow atomic publish, and the server caps a batch (1,000
// messages by default).
func publishAtomic(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) == 1 {
		return requestPublish(ctx, nc, msgs[0])
	}
	wait := 20 * time.Millisecond
	for try := 0; ; try++ {
		seq, err := publishAtomicOnce(ctx, nc, msgs)
		if !errors.Is(err, errBusy) || try == 10 {
			return seq, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func publishAtomicOnce(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (uint64, error) {
	id := nuid.Next()
	for i, m := range msgs {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header[headerBatchID] = []string{id}
		m.Header[headerBatchSeq] = []string{strconv.Itoa(i + 1)}
		delete(m.Header, headerBatchCommit)
		switch i {
		case len(msgs) - 1:
			m.Header[headerBatchCommit] = []string{"1"}
			return requestPublish(ctx, nc, m)
		case 0:
			if err := openAtomic(ctx, nc, m); err != nil {
				return 0, err
			}
		default:
			if err := nc.PublishMsg(m); err != nil {
				return 0, fmt.Errorf("bus: atomic publish: %w", err)
			}
		}
	}
	return 0, nil
}

// openAtomic sends the first message of an atomic batch as a request: the
// server answers with an empty message once it holds it, or an error.
func openAtomic(ctx context.Context, nc *nats.Conn, m *nats.Msg) error {
	rctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	reply, err := nc.RequestMsgWithContext(rctx, m)
	if err != nil {
		return fmt.Errorf("bus: atomic publish %s: %w", m.Subject, err)
	}
	if len(reply.Data) == 0 {
		return nil
	}
	var resp pubResponse
	if err := json.Unmarshal(reply.Data, &resp); err != nil || resp.Error == nil {
		return nil
	}
	if resp.Error.ErrCode == errCodeAtomicInflight {
		return fmt.Errorf("%w (%s)", errBusy, resp.Error.Description)
	}
	return fmt.Errorf("bus: atomic publish %s: %s (%d/%d)", m.Subject, resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
}

// storedMsg is a message read back from a stream.
type storedMsg struct {
	Seq    uint64
	Header nats.Header
	Data   []byte
	Time   time.Time
}

// lastOnSubject reads the last message on subject from the stream's
// leader ($JS.API.STREAM.MSG.GET, not a direct get that a lagging follower
// may answer): nil when the subject holds none.
func lastOnSubject(ctx context.Context, js jetstream.JetStream, stream, subject string) (*storedMsg, error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	reply, err := js.Conn().RequestWithContext(ctx, wire.APIPrefix(js)+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("bus: get %s: %w", subject, err)
	}
	var resp struct {
		Message *struct {
			Seq    uint64    `json:"seq"`
			Header []byte    `json:"hdrs"`
			Data   []byte    `json:"data"`
			Time   time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("bus: get %s: %w", subject, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return nil, nil
		}
		return nil, fmt.Errorf("bus: get %s: %s", subject, resp.Error.Description)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("bus: get %s: empty reply", subject)
	}
	m := &storedMsg{Seq: resp.Message.Seq, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("bus: get %s: headers: %w", subject, err)
		}
	}
	return m, nil
}

// lastPerSubject reads the last message of each subject matching filter
// with one direct get (multi_last), at most 1,024 (the server's cap); a
// lagging follower may answer, so callers use it for listings only.
func lastPerSubject(ctx context.Context, js jetstream.JetStream, stream, filter string) ([]*storedMsg, error) {
	body, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{[]string{filter}})
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	inbox := js.Conn().NewInbox()
	sub, err := js.Conn().SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("bus: list %s: %w", filter, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := js.Conn().PublishRequest(wire.APIPrefix(js)+"DIRECT.GET."+stream, inbox, body); err != nil {
		return nil, fmt.Errorf("bus: list %s: %w", filter, err)
	}
	var out []*storedMsg
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return out, fmt.Errorf("bus: list %s: %w", filter, err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			switch m.Header.Get("Status") {
			case "204", "404": // end of the batch; nothing matched
				return out, nil
			case "413":
				return out, fmt.Errorf("bus: list %s: more than 1,024 subjects match", filter)
			}
			return out, fmt.Errorf("bus: list %s: status %s %s", filter, m.Header.Get("Status"), m.Header.Get("Description"))
		}
		seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		out = append(out, &storedMsg{Seq: seq, Header: m.Header, Data: m.Data, Time: ts})
		if np := m.Header.Get("Nats-Num-Pending"); np == "0" {
			return out, nil
		}
	}
}

// casHeader is the header of a compare-and-set write of a batch's state:
// stored only if the subject's last sequence is prev (0: no message yet),
// replacing it (Nats-Rollup: sub), kept for ttl.
func casHeader(prev uint64, ttl time.Duration) nats.Header {
	return nats.Header{
		headerExpectLastSeq: []string{strconv.FormatUint(prev, 10)},
		headerRollup:        []string{"sub"},
		headerTTL:           []string{strconv.FormatInt(int64(max(ttl, time.Second)/time.Second), 10)},
	}
}

// isBatchSubject reports whether subject is a batch's state (not a job).
func isBatchSubject(subject string) bool { return strings.HasPrefix(subject, BatchPrefix+".") }
