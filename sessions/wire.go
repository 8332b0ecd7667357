package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// wire reads and writes keys of the bucket with plain NATS requests built
// here rather than through nats.go's KeyValue, which picks one kind of get
// per bucket and costs more per call. It reads with the two JetStream
// reads: a direct get, which any replica answers from what it has applied,
// and a leader get, which only the stream's leader answers; it writes with
// a JetStream publish that expects the key's current revision.
type wire struct {
	nc *nats.Conn
	// directPrefix + key is the subject of a direct get of the key's last
	// value: $JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>.
	directPrefix string
	// leaderSubject is $JS.API.STREAM.MSG.GET.KV_<bucket>.
	leaderSubject string
	// infoSubject is $JS.API.STREAM.INFO.KV_<bucket>.
	infoSubject string
	// keyPrefix + key is the key's subject: $KV.<bucket>.<key>.
	keyPrefix string
}

func newWire(js jetstream.JetStream, bucketName string) wire {
	opts := js.Options()
	api := "$JS.API."
	switch {
	case opts.Domain != "":
		api = "$JS." + opts.Domain + ".API."
	case opts.APIPrefix != "":
		api = opts.APIPrefix
		if api[len(api)-1] != '.' {
			api += "."
		}
	}
	stream := "KV_" + bucketName
	keyPrefix := "$KV." + bucketName + "."
	return wire{nc: js.Conn(), keyPrefix: keyPrefix,
		directPrefix:  api + "DIRECT.GET." + stream + "." + keyPrefix,
		leaderSubject: api + "STREAM.MSG.GET." + stream, infoSubject: api + "STREAM.INFO." + stream}
}

// stored is one read of a key: its value and revision, or found false when
// the key has no value (never written, deleted, purged, expired).
type stored struct {
	value []byte
	rev   uint64
	found bool
}

// direct reads key from whichever replica answers first.
func (g wire) direct(ctx context.Context, key string) (stored, error) {
	msg, err := g.nc.RequestWithContext(ctx, g.directPrefix+key, nil)
	if err != nil {
		return stored{}, err
	}
	if len(msg.Data) == 0 {
		switch status := msg.Header.Get("Status"); status {
		case "404":
			return stored{}, nil
		case "":
		default:
			return stored{}, fmt.Errorf("direct get: status %s %s", status, msg.Header.Get("Description"))
		}
	}
	rev, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return stored{}, fmt.Errorf("direct get: bad %s header: %w", jetstream.SequenceHeader, err)
	}
	if deleted(msg.Header) {
		return stored{rev: rev}, nil
	}
	return stored{value: msg.Data, rev: rev, found: true}, nil
}

// deleted reports whether h marks a KV delete or purge, or a marker the
// server wrote when a value aged out.
func deleted(h nats.Header) bool {
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}

// call sends a JetStream API request and decodes its JSON answer into
// resp; what names the request in a malformed answer's error.
func (w wire) call(ctx context.Context, req *nats.Msg, what string, resp any) error {
	msg, err := w.nc.RequestMsgWithContext(ctx, req)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) asError() error {
	return &jetstream.APIError{Code: e.Code, ErrorCode: jetstream.ErrorCode(e.ErrCode), Description: e.Description}
}

// leaderGetResponse is the answer to $JS.API.STREAM.MSG.GET.
type leaderGetResponse struct {
	Error   *apiError `json:"error"`
	Message *struct {
		Seq    uint64 `json:"seq"`
		Header []byte `json:"hdrs"`
		Data   []byte `json:"data"`
	} `json:"message"`
}

// JetStream's error codes for "no message found" and "insufficient
// storage resources available" (a stream's MaxBytes the server cannot
// reserve).
const (
	errCodeNoMessage = 10037
	errCodeNoStorage = 10047
)

