package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hibiken/asynq"
)

// asynqSystem is Asynq on Redis: Enqueue from C goroutines, worker
// processes of Concurrency C (this binary's `worker asynq`).
type asynqSystem struct {
	cfg    Config
	client *asynq.Client
	insp   *asynq.Inspector
}

func newAsynq(_ context.Context, cfg Config) (system, error) {
	opt := asynq.RedisClientOpt{Addr: cfg.RedisAddr}
	return &asynqSystem{cfg: cfg, client: asynq.NewClient(opt), insp: asynq.NewInspector(opt)}, nil
}

func (*asynqSystem) name() string { return "asynq" }

func (s *asynqSystem) close() { _ = s.client.Close(); _ = s.insp.Close() }

// reset empties the queue of what an earlier run left pending. It does
// not delete the queue: the client registers a queue once per client,
// so a deleted one would be invisible to done.
func (s *asynqSystem) reset(context.Context) error {
	if _, err := s.insp.DeleteAllPendingTasks("default"); err != nil && !strings.Contains(err.Error(), "does not exist") {
		return err
	}
	return nil
}

func (s *asynqSystem) enqueue(ctx context.Context, n, c int) error {
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
				if _, err := s.client.EnqueueContext(ctx, asynq.NewTask("noop", payload(i))); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	err, _ := firstErr.Load().(error)
	return err
}

func (s *asynqSystem) done(context.Context) (bool, error) {
	qi, err := s.insp.GetQueueInfo("default")
	if err != nil {
		return false, err
	}
	return qi.Pending+qi.Active+qi.Scheduled+qi.Retry == 0, nil
}

func (s *asynqSystem) startWorkers(context.Context) ([]*proc, error) {
	var ps []*proc
	for range s.cfg.Workers {
		p, err := startProc(nil, "ready", s.cfg.Self, "worker", "asynq", "-redis", s.cfg.RedisAddr, "-c", fmt.Sprint(s.cfg.Concurrency))
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// asynqWorker is the Asynq worker process, with Asynq's defaults but
// Concurrency c and no logging of its own.
func asynqWorker(ctx context.Context, addr string, c int) error {
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{Concurrency: c, LogLevel: asynq.WarnLevel})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	srv.Shutdown()
	return nil
}
