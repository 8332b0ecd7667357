package readmodel_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/readmodel"
)

// SendReceipt is the job of the outbox example.
type SendReceipt struct {
	Order int `json:"order"`
}

func (SendReceipt) Kind() string { return "send-receipt" }

// A job dispatched in an outbox transaction exists only if the
// transaction commits: here the first commits, the second rolls back.
func ExampleOutbox() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		fmt.Println(err)
		return
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	db, err := readmodel.Open(ctx, readmodel.Config{Database: filepath.Join(dir, "app.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	applied, _ := readmodel.MigrateOutbox(ctx, db)
	fmt.Println(applied)
	_, _ = db.Exec(ctx, "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
	ob, _ := readmodel.NewOutbox(db, d, readmodel.OutboxConfig{})

	for order, fail := range []bool{false, true} {
		err := ob.Tx(ctx, func(tx *readmodel.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id) VALUES (?)", order); err != nil {
				return err
			}
			if _, err := tx.Dispatch(ctx, SendReceipt{Order: order}, bus.JobID(fmt.Sprint("receipt-", order))); err != nil {
				return err
			}
			if fail {
				return errors.New("card declined")
			}
			return nil
		})
		fmt.Println("order", order, err)
	}
	s, _ := js.Stream(ctx, bus.JobsStream)
	info, _ := s.Info(ctx)
	pending, _ := ob.Pending(ctx)
	fmt.Println(info.State.Msgs, "job stored,", pending, "left in the outbox")
	// Output:
	// [jetfleet/0001_outbox.sql]
	// order 0 <nil>
	// order 1 card declined
	// 1 job stored, 0 left in the outbox
}
