package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/jobbench"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/node"
)

// runBench is `jetfleet bench jobs`: jetfleet's job path, with the job
// history on and off, beside a raw JetStream baseline on a private
// embedded server (file storage in a
// temporary directory), so the figures are comparable and nothing touches
// a real deployment.
func runBench(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "bench", "bench jobs [--n 100000] [--concurrency 16] [--rate 1000] [--latency-jobs 3000] [--rounds 3]")
	n := fs.Int("n", 100_000, "jobs in the throughput runs")
	concurrency := fs.Int("concurrency", 16, "worker concurrency (and the raw consumer's outstanding messages)")
	rate := fs.Int("rate", 1000, "offered load of the latency runs, jobs per second")
	latencyJobs := fs.Int("latency-jobs", 3000, "jobs sent in each latency run")
	rounds := fs.Int("rounds", 3, "times jetfleet is measured with the job history off and on, alternately (medians are reported)")
	rest, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || rest[0] != "jobs" {
		return node.UsageError(fs, "want `bench jobs` and flags; got %q", rest)
	}
	for _, f := range []struct {
		name     string
		v, least int
		most     int
	}{
		{"n", *n, 1, 10_000_000}, {"concurrency", *concurrency, 1, 10_000}, {"rate", *rate, 1, 1_000_000},
		{"latency-jobs", *latencyJobs, 1, 10_000_000}, {"rounds", *rounds, 1, 100},
	} {
		if f.v < f.least || f.v > f.most {
			return node.UsageError(fs, "--%s %d: want %d to %d", f.name, f.v, f.least, f.most)
		}
	}
	dir, err := os.MkdirTemp("", "jetfleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "benchmarking on an embedded server (file store in %s)...\n", dir)
	r, err := jobbench.Run(ctx, js, jobbench.Options{N: *n, Concurrency: *concurrency, Rate: *rate, LatencyJobs: *latencyJobs, Rounds: *rounds})
	if err != nil {
		return err
	}
	r.Print(a.stdout)
	return nil
}
