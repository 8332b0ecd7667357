package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/workers"
)

// An operator's view of failed jobs: list them, then put one back on its
// queue. The job here fails its only try in a worker.
func ExampleInspector() {
	store, err := os.MkdirTemp("", "jetfleet-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(store)
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: store})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{MemoryStorage: true}, "default"); err != nil {
		log.Fatal(err)
	}

	d, _ := bus.NewDispatcher(js, bus.Config{})
	if _, err := d.DispatchJSON(ctx, "send-welcome-email", []byte(`{"user_id":7}`), bus.JobID("welcome-7"), bus.Tries(1)); err != nil {
		log.Fatal(err)
	}
	// A worker runs the job; its only try fails, so it is dead-lettered.
	w := workers.New(js, workers.Config{StopWhenEmpty: true})
	workers.Register(w, func(ctx context.Context, job *workers.Job[welcomeEmail]) error {
		return errors.New("smtp: connection refused")
	})
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}

	in, _ := bus.NewInspector(js, bus.Config{})
	failed, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: "default", Limit: 50})
	if err != nil {
		log.Fatal(err)
	}
	for _, fj := range failed {
		fmt.Println(fj.ID, fj.Queue, fj.Kind, fj.Attempts, fj.Error)
	}
	n, err := in.Retry(ctx, "welcome-7")
	fmt.Println("retried:", n, err)
	// Output:
	// welcome-7 default send-welcome-email 1 smtp: connection refused
	// retried: 1 <nil>
}
