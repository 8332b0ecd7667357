package readmodel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/workers"
)

// orderPlaced is the job the outbox tests dispatch inside a transaction.
type orderPlaced struct {
	Order int `json:"order"`
}

func (orderPlaced) Kind() string { return "order-placed" }

const ordersQueue = "orders"

var errRollback = errors.New("roll back on purpose")

// outboxEnv is a NATS server with the jetfleet topology, a database with
// the outbox and an orders table, and an outbox on both.
type outboxEnv struct {
	js  jetstream.JetStream
	url string
	d   *bus.Dispatcher
	db  *readmodel.DB
	ob  *readmodel.Outbox
	// env is what a child process needs to open the same database.
	env []string
}

func newOutboxEnv(t *testing.T, dialect string) *outboxEnv {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, ordersQueue); err != nil {
		t.Fatal(err)
	}
	e := &outboxEnv{js: js, url: srv.ClientURL()}
	var err error
	if e.d, err = bus.NewDispatcher(js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	if dialect == readmodel.DriverSQLite {
		path := filepath.Join(t.TempDir(), "outbox.db")
		e.db = open(t, readmodel.Config{Database: path})
		e.env = []string{"DB_CONNECTION=sqlite", "DB_DATABASE=" + path}
	} else {
		var p = mariaPair(t)
		name := p.NewDatabase(t)
		cfg := mariaConfig(t, p, name)
		e.db = open(t, cfg)
		e.env = []string{"DB_CONNECTION=mysql", "DB_WRITE_HOST=" + p.Primary.Addr(), "DB_DATABASE=" + name,
			"DB_USERNAME=" + cfg.Username, "DB_PASSWORD=" + cfg.Password}
	}
	if _, err := readmodel.MigrateOutbox(ctx, e.db); err != nil {
		t.Fatal(err)
	}
	mustExec(t, e.db, ctx, "CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY)")
	if e.ob, err = readmodel.NewOutbox(e.db, e.d, readmodel.OutboxConfig{Grace: 200 * time.Millisecond, Interval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	return e
}

// unansweredOutbox is an outbox on e's database whose dispatcher's
// connection is closed: its transactions commit, the publishes after
// them fail, and the rows stay for a relay.
func (e *outboxEnv) unansweredOutbox(t *testing.T) *readmodel.Outbox {
	t.Helper()
	conn, js := natstest.Connect(t, e.url)
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	ob, err := readmodel.NewOutbox(e.db, d, readmodel.OutboxConfig{PublishTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// placeOrder inserts order n and dispatches its job in one transaction,
// rolled back when n is odd.
func placeOrder(ctx context.Context, ob *readmodel.Outbox, n int) error {
	err := ob.Tx(ctx, func(tx *readmodel.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id) VALUES (?)", n); err != nil {
			return err
		}
		if _, err := tx.Dispatch(ctx, orderPlaced{Order: n}, bus.OnQueue(ordersQueue), bus.JobID("order-"+strconv.Itoa(n))); err != nil {
			return err
		}
		if n%2 == 1 {
			return errRollback
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// TestOutboxCommitAndRollback: a committed transaction's job is in JOBS
// when Tx returns and its row is gone; a rolled-back one's exists nowhere.
func TestOutboxCommitAndRollback(t *testing.T) {
	for _, dialect := range []string{readmodel.DriverSQLite, readmodel.DriverMySQL} {
		t.Run(dialect, func(t *testing.T) {
			e := newOutboxEnv(t, dialect)
			ctx := context.Background()
			for n := range 2 {
				if err := placeOrder(ctx, e.ob, n); err != nil {
					t.Fatal(err)
				}
			}
			if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 1 {
				t.Fatalf("JOBS holds %d jobs, want the committed order's only", n)
			}
			m := fetchJob(t, e.js)
			job, err := bus.ParseJob(m)
			if err != nil || job.ID != "order-0" || string(job.Body) != `{"order":0}` {
				t.Fatalf("job %+v (%v), want order-0", job, err)
			}
			tok := job.Header.Get(bus.HeaderCausalToken)
			if dialect == readmodel.DriverMySQL && tok == "" {
				t.Fatal("a job dispatched in a MariaDB transaction carries no causal token")
			}
			if pending, err := e.ob.Pending(ctx); err != nil || pending != 0 {
				t.Fatalf("outbox holds %d rows (%v) after the publish", pending, err)
			}
		})
	}
}

// TestAFailedCommitKeepsTheScopeOnThePrimary: a COMMIT that fails (its
// connection killed just before it) may have committed for all the caller
// knows, so the Sticky scope's next read goes to the primary, as after a
// write.
func TestAFailedCommitKeepsTheScopeOnThePrimary(t *testing.T) {
	e := newOutboxEnv(t, readmodel.DriverMySQL)
	eventually(t, 10*time.Second, "the replica joins the pool", func() bool { return replica(e.db).InPool })
	ctx := readmodel.Sticky(context.Background())
	if id := serverID(t, e.db, ctx); id != 2 {
		t.Fatalf("a read before any write went to server %d, want the replica (2)", id)
	}
	err := e.ob.Tx(ctx, func(tx *readmodel.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id) VALUES (1)"); err != nil {
			return err
		}
		var conn int64
		if err := tx.GetContext(ctx, &conn, "SELECT CONNECTION_ID()"); err != nil {
			return err
		}
		_, err := e.db.Exec(context.Background(), fmt.Sprintf("KILL %d", conn))
		return err
	})
	if err == nil {
		t.Fatal("Tx committed on a connection killed before its COMMIT")
	}
	if id := serverID(t, e.db, ctx); id != 1 {
		t.Fatalf("after a failed COMMIT (%v) the scope read from server %d, want the primary (1)", err, id)
	}
}

// TestOutboxRelay: jobs a committed transaction could not publish stay in
// the table; the relay publishes them, and two relays at once store each
// job once.
func TestOutboxRelay(t *testing.T) {
	for _, dialect := range []string{readmodel.DriverSQLite, readmodel.DriverMySQL} {
		t.Run(dialect, func(t *testing.T) {
			e := newOutboxEnv(t, dialect)
			ctx := context.Background()
			dead := e.unansweredOutbox(t)
			for n := range 10 {
				if err := placeOrder(ctx, dead, n); err != nil {
					t.Fatalf("order %d: %v (a failed publish after COMMIT is not the transaction's failure)", n, err)
				}
			}
			if pending, _ := e.ob.Pending(ctx); pending != 5 {
				t.Fatalf("outbox holds %d rows, want the 5 committed jobs", pending)
			}
			if got := natstest.StreamMsgs(t, e.js, bus.JobsStream); got != 0 {
				t.Fatalf("JOBS holds %d jobs before the relay ran", got)
			}
			// Two relays at once, once the rows are older than their grace.
			relays := make([]*readmodel.Outbox, 2)
			for i := range relays {
				relays[i], _ = readmodel.NewOutbox(e.db, e.d, readmodel.OutboxConfig{Grace: time.Nanosecond})
			}
			var wg sync.WaitGroup
			published := make([]int, 2)
			for i, r := range relays {
				wg.Go(func() {
					n, err := r.RelayOnce(ctx)
					if err != nil {
						t.Errorf("relay %d: %v", i, err)
					}
					published[i] = n
				})
			}
			wg.Wait()
			if published[0]+published[1] < 5 {
				t.Fatalf("the relays published %v, want the 5 rows at least once", published)
			}
			if got := natstest.StreamMsgs(t, e.js, bus.JobsStream); got != 5 {
				t.Fatalf("JOBS holds %d jobs after two relays, want 5 (each stored once)", got)
			}
			if pending, _ := e.ob.Pending(ctx); pending != 0 {
				t.Fatalf("outbox holds %d rows after the relay", pending)
			}
			if dialect == readmodel.DriverMySQL {
				job, _ := bus.ParseJob(fetchJob(t, e.js))
				if job.Header.Get(bus.HeaderCausalToken) == "" {
					t.Fatal("a relayed job carries no causal token")
				}
			}
		})
	}
}

func fetchJob(t *testing.T, js jetstream.JetStream) jetstream.Msg {
	t.Helper()
	c, err := js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName(ordersQueue))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("no job: %v", err)
	}
	return m
}

// TestOutboxCrashes is the after-commit test: 1,000 transactions of
// which half roll back, then 1,000 more in processes killed -9 at random
// points, with a worker and the relay running: every committed order's job
// runs, no rolled-back one does. Odd orders roll back; the orders table says
// which transactions committed.
func TestOutboxCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and kills them")
	}
	for _, dialect := range []string{readmodel.DriverSQLite, readmodel.DriverMySQL} {
		t.Run(dialect, func(t *testing.T) {
			e := newOutboxEnv(t, dialect)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := runOrderWorker(t, ctx, e.js)
			var relayed atomic.Int64 // rows the relay published: jobs whose process died after COMMIT
			go func() {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					n, _ := e.ob.RelayOnce(ctx)
					relayed.Add(int64(n))
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			}()

			for n := range 1000 { // first run: no crash
				if err := placeOrder(ctx, e.ob, n); err != nil {
					t.Fatal(err)
				}
			}
			// Second run: ten processes of 100 transactions, each killed -9
			// once it has started a random number of them.
			for k := range 10 {
				from := 1000 + 100*k
				cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxChild$")
				cmd.Env = append(os.Environ(), e.env...)
				cmd.Env = append(cmd.Env, "OUTBOX_CHILD_NATS="+e.url, fmt.Sprintf("OUTBOX_CHILD_RANGE=%d-%d", from, from+100))
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				started := bufio.NewScanner(out)
				for range 1 + rand.IntN(99) {
					if !started.Scan() {
						t.Fatalf("child %d ended early: %v", k, cmd.Wait())
					}
				}
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
			}
			// A COMMIT a killed process sent may still complete on the
			// server after the process is gone: the relay publishes it. Once
			// the outbox is empty, the orders table is final.
			eventually(t, 30*time.Second, "the outbox relayed", func() bool {
				pending, err := e.ob.Pending(ctx)
				return err == nil && pending == 0
			})
			committed := committedOrders(t, e.db)
			waitRan(t, ran, committed)
			// Nothing left to run: the queue has no job waiting or running.
			waitQueueIdle(t, e.js)
			if again := committedOrders(t, e.db); !slices.Equal(again, committed) {
				t.Fatalf("orders committed after the outbox was empty: %v", minus(again, committed))
			}
			got := ran.orders()
			if !slices.Equal(got, committed) {
				t.Fatalf("jobs ran for %d orders, %d committed; ran-but-not-committed: %v", len(got), len(committed), minus(got, committed))
			}
			for _, n := range got {
				if n%2 == 1 {
					t.Fatalf("the job of rolled-back order %d ran", n)
				}
			}
			t.Logf("%s: %d of 2000 transactions committed (%d by the 10 processes killed -9), every one's job ran (%d runs in all), %d published by the relay",
				dialect, len(committed), len(committed)-500, ran.runs(), relayed.Load())
		})
	}
}

// TestOutboxChild is the process TestOutboxCrashes starts and kills: it
// places the orders of OUTBOX_CHILD_RANGE. It does nothing in a normal run.
func TestOutboxChild(t *testing.T) {
	url := os.Getenv("OUTBOX_CHILD_NATS")
	if url == "" {
		t.Skip("only run by TestOutboxCrashes")
	}
	var from, to int
	if _, err := fmt.Sscanf(os.Getenv("OUTBOX_CHILD_RANGE"), "%d-%d", &from, &to); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg, err := readmodel.ConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	db := open(t, cfg)
	_, js := natstest.Connect(t, url)
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := readmodel.NewOutbox(db, d, readmodel.OutboxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for n := from; n < to; n++ {
		fmt.Println(n) // the parent kills this process after a random number of these
		if err := placeOrder(ctx, ob, n); err != nil {
			t.Fatal(err)
		}
	}
}

// orderRuns records which orders' jobs ran, and how often.
type orderRuns struct {
	mu     sync.Mutex
	n      map[int]int
	change chan struct{}
}

func (r *orderRuns) orders() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for n := range r.n {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (r *orderRuns) runs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, c := range r.n {
		total += c
	}
	return total
}

func runOrderWorker(t *testing.T, ctx context.Context, js jetstream.JetStream) *orderRuns {
	t.Helper()
	r := &orderRuns{n: map[int]int{}, change: make(chan struct{}, 1)}
	w := workers.New(js, workers.Config{Queues: []string{ordersQueue}, Concurrency: 8, PresenceInterval: time.Second})
	workers.Register(w, func(_ context.Context, job *workers.Job[orderPlaced]) error {
		r.mu.Lock()
		r.n[job.Args.Order]++
		r.mu.Unlock()
		select {
		case r.change <- struct{}{}:
		default:
		}
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	t.Cleanup(func() { <-done })
	return r
}

// waitRan waits until every committed order's job has run.
func waitRan(t *testing.T, r *orderRuns, committed []int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		missing := minus(committed, r.orders())
		if len(missing) == 0 {
			return
		}
		select {
		case <-r.change:
		case <-deadline:
			t.Fatalf("%d committed orders' jobs never ran, e.g. %v", len(missing), missing[:min(10, len(missing))])
		}
	}
}

// waitQueueIdle waits until the orders queue has no job ready or running.
func waitQueueIdle(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	c, err := js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName(ordersQueue))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the orders queue idle", func() bool {
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

func committedOrders(t *testing.T, db *readmodel.DB) []int {
	t.Helper()
	var out []int
	if err := db.Select(readmodel.UsePrimary(context.Background()), &out, "SELECT id FROM orders ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	return out
}

// minus is a without b; both sorted.
func minus(a, b []int) []int {
	var out []int
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}

// TestOutboxSetsUnreadableRowsAside: rows whose headers cannot be read (a
// hand edit, a format from elsewhere) fill a whole batch at the head of
// the table. The relay sets them aside (they stay, counted by Pending)
// and relays the rows behind them; before, a full batch of them made
// RelayOnce ask again at once, forever, and nothing behind them was ever
// relayed.
func TestOutboxSetsUnreadableRowsAside(t *testing.T) {
	for _, dialect := range []string{readmodel.DriverSQLite, readmodel.DriverMySQL} {
		t.Run(dialect, func(t *testing.T) {
			e := newOutboxEnv(t, dialect)
			ctx := context.Background()
			for i := range 3 {
				mustExec(t, e.db, ctx, "INSERT INTO "+readmodel.OutboxTable+" (job_id, subject, headers, body, created_ms) VALUES (?, ?, ?, ?, ?)",
					fmt.Sprintf("bad-%d", i), "jobs."+ordersQueue+".order-placed", "not json", []byte("{}"), 0)
			}
			dead := e.unansweredOutbox(t)
			for n := 0; n < 4; n += 2 { // two committed orders, their jobs not published
				if err := placeOrder(ctx, dead, n); err != nil {
					t.Fatal(err)
				}
			}
			relay, err := readmodel.NewOutbox(e.db, e.d, readmodel.OutboxConfig{Grace: time.Nanosecond, BatchSize: 3})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			n, err := relay.RelayOnce(rctx)
			if err != nil || n != 2 {
				t.Fatalf("RelayOnce = %d, %v; want the 2 readable rows relayed", n, err)
			}
			if got := natstest.StreamMsgs(t, e.js, bus.JobsStream); got != 2 {
				t.Fatalf("JOBS holds %d jobs, want 2", got)
			}
			if pending, _ := e.ob.Pending(ctx); pending != 3 {
				t.Fatalf("outbox holds %d rows, want the 3 unreadable ones, set aside", pending)
			}
			if n, err := relay.RelayOnce(rctx); err != nil || n != 0 {
				t.Fatalf("a second RelayOnce = %d, %v; want nothing to relay", n, err)
			}
		})
	}
}

// TestOutboxErrorsNameThePrimary: an outbox error says which server it
// came from, as the read model's other errors do.
func TestOutboxErrorsNameThePrimary(t *testing.T) {
	e := newOutboxEnv(t, readmodel.DriverSQLite)
	e.db.Writer().Close()
	_, err := e.ob.Pending(context.Background())
	if err == nil || !strings.Contains(err.Error(), "readmodel: outbox on primary ") || !strings.Contains(err.Error(), "outbox.db") {
		t.Fatalf("Pending on a closed primary: %v; want an error naming the primary", err)
	}
}
