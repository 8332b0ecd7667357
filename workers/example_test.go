package workers_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/workers"
)

// SendInvoice is a job's arguments; Kind names the handler that runs it.
type SendInvoice struct {
	Order int `json:"order"`
}

func (SendInvoice) Kind() string { return "send-invoice" }

// exampleJetStream starts a NATS server for an example and returns the
// JetStream context and the cleanup.
func exampleJetStream() (jetstream.JetStream, func()) {
	store, err := os.MkdirTemp("", "jetfleet-example-")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: store})
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	return js, func() { nc.Close(); srv.Shutdown(); os.RemoveAll(store) }
}

// Register binds a handler to its job kind with its own defaults; the job
// arrives decoded into its type. A handler error is retried after the
// backoff until the tries run out; Permanent ends the job at once.
func ExampleRegister() {
	js, stop := exampleJetStream()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, _ := bus.NewDispatcher(js, bus.Config{})

	w := workers.New(js, workers.Config{Concurrency: 1}) // one at a time: the output has an order
	sent := make(chan struct{})
	failures := 0
	workers.Register(w, func(ctx context.Context, job *workers.Job[SendInvoice]) error {
		if job.Args.Order < 0 {
			return workers.Permanent(fmt.Errorf("order %d does not exist", job.Args.Order))
		}
		if failures++; failures == 1 {
			return errors.New("mail server busy") // retried after the backoff
		}
		fmt.Printf("invoice for order %d sent on attempt %d\n", job.Args.Order, job.Attempt)
		close(sent)
		return nil
	}, workers.HandlerTries(3), workers.HandlerBackoff(10*time.Millisecond), workers.HandlerTimeout(time.Minute))

	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		log.Fatal(err)
	}
	d.Dispatch(ctx, SendInvoice{Order: -1}, bus.JobID("invoice-bad"))
	d.Dispatch(ctx, SendInvoice{Order: 42}, bus.JobID("invoice-42"))
	stopped := make(chan error)
	go func() { stopped <- w.Run(ctx) }()
	<-sent
	cancel()
	if err := <-stopped; err != nil {
		log.Fatal(err)
	}
	in, _ := bus.NewInspector(js, bus.Config{})
	fj, err := in.FailedJob(context.Background(), "invoice-bad")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dead letter:", fj.ID, fj.Attempts, fj.Error)
	// Output:
	// invoice for order 42 sent on attempt 2
	// dead letter: invoice-bad 1 order -1 does not exist
}

// Run takes jobs from the queues in priority order until ctx ends (SIGTERM
// in a real worker), then drains: running jobs finish within Grace.
// Every worker process of a queue shares its durable consumer, so more
// processes take more jobs.
func ExampleWorker_Run() {
	js, stop := exampleJetStream()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	done := make(chan int, 1)
	w := workers.New(js, workers.Config{Queues: []string{"high", "default"}, Concurrency: 4, Grace: 5 * time.Second})
	workers.Register(w, func(ctx context.Context, job *workers.Job[SendInvoice]) error {
		done <- job.Args.Order
		return nil
	})
	stopped := make(chan error)
	go func() { stopped <- w.Run(ctx) }() // provisions its queues' consumers, then fetches

	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "high", "default"); err != nil {
		log.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	d.Dispatch(ctx, SendInvoice{Order: 1}, bus.OnQueue("high"))
	order := <-done
	cancel() // drain
	fmt.Println("ran order", order, "then stopped:", <-stopped)
	// Output: ran order 1 then stopped: <nil>
}

// OnDeadLetter lets the application react when a job of a kind fails for
// good, whichever way it ends in DLQ: here the order is marked failed.
// The hook runs once DLQ holds the letter and before the job leaves its
// queue; an error would hand the job back to run the hook again later.
func ExampleOnDeadLetter() {
	js, stop := exampleJetStream()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	marked := make(chan string, 1)
	w := workers.New(js, workers.Config{})
	workers.Register(w, func(ctx context.Context, job *workers.Job[SendInvoice]) error {
		panic("template missing") // a panic on the last try dead-letters the job too
	}, workers.HandlerTries(1), workers.OnDeadLetter(func(ctx context.Context, job *workers.Job[SendInvoice], reason string) error {
		marked <- fmt.Sprintf("order %d marked failed: %s", job.Args.Order, strings.SplitN(reason, "\n", 2)[0])
		return nil // e.g. UPDATE orders SET status = 'failed' WHERE id = ?
	}))
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		log.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	d.Dispatch(ctx, SendInvoice{Order: 7})
	stopped := make(chan error)
	go func() { stopped <- w.Run(ctx) }()
	fmt.Println(<-marked)
	cancel()
	<-stopped
	// Output: order 7 marked failed: panic: template missing
}

// ChargeCard is a job kind whose handler calls a payment API.
type ChargeCard struct {
	Order int `json:"order"`
}

func (ChargeCard) Kind() string { return "charge-card" }

// MaxConcurrent caps a kind across every worker process of the fleet;
// RateLimit bounds its starts per period the same way. A job over a limit
// waits without using a try. Release, returned by a handler, runs the job
// again later without using a try either.
func ExampleMaxConcurrent() {
	js, stop := exampleJetStream()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, _ := bus.NewDispatcher(js, bus.Config{})

	w := workers.New(js, workers.Config{Concurrency: 8})
	done := make(chan string, 3)
	workers.Register(w, func(ctx context.Context, job *workers.Job[ChargeCard]) error {
		if job.Released == 0 && job.Args.Order == 3 {
			return workers.Release(100 * time.Millisecond) // the API said "later": this try does not count
		}
		done <- fmt.Sprintf("order %d: attempt %d, released %d", job.Args.Order, job.Attempt, job.Released)
		return nil
	}, workers.MaxConcurrent(1), workers.RateLimit(10, time.Second), workers.HandlerTries(1))
	go func() { _ = w.Run(ctx) }()

	for order := 1; order <= 3; order++ {
		if _, err := d.Dispatch(ctx, ChargeCard{Order: order}); err != nil {
			log.Fatal(err)
		}
	}
	results := map[string]bool{}
	for range 3 {
		results[<-done] = true
	}
	fmt.Println(results["order 1: attempt 1, released 0"], results["order 2: attempt 1, released 0"], results["order 3: attempt 1, released 1"])
	// Output:
	// true true true
}
