package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// Welcome is a job: its arguments go to jobs.default.welcome as JSON.
type Welcome struct {
	User string `json:"user"`
}

func (Welcome) Kind() string { return "welcome" }

// A service's main is node.Main(app): its binary then has `serve`, `work`
// and `migrate`. Here the same app runs in one process, as `jetfleet up`
// runs the catalog: a web node whose route uses the session and dispatches
// a job, and a worker that runs it.
func Example() {
	srv, err := natsembed.Start(natsembed.Config{}) // a NATS server for the example
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()

	ran := make(chan string, 1)
	app := node.App{
		Name: "shop",
		Routes: func(s *node.Services, mux *http.ServeMux) {
			mux.HandleFunc("POST /signup", func(w http.ResponseWriter, r *http.Request) {
				sessions.Put(r.Context(), "user", r.FormValue("user"))
				s.Dispatcher.Dispatch(r.Context(), Welcome{User: r.FormValue("user")})
				fmt.Fprintln(w, "welcome on the way")
			})
		},
		Jobs: func(s *node.Services, w *workers.Worker) {
			workers.Register(w, func(ctx context.Context, job *workers.Job[Welcome]) error {
				ran <- job.Args.User
				return nil
			})
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := node.Open(ctx, app, node.Config{Conn: nc})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served, worked := make(chan error), make(chan error)
	go func() { served <- n.Serve(ctx, node.ServeConfig{Listener: ln, DrainDelay: -1}) }()
	go func() { worked <- n.Work(ctx, node.WorkConfig{}) }()

	resp, err := http.Post(node.HTTPURL(ln.Addr())+"signup", "application/x-www-form-urlencoded", strings.NewReader("user=ann"))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.Status, " ", string(body))
	fmt.Println("session cookie set:", resp.Header.Get("Set-Cookie") != "")
	fmt.Println("job ran for:", <-ran)

	cancel() // SIGTERM in a real node: both drain
	fmt.Println("web node drained:", <-served == nil, "worker drained:", <-worked == nil)
	// Output:
	// 200 OK welcome on the way
	// session cookie set: true
	// job ran for: ann
	// web node drained: true worker drained: true
}
