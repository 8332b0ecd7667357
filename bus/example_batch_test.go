package bus_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jetfleet/jetfleet/bus"
)

// NotifyOwner is the callback of the batch example.
type NotifyOwner struct {
	ItemID int64 `json:"item_id"`
}

func (NotifyOwner) Kind() string { return "notify-owner" }

// Batch stores jobs and their batch's state in one atomic publish; the
// Inspector reads its progress by ID. (No worker runs here, so every job
// is pending.)
func ExampleDispatcher_Batch() {
	js, stop := exampleBus("default")
	defer stop()
	ctx := context.Background()
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		log.Fatal(err)
	}
	jobs := []bus.DispatchManyParams{
		{Args: ResizeImage{ItemID: 42, Width: 320}},
		{Args: ResizeImage{ItemID: 42, Width: 640}},
	}
	b, err := d.Batch(ctx, jobs, bus.BatchID("item-42"), bus.BatchName("thumbnails of item 42"),
		bus.Then(NotifyOwner{ItemID: 42}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.ID, b.JobIDs)

	in, _ := bus.NewInspector(js, bus.Config{})
	st, err := in.Batch(ctx, b.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Name, st.State, st.Total, st.Pending)
	for _, cb := range st.Callbacks {
		fmt.Println(cb.Name, cb.ID, cb.Kind, cb.Released)
	}
	// Output:
	// item-42 [item-42-0 item-42-1]
	// thumbnails of item 42 running 2 2
	// then item-42-then notify-owner false
}

// Chain dispatches only its first step now; the next one is released when
// the previous one succeeded.
func ExampleDispatcher_Chain() {
	js, stop := exampleBus("default")
	defer stop()
	ctx := context.Background()
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		log.Fatal(err)
	}
	id, err := d.Chain(ctx, bus.Steps(ResizeImage{ItemID: 7, Width: 320}, NotifyOwner{ItemID: 7}), bus.BatchID("item-7"))
	if err != nil {
		log.Fatal(err)
	}
	in, _ := bus.NewInspector(js, bus.Config{})
	steps, err := in.Chain(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range steps {
		fmt.Printf("%s: step %d of %d, %s\n", s.ID, s.Step, s.Steps, s.State)
	}
	fmt.Println(stored(ctx, js, "jobs.>"), "job stored")
	// Output:
	// item-7-1: step 1 of 2, running
	// 1 job stored
}
