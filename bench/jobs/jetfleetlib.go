package jobs

import (
	"context"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/workers"
)

// jetfleetLibSystem is a worker built on jetfleet's library, as a team
// writes one into its own small binary: workers.Worker with a JSON log
// line per job on stderr and the job history (the package's defaults),
// run as this binary's `worker jetfleet-lib`, like the Asynq, River and
// raw JetStream workers. It measures what jetfleet's worker costs apart
// from the all-in-one `jetfleet` binary: every worker of this benchmark
// is the same executable, so their memory compares like for like.
type jetfleetLibSystem struct{ jetfleetSystem }

func newJetfleetLib(ctx context.Context, cfg Config) (system, error) {
	s, err := newJetfleet(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return jetfleetLibSystem{s.(jetfleetSystem)}, nil
}

func (jetfleetLibSystem) name() string { return "jetfleet-lib" }

func (s jetfleetLibSystem) startWorkers(context.Context) ([]*proc, error) {
	return s.startSelfWorkers("jetfleet-lib")
}

// libWorker runs no-op jobs of queue default with package workers.
func libWorker(ctx context.Context, url string, c int) error {
	nc, js, err := connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	w := workers.New(js, workers.Config{Queues: []string{"default"}, Concurrency: c, Logger: log})
	workers.Register(w, func(context.Context, *workers.Job[workers.Noop]) error { return nil })
	fmt.Println("ready")
	return w.Run(ctx)
}
