package bus_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
)

// ResizeImage is a job's arguments: Kind names its handler, the value
// travels as JSON.
type ResizeImage struct {
	ItemID int64 `json:"item_id"`
	Width  int   `json:"width"`
}

func (ResizeImage) Kind() string { return "resize-image" }

// exampleBus starts a NATS server for an example, provisions the queues
// and returns the JetStream context and the cleanup.
func exampleBus(queues ...string) (jetstream.JetStream, func()) {
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
	if err := bus.ProvisionQueues(context.Background(), js, bus.Config{}, queues...); err != nil {
		log.Fatal(err)
	}
	return js, func() { nc.Close(); srv.Shutdown(); os.RemoveAll(store) }
}

// stored counts the messages of JOBS on subject.
func stored(ctx context.Context, js jetstream.JetStream, subject string) uint64 {
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		log.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		log.Fatal(err)
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	return n
}

// Dispatch stores one job and returns its ID once JetStream has
// acknowledged it. Options choose the queue and the job's own settings; an
// ID given with JobID makes a repeat within the duplicate window a no-op.
func ExampleDispatcher_Dispatch() {
	js, stop := exampleBus("high")
	defer stop()
	ctx := context.Background()
	d, _ := bus.NewDispatcher(js, bus.Config{})

	id, err := d.Dispatch(ctx, ResizeImage{ItemID: 42, Width: 160},
		bus.OnQueue("high"), bus.JobID("resize-42-160"), bus.Tries(5), bus.Timeout(2*time.Minute))
	fmt.Println(id, err)
	again, err := d.Dispatch(ctx, ResizeImage{ItemID: 42, Width: 160}, bus.OnQueue("high"), bus.JobID("resize-42-160"))
	fmt.Println(again, err)

	fmt.Println("stored on high:", stored(ctx, js, "jobs.high.>"))

	_, err = d.Dispatch(ctx, ResizeImage{}, bus.OnQueue("High!"))
	fmt.Println(err)
	// Output:
	// resize-42-160 <nil>
	// resize-42-160 <nil>
	// stored on high: 1
	// invalid job: queue name "High!" may only use a-z, 0-9, _ and -
}

// DispatchMany sends a batch with asynchronous publishes and waits for
// every acknowledgement; the IDs are aligned with the batch.
func ExampleDispatcher_DispatchMany() {
	js, stop := exampleBus("default")
	defer stop()
	ctx := context.Background()
	d, _ := bus.NewDispatcher(js, bus.Config{})

	var jobs []bus.DispatchManyParams
	for _, w := range []int{160, 640, 1280} {
		jobs = append(jobs, bus.DispatchManyParams{
			Args: ResizeImage{ItemID: 7, Width: w},
			Opts: []bus.Option{bus.JobID(fmt.Sprintf("resize-7-%d", w))},
		})
	}
	ids, err := d.DispatchMany(ctx, jobs...)
	fmt.Println(ids, err)
	// Output: [resize-7-160 resize-7-640 resize-7-1280] <nil>
}

// A delayed job waits in JetStream's scheduler (schedules.delay.<queue>.<id>)
// and becomes ready on its queue when it is due: no worker or timer loop
// holds it.
func ExampleDelay() {
	js, stop := exampleBus("default")
	defer stop()
	ctx := context.Background()
	d, _ := bus.NewDispatcher(js, bus.Config{})

	id, err := d.Dispatch(ctx, ResizeImage{ItemID: 9, Width: 160}, bus.Delay(time.Second), bus.JobID("later-9"))
	fmt.Println(id, err)
	fmt.Println("ready now:", stored(ctx, js, "jobs.default.>"), "waiting in the scheduler:", stored(ctx, js, "schedules.delay.default.>"))
	cons, _ := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName("default"))

	msgs, _ := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second)) // waits until it is due
	for msg := range msgs.Messages() {
		job, _ := bus.ParseJob(msg)
		fmt.Println("ready after the delay:", job.ID, job.Queue, job.Kind, string(job.Body))
	}
	// Output:
	// later-9 <nil>
	// ready now: 0 waiting in the scheduler: 1
	// ready after the delay: later-9 default resize-image {"item_id":9,"width":160}
}
