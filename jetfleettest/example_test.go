package jetfleettest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/jetfleettest"
)

// Signup is the job a signup route dispatches.
type Signup struct {
	Email string `json:"email"`
}

func (Signup) Kind() string { return "signup" }

// In a test, pass t where this example passes tb: a NATS server for the
// test, the route under test served by httptest, and a check of the job
// it dispatched, which no worker runs.
func ExampleRequireDispatched() {
	tb := &exampleTB{}
	defer tb.cleanup()

	js := jetfleettest.Connect(tb, jetfleettest.StartNATS(tb))
	ctx := context.Background()
	_ = bus.Provision(ctx, js, bus.Config{})
	d, _ := bus.NewDispatcher(js, bus.Config{})
	route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := d.Dispatch(r.Context(), Signup{Email: r.FormValue("email")}, bus.OnQueue("emails")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	rec := httptest.NewRecorder()
	route.ServeHTTP(rec, httptest.NewRequest("POST", "/signup?email=ann@example.com", nil))

	job := jetfleettest.RequireDispatched[Signup](tb, js)
	fmt.Println(rec.Code, job.Queue, job.Args.Email)
	// Output: 200 emails ann@example.com
}

// exampleTB stands in for the *testing.T of a real test.
type exampleTB struct{ cleanups []func() }

func (*exampleTB) Helper() {}

func (*exampleTB) Fatalf(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
	os.Exit(1)
}

func (tb *exampleTB) Cleanup(f func()) { tb.cleanups = append(tb.cleanups, f) }

func (tb *exampleTB) TempDir() string {
	dir, err := os.MkdirTemp("", "jetfleettest-example")
	if err != nil {
		panic(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (tb *exampleTB) cleanup() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}