// leader reads key from the stream's leader.
func (g wire) leader(ctx context.Context, key string) (stored, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{g.keyPrefix + key})
	if err != nil {
		return stored{}, err
	}
	var resp leaderGetResponse
	if err := g.call(ctx, &nats.Msg{Subject: g.leaderSubject, Data: req}, "leader get", &resp); err != nil {
		return stored{}, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == errCodeNoMessage:
		return stored{}, nil
	case resp.Error != nil:
		return stored{}, resp.Error.asError()
	case resp.Message == nil:
		return stored{}, errors.New("leader get: empty answer")
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return stored{}, fmt.Errorf("leader get: headers: %w", err)
		}
		if deleted(h) {
			return stored{rev: resp.Message.Seq}, nil
		}
	}
	return stored{value: resp.Message.Data, rev: resp.Message.Seq, found: true}, nil
}

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Error *apiError `json:"error"`
	Seq   uint64    `json:"seq"`
}

// JetStream's answers to a publish whose expected revision it cannot
// accept: the key is at another revision, or (in a cluster) an earlier
// write of the key is still being replicated, so it cannot tell yet.
const (
	errCodeWrongLastSequence = 10071
	errCodeInFlight          = 10164
)

// errInFlight is a write refused because an earlier write of the same key
// was still being replicated; making it again a moment later is safe.
var errInFlight = errors.New("an earlier write of the session is still being replicated")

// update stores value under key if the key's last revision is still rev (0:
// the key has no value), and returns the new revision. A key changed
// meanwhile is jetstream.ErrKeyRevisionMismatch. id names the write: a
// retry of it with the same id whose first try was stored (its answer
// lost) is answered, in a cluster, with that try's revision rather than
// stored again (see Manager.write).
func (w wire) update(ctx context.Context, key string, value []byte, rev uint64, id string) (uint64, error) {
	msg := &nats.Msg{Subject: w.keyPrefix + key, Data: value, Header: nats.Header{
		jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(rev, 10)},
		jetstream.MsgIDHeader:               []string{id}}}
	var ack pubAck
	if err := w.call(ctx, msg, "publish", &ack); err != nil {
		return 0, err
	}
	switch {
	case ack.Error != nil && ack.Error.ErrCode == errCodeWrongLastSequence:
		return 0, jetstream.ErrKeyRevisionMismatch
	case ack.Error != nil && ack.Error.ErrCode == errCodeInFlight:
		return 0, errInFlight
	case ack.Error != nil:
		return 0, ack.Error.asError()
	case ack.Seq == 0:
		return 0, errors.New("publish: no sequence in the acknowledgement")
	}
	return ack.Seq, nil
}

// streamInfoResponse is the part of $JS.API.STREAM.INFO's answer start
// reads.
type streamInfoResponse struct {
	Error   *apiError `json:"error"`
	Created time.Time `json:"created"`
	State   *struct {
		FirstSeq uint64 `json:"first_seq"`
	} `json:"state"`
}

// streamStart is where the bucket's stream starts: the lowest revision its
// leader still holds (every write below it has been replaced, deleted, or
// removed by the bucket's limits: its TTL, its byte bound), and when the
// stream was created (a bucket deleted and made again is a new stream).
type streamStart struct {
	first   uint64
	created time.Time
}

// start asks the stream leader where the bucket's stream starts.
func (w wire) start(ctx context.Context) (streamStart, error) {
	var resp streamInfoResponse
	if err := w.call(ctx, &nats.Msg{Subject: w.infoSubject}, "stream info", &resp); err != nil {
		return streamStart{}, err
	}
	switch {
	case resp.Error != nil:
		return streamStart{}, resp.Error.asError()
	case resp.State == nil:
		return streamStart{}, errors.New("stream info: no state in the answer")
	}
	return streamStart{first: resp.State.FirstSeq, created: resp.Created}, nil
}

// firstSeq is the lowest revision the bucket's stream leader still holds.
func (w wire) firstSeq(ctx context.Context) (uint64, error) {
	s, err := w.start(ctx)
	return s.first, err
}
