package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverArgs is River's no-op job.
type riverArgs struct {
	Seq       int    `json:"seq"`
	CreatedAt string `json:"created_at"`
	Pad       string `json:"pad"`
}

func (riverArgs) Kind() string { return "noop" }

type riverNoop struct {
	river.WorkerDefaults[riverArgs]
}

func (riverNoop) Work(context.Context, *river.Job[riverArgs]) error { return nil }

// RiverFetchCooldown replaces River's default (100 ms), which caps a
// worker near MaxWorkers jobs per 100 ms.
const RiverFetchCooldown = time.Millisecond

// riverSystem is River on PostgreSQL: InsertMany in batches of 1,000
// (River's bulk insert) from C goroutines, worker processes of
// MaxWorkers C (this binary's `worker river`).
type riverSystem struct {
	cfg    Config
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
}

func newRiver(ctx context.Context, cfg Config) (system, error) {
	pool, err := pgxpool.New(ctx, cfg.PostgresDSN)
	if err != nil {
		return nil, err
	}
	driver := riverpgxv5.New(pool)
	m, err := rivermigrate.New(driver, nil)
	if err == nil {
		_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("river migrate: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &riverSystem{cfg: cfg, pool: pool, client: client}, nil
}

func (*riverSystem) name() string { return "river" }

func (s *riverSystem) close() { s.pool.Close() }

func (s *riverSystem) reset(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "TRUNCATE river_job")
	return err
}

func (s *riverSystem) enqueue(ctx context.Context, n, c int) error {
	const batch = 1000
	errs := make(chan error, c)
	next := make(chan int, n/batch+1)
	for lo := 0; lo < n; lo += batch {
		next <- lo
	}
	close(next)
	for range c {
		go func() {
			for lo := range next {
				params := make([]river.InsertManyParams, 0, batch)
				for i := lo; i < min(lo+batch, n); i++ {
					params = append(params, river.InsertManyParams{Args: riverArgs{Seq: i, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano), Pad: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}})
				}
				if _, err := s.client.InsertMany(ctx, params); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range c {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (s *riverSystem) done(ctx context.Context) (bool, error) {
	var left int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state <> 'completed'").Scan(&left)
	return left == 0, err
}

func (s *riverSystem) startWorkers(context.Context) ([]*proc, error) {
	var ps []*proc
	for range s.cfg.Workers {
		p, err := startProc(nil, "ready", s.cfg.Self, "worker", "river", "-pg", s.cfg.PostgresDSN, "-c", fmt.Sprint(s.cfg.Concurrency))
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// riverWorker is the River worker process: River's defaults but
// MaxWorkers c and RiverFetchCooldown.
func riverWorker(ctx context.Context, dsn string, c int) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverNoop{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c}},
		Workers:       workers,
		FetchCooldown: RiverFetchCooldown,
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Stop(sctx)
}
