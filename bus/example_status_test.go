package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/workers"
)

// A job followed by ID: delayed, then cancelled before its time; another
// one succeeds with a result, and is found by its tag.
func ExampleInspector_Job() {
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
	in, _ := bus.NewInspector(js, bus.Config{})

	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 7}, bus.JobID("remind-7"), bus.Delay(time.Hour)); err != nil {
		log.Fatal(err)
	}
	st, _ := in.Job(ctx, "remind-7")
	fmt.Println(st.ID, st.State)
	if _, err := in.Cancel(ctx, "remind-7"); err != nil {
		log.Fatal(err)
	}
	st, _ = in.Job(ctx, "remind-7")
	fmt.Println(st.ID, st.State)
	_, err = in.Cancel(ctx, "remind-7")
	fmt.Println(errors.Is(err, bus.ErrJobFinished))

	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 8}, bus.JobID("welcome-8"), bus.Tags("user:8")); err != nil {
		log.Fatal(err)
	}
	w := workers.New(js, workers.Config{StopWhenEmpty: true})
	workers.Register(w, func(ctx context.Context, job *workers.Job[welcomeEmail]) error {
		_ = job.Progress(ctx, 0.5, "rendering")
		return job.SetResult(map[string]string{"message_id": "m-1"})
	})
	if err := w.Run(ctx); err != nil { // runs the job, then stops: the queue is empty
		log.Fatal(err)
	}
	jobs, _ := in.Jobs(ctx, bus.JobFilter{Tag: "user:8"})
	for _, st := range jobs {
		fmt.Println(st.ID, st.State, string(st.Result))
	}
	// Output:
	// remind-7 delayed
	// remind-7 cancelled
	// true
	// welcome-8 succeeded {"message_id":"m-1"}
}
