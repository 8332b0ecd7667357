package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// payload is a job's body: a small JSON document (~100 bytes), as every
// system here carries.
func payload(seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"kind":"noop","created_at":%q,"pad":"%s"}`, seq, time.Now().UTC().Format(time.RFC3339Nano), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
}

// natsSide is what jetfleet and raw JetStream share: a producer's
// connection, async publishing from c goroutines, and "done" as an empty
// WorkQueue stream.
type natsSide struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  string
	subject string
}

func newNATSSide(cfg Config, stream, subject string) (*natsSide, error) {
	nc, err := nats.Connect(cfg.NATSURLs[0])
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsSide{cfg: cfg, nc: nc, js: js, stream: stream, subject: subject}, nil
}

func (s *natsSide) close() { s.nc.Close() }

func (s *natsSide) purge(ctx context.Context) error {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.stream, err)
	}
	return st.Purge(ctx)
}

func (s *natsSide) enqueue(ctx context.Context, n, c int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				for {
					_, err := s.js.PublishAsync(s.subject, payload(i))
					if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
						continue
					}
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	select {
	case <-s.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *natsSide) done(ctx context.Context) (bool, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return false, err
	}
	return st.CachedInfo().State.Msgs == 0, nil
}

// workerURL spreads worker i over the servers.
func (s *natsSide) workerURL(i int) string { return s.cfg.NATSURLs[i%len(s.cfg.NATSURLs)] }

// jetfleetSystem is `jetfleet work` with its shipped defaults (per-job
// logging at info, metrics, job history) and --concurrency.
type jetfleetSystem struct{ *natsSide }

func newJetfleet(ctx context.Context, cfg Config) (system, error) {
	side, err := newNATSSide(cfg, "JOBS", "jobs.default.jetfleet-noop")
	if err != nil {
		return nil, err
	}
	// Provision the topology the way a user would; a new cluster elects
	// its JetStream leader first, so try for a minute.
	for try := 1; ; try++ {
		cmd := exec.CommandContext(ctx, cfg.Jetfleet, "dispatch", "default", "jetfleet-noop", "{}")
		cmd.Env = append(cmd.Environ(), "NATS_URL="+cfg.NATSURLs[0])
		out, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if try == 12 {
			side.close()
			return nil, fmt.Errorf("jetfleet dispatch: %w: %s", err, out)
		}
		time.Sleep(5 * time.Second)
	}
	if cfg.Replicas > 1 {
		if err := setReplicas(ctx, side.js, "JOBS", cfg.Replicas); err != nil {
			side.close()
			return nil, err
		}
	}
	return jetfleetSystem{side}, nil
}

func (jetfleetSystem) name() string { return "jetfleet" }

func (s jetfleetSystem) reset(ctx context.Context) error { return s.purge(ctx) }

func (s jetfleetSystem) startWorkers(context.Context) ([]*proc, error) {
	var ps []*proc
	for i := range s.cfg.Workers {
		p, err := startProc([]string{"NATS_URL=" + s.workerURL(i)}, `"worker started"`, cmp.Or(s.cfg.WorkBinary, s.cfg.Jetfleet),
			"work", "--queue", "default", "--concurrency", fmt.Sprint(s.cfg.Concurrency))
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// setReplicas scales a stream, and waits for its replicas to be current.
func setReplicas(ctx context.Context, js jetstream.JetStream, name string, n int) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	c := st.CachedInfo().Config
	if c.Replicas != n {
		c.Replicas = n
		if _, err := js.UpdateStream(ctx, c); err != nil {
			return fmt.Errorf("scale %s to %d replicas: %w", name, n, err)
		}
	}
	for range 300 {
		info, err := st.Info(ctx)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) >= n-1 {
			ok := true
			for _, r := range info.Cluster.Replicas {
				ok = ok && r.Current
			}
			if ok {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("stream %s: %d replicas not current after 30s", name, n)
}

// rawSystem is raw JetStream on the same server: a WorkQueue stream,
// async publishing, and worker processes whose C Consume() callbacks only
// Ack (this binary's `worker jetstream`).
type rawSystem struct{ *natsSide }

// Raw JetStream's stream, consumer and subject.
const (
	RawStream   = "BENCHRAW"
	RawConsumer = "workers"
	RawSubject  = "benchraw.noop"
)

func newRaw(ctx context.Context, cfg Config) (system, error) {
	side, err := newNATSSide(cfg, RawStream, RawSubject)
	if err != nil {
		return nil, err
	}
	var st jetstream.Stream
	for try := 1; try <= 12; try++ { // a new cluster elects its JetStream leader first
		st, err = side.js.CreateOrUpdateStream(ctx, rawStreamConfig(cfg))
		if err == nil {
			break
		}
		time.Sleep(5 * time.Second)
	}
	if err == nil {
		_, err = st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: RawConsumer, AckPolicy: jetstream.AckExplicitPolicy, Replicas: max(cfg.Replicas, 1)})
	}
	if err != nil {
		side.close()
		return nil, err
	}
	return rawSystem{side}, nil
}

func rawStreamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: RawStream, Subjects: []string{"benchraw.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1),
	}
}

func (rawSystem) name() string { return "jetstream" }

func (s rawSystem) reset(ctx context.Context) error { return s.purge(ctx) }

func (s rawSystem) close() {
	_ = s.js.DeleteStream(context.Background(), RawStream)
	s.natsSide.close()
}

func (s rawSystem) startWorkers(context.Context) ([]*proc, error) {
	return s.startSelfWorkers("jetstream")
}

// startSelfWorkers starts the system's worker processes as this binary's
// `worker <system>`, spread over the servers.
func (s *natsSide) startSelfWorkers(system string) ([]*proc, error) {
	var ps []*proc
	for i := range s.cfg.Workers {
		p, err := startProc(nil, "ready", s.cfg.Self, "worker", system, "-url", s.workerURL(i), "-c", fmt.Sprint(s.cfg.Concurrency))
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// connect is a worker process's connection and JetStream context.
func connect(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// rawWorker is the raw JetStream worker process: C Consume() callbacks
// that Ack, until ctx ends.
func rawWorker(ctx context.Context, url string, c int) error {
	nc, js, err := connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	cons, err := js.Consumer(ctx, RawStream, RawConsumer)
	if err != nil {
		return err
	}
	for range c {
		cc, err := cons.Consume(func(m jetstream.Msg) { _ = m.Ack() })
		if err != nil {
			return err
		}
		defer cc.Stop()
	}
	fmt.Println("ready")
	<-ctx.Done()
	return nc.Flush()
}
