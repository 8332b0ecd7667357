// Package bucket opens the JetStream KV buckets that hold sessions. It
// creates the bucket's stream itself, rather than through
// CreateKeyValue, so that the caller decides whether direct gets are on:
// with AllowDirect any replica, including a follower that has not yet
// applied the latest write, may answer a read, so a caller that turns them
// on must tell a stale answer from a fresh one itself (package sessions
// does, by the revision the client knows); without it every read through
// nats.go is answered by the stream leader, which has applied every write
// it acknowledged.
package bucket

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/settle"
)

// Spec describes a session bucket.
type Spec struct {
	// Name is the bucket name: letters, digits, '-' and '_'.
	Name string
	// Description is stored on the stream for operators.
	Description string
	// Replicas is the stream's replica count (1 on a single server, 3 in a
	// cluster). An existing bucket with more keeps its count.
	Replicas int
	// TTL is the bucket's MaxAge: every value disappears this long after it
	// was written unless it is written again.
	TTL time.Duration
	// Storage is file (the default) or memory.
	Storage jetstream.StorageType
	// AllowDirect lets every replica answer direct gets.
	AllowDirect bool
	// MaxBytes bounds the bucket's stream; when a write would pass it, the
	// server removes the oldest values first (the least recently written
	// keys). Zero or negative: no bound, and a write is never refused for
	// space by the bucket itself.
	MaxBytes int64
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// ValidName reports whether name is a usable bucket name.
func ValidName(name string) bool { return validName.MatchString(name) }

// StreamName is the JetStream stream behind the bucket.
func StreamName(bucket string) string { return "KV_" + bucket }

// attemptTimeout bounds one try of Open.
const attemptTimeout = 2 * time.Second

// Open creates the bucket when it does not exist, brings its TTL, byte
// bound and direct-get setting in line with spec when it does (and its
// replica count, when spec asks for more: it is never lowered), and binds
// a KeyValue handle to it. What a settling cluster answers (no answer while
// it elects its leaders, a peer not heard from yet) is tried again until
// ctx ends.
func Open(ctx context.Context, js jetstream.JetStream, spec Spec) (jetstream.KeyValue, error) {
	if !ValidName(spec.Name) {
		return nil, fmt.Errorf("bucket name %q: use only letters, digits, '-' and '_'", spec.Name)
	}
	var kv jetstream.KeyValue
	err := settle.Retry(ctx, attemptTimeout, func(ctx context.Context) (err error) {
		kv, err = open(ctx, js, spec)
		return err
	})
	return kv, err
}

func open(ctx context.Context, js jetstream.JetStream, spec Spec) (jetstream.KeyValue, error) {
	if err := ensureStream(ctx, js, spec); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("bind KV bucket %q: %w", spec.Name, err)
	}
	return kv, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, spec Spec) error {
	want := streamConfig(spec)
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = createStream(ctx, js, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return ensureStream(ctx, js, spec) // another node created it first
		}
		if err != nil {
			return fmt.Errorf("create KV bucket %q: %w", spec.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up KV bucket %q: %w", spec.Name, err)
	}
	have := st.CachedInfo().Config
	// A node never lowers the replica count: a web node started with the
	// default (1) must not undo `jetfleet up --replicas 3`, and nodes
	// asking for different counts must not flip the bucket back and forth.
	want.Replicas = max(want.Replicas, have.Replicas)
	if have.MaxAge == want.MaxAge && have.Replicas == want.Replicas && have.AllowDirect == want.AllowDirect &&
		have.Duplicates == want.Duplicates && have.MaxBytes == want.MaxBytes && have.Discard == want.Discard {
		return nil
	}
	have.MaxAge, have.Replicas, have.Duplicates = want.MaxAge, want.Replicas, want.Duplicates
	have.AllowDirect, have.MaxBytes, have.Discard = want.AllowDirect, want.MaxBytes, want.Discard
	if _, err := js.UpdateStream(ctx, have); err != nil {
		return fmt.Errorf("update KV bucket %q (ttl %s, replicas %d, max bytes %d, direct gets %v): %w",
			spec.Name, want.MaxAge, want.Replicas, want.MaxBytes, want.AllowDirect, err)
	}
	return nil
}

// errCodeStreamCreate is the server's "error creating store for stream":
// its files could not be made, as when a stream of the same name was
// deleted a moment before and its directory is still being removed.
const errCodeStreamCreate = 10049

// createStream creates want, asking again for a second while the server
// cannot make its store yet (a bucket deleted and made again at once).
func createStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	for try := 0; ; try++ {
		st, err := js.CreateStream(ctx, want)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStreamCreate || try == 10 {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// streamConfig mirrors what nats.go's CreateKeyValue builds (so the nats
// CLI treats the stream as a KV bucket), except that AllowDirect is the
// caller's choice and a bounded bucket discards its oldest values rather
// than refuse new ones: a bucket full of sessions nobody uses any more
// must not lock new visitors out.
func streamConfig(spec Spec) jetstream.StreamConfig {
	replicas := spec.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	maxBytes, discard := int64(-1), jetstream.DiscardNew
	if spec.MaxBytes > 0 {
		maxBytes, discard = spec.MaxBytes, jetstream.DiscardOld
	}
	dup := 2 * time.Minute
	if spec.TTL > 0 && spec.TTL < dup {
		dup = spec.TTL
	}
	return jetstream.StreamConfig{
		Name:              StreamName(spec.Name),
		Description:       spec.Description,
		Subjects:          []string{"$KV." + spec.Name + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          maxBytes,
		MaxMsgs:           -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		MaxAge:            spec.TTL,
		Storage:           spec.Storage,
		Replicas:          replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        dup,
		Discard:           discard,
		AllowDirect:       spec.AllowDirect,
	}
}
