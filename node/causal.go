package node

import (
	"context"
	"net/http"
	"sync"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/workers"
)

// This file wires package readmodel's after-commit outbox and causal
// tokens into the node: jobs dispatched in a request carry its token, the
// workers' handlers read through it, and every node relays the outbox.

// relay runs the outbox relay of the node's database once per process,
// until ctx ends; serve and work both call it (`jetfleet up` runs both).
type relay struct {
	once sync.Once
}

// startRelay starts the outbox relay when the node has a database.
func (n *Node) startRelay(ctx context.Context) {
	if n.s.Outbox == nil {
		return
	}
	n.relay.once.Do(func() {
		done := make(chan struct{})
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		go func() {
			defer close(done)
			n.s.Outbox.Relay(rctx)
		}()
		stop := context.AfterFunc(ctx, cancel)
		n.onClose(func() { stop(); cancel(); <-done })
	})
}

// openOutbox makes the node's outbox on its database and dispatcher.
func (n *Node) openOutbox() error {
	ob, err := readmodel.NewOutbox(n.s.DB, n.s.Dispatcher, readmodel.OutboxConfig{
		Logger: n.cfg.Logger.With().Str("component", "outbox").Logger(),
	})
	if err != nil {
		return err
	}
	n.s.Outbox = ob
	return nil
}

// sticky runs each request of a node with a MySQL or MariaDB database in
// a readmodel.Sticky scope, as Laravel's sticky option does: once the
// request has written, its reads go to the primary (unless DB_STICKY is
// false), and a job it dispatches carries the write's causal token, so
// that the job reads it from any replica. Keeping the token for the
// user's next request is the app's choice (readmodel.WithToken).
func (n *Node) sticky(next http.Handler) http.Handler {
	if n.s.DB == nil || n.s.DB.Driver() != readmodel.DriverMySQL {
		return next // SQLite: one file, no replica to steer away from
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(readmodel.Sticky(r.Context())))
	})
}

// CausalJobs is the worker middleware that `work` installs when the app
// has a database (a program that runs its own workers.Worker adds it to
// workers.Config.Middleware, and readmodel.JobHeaders to its dispatcher's
// bus.Config.HeadersFromContext): it runs each handler in a readmodel
// scope starting from the job's causal token
// (bus.HeaderCausalToken), so that a job reads the writes of the request
// that dispatched it, and records the scope's token back on the job when
// the handler is done, so that what the job's completion dispatches (a
// batch's callbacks, a chain's next step) reads its writes too.
func CausalJobs(next workers.HandlerFunc) workers.HandlerFunc {
	return func(ctx context.Context, job *bus.Job) error {
		ctx = readmodel.JobContext(ctx, job.Header)
		err := next(ctx, job)
		if tok := readmodel.Token(ctx); tok != "" && job.Header != nil {
			job.Header.Set(bus.HeaderCausalToken, tok)
		}
		return err
	}
}
