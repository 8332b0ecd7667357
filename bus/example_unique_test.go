package bus_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

// Unique stores at most one job per key: while a job holds the key
// (until it is done, or for a time with UniqueFor), another dispatch with
// the key stores nothing and names the holder.
func ExampleUnique() {
	js, stop := exampleBus("default")
	defer stop()
	ctx := context.Background()
	d, _ := bus.NewDispatcher(js, bus.Config{})

	id, err := d.Dispatch(ctx, ResizeImage{ItemID: 7, Width: 160}, bus.JobID("resize-7"), bus.Unique("resize:7"))
	fmt.Println(id, err)
	_, err = d.Dispatch(ctx, ResizeImage{ItemID: 7, Width: 320}, bus.Unique("resize:7"))
	var dup *bus.DuplicateError
	fmt.Println(errors.Is(err, bus.ErrDuplicate), errors.As(err, &dup) && dup.JobID == "resize-7")
	_, err = d.Dispatch(ctx, ResizeImage{ItemID: 8}, bus.Unique("resize:8", bus.UniqueFor(time.Hour)))
	fmt.Println(err)
	fmt.Println("stored:", stored(ctx, js, "jobs.default.>"))
	// Output:
	// resize-7 <nil>
	// true true
	// <nil>
	// stored: 2
}
