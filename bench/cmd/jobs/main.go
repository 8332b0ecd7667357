// Command jobs measures jobs end to end: `jetfleet work` beside raw
// JetStream, Asynq and River, interleaved, one line per system and the
// ratio to raw JetStream. Run it from bench/:
//
//	go run ./cmd/jobs                                 # 100,000 jobs, C=16, workers attached first, 3 runs
//	go run ./cmd/jobs -n 20000 -enqueue-first         # jobs stored first; the workers' start-up is timed
//	go run ./cmd/jobs -nats-nodes 3 -replicas 3       # a 3-node cluster, R3 streams
//	go run ./cmd/jobs -sync always -redis-fsync       # fsync every write; Redis AOF appendfsync always
//	go run ./cmd/jobs -systems jetfleet -workers 4    # four worker processes
//	go run ./cmd/jobs -systems jetfleet,jetfleet-lib,jetstream,asynq,river -n 20000   # memory: every worker but jetfleet's is this binary
//	go run ./cmd/jobs -systems jetfleet,jetstream -workers-curve 1,2,4   # a scaling curve, interleaved
//
// It builds ../cmd/jetfleet, starts `jetfleet nats` on free loopback
// ports, uses the machine's Redis (127.0.0.1:6379) unless -redis-fsync
// starts one of its own, and PostgreSQL at -pg.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetfleet/jetfleet/bench/jobs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		err = jobs.Worker(ctx, os.Args[2:])
	} else {
		err = run(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobs:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	n := flag.Int("n", 100_000, "jobs per measurement")
	c := flag.Int("c", 16, "concurrency of each worker process")
	workers := flag.Int("workers", 1, "worker processes per system")
	curve := flag.String("workers-curve", "", "measure each system with each of these numbers of worker processes, interleaved (e.g. 1,2,4)")
	runs := flag.Int("runs", 3, "interleaved rounds")
	enqueueFirst := flag.Bool("enqueue-first", false, "store the jobs before the workers start (their start-up is timed)")
	systems := flag.String("systems", "jetfleet,jetstream,asynq,river", "systems to measure (also jetfleet-lib: a worker on package workers in this binary)")
	natsNodes := flag.Int("nats-nodes", 1, "jetfleet nats nodes (a cluster when more than 1); workers are spread over them")
	replicas := flag.Int("replicas", 1, "replicas of JOBS and the raw stream")
	syncInterval := flag.String("sync", "", "jetfleet nats --sync-interval (e.g. always); empty: the server's default")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis for Asynq")
	redisFsync := flag.Bool("redis-fsync", false, "start a Redis of our own with --appendonly yes --appendfsync always")
	pg := flag.String("pg", "postgres://jfbench:jfbench@127.0.0.1:5432/jfbench?sslmode=disable", "PostgreSQL for River")
	bin := flag.String("jetfleet", "", "jetfleet binary (default: built from ..)")
	workBin := flag.String("work-bin", "", "binary whose \"work\" command runs the jetfleet workers (default: the jetfleet binary; e.g. a service's own binary built on package node)")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound of one measurement")
	flag.Parse()
	for _, f := range []struct {
		name string
		v    int
	}{{"n", *n}, {"c", *c}, {"workers", *workers}, {"runs", *runs}, {"nats-nodes", *natsNodes}, {"replicas", *replicas}} {
		if f.v < 1 {
			return fmt.Errorf("-%s %d: must be at least 1", f.name, f.v)
		}
	}
	if *replicas > *natsNodes {
		return fmt.Errorf("-replicas %d: at most -nats-nodes (%d)", *replicas, *natsNodes)
	}

	dir, err := os.MkdirTemp("", "jfbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "jetfleet")
		build := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/jetfleet")
		build.Dir = ".." // jetfleet's own module, not this one
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ../cmd/jetfleet (run from bench/): %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := jobs.Config{
		N: *n, Concurrency: *c, Workers: *workers, EnqueueFirst: *enqueueFirst, Runs: *runs,
		Systems: strings.Split(*systems, ","), Timeout: *timeout, Self: self, Jetfleet: *bin, WorkBinary: *workBin,
		Replicas: *replicas, RedisAddr: *redisAddr, PostgresDSN: *pg, Log: os.Stderr,
	}
	for _, v := range strings.Split(*curve, ",") {
		if v == "" {
			continue
		}
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			return fmt.Errorf("-workers-curve %q: want numbers of worker processes like 1,2,4", *curve)
		}
		cfg.WorkerCounts = append(cfg.WorkerCounts, k)
	}
	if strings.Contains(*systems, "jet") {
		servers, urls, err := jobs.StartNATS(ctx, *bin, *natsNodes, *syncInterval)
		defer func() {
			for _, s := range servers {
				s.Stop()
			}
		}()
		if err != nil {
			return err
		}
		cfg.NATSURLs = urls
	}
	if *redisFsync && strings.Contains(*systems, "asynq") {
		s, addr, err := jobs.StartRedis(ctx, "--appendonly", "yes", "--appendfsync", "always")
		if err != nil {
			return err
		}
		defer s.Stop()
		cfg.RedisAddr = addr
	}
	fmt.Printf("# n=%d c=%d workers=%d nats_nodes=%d replicas=%d sync=%q redis=%s redis_fsync=%v cpus=%d started=%s\n",
		*n, *c, *workers, *natsNodes, *replicas, *syncInterval, cfg.RedisAddr, *redisFsync, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	return jobs.Run(ctx, cfg, os.Stdout)
}
