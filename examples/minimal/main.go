// Command minimal is the smallest jetfleet service: sessions, a job, /up (package node).
package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// Greet is a job (its JSON goes to jobs.default.greet); Kind names its handler.
type Greet struct{ Name string }

func (Greet) Kind() string { return "greet" }

func main() {
	node.Main(node.App{Name: "minimal",
		Routes: func(s *node.Services, mux *http.ServeMux) {
			mux.HandleFunc("POST /hello", func(w http.ResponseWriter, r *http.Request) {
				visits, _ := sessions.GetInt(r.Context(), "visits")
				sessions.Put(r.Context(), "visits", visits+1)
				if id, err := s.Dispatcher.Dispatch(r.Context(), Greet{Name: r.FormValue("name")}); err != nil {
					http.Error(w, err.Error(), http.StatusServiceUnavailable)
				} else {
					fmt.Fprintf(w, "visit %d, job %s\n", visits+1, id)
				}
			})
		},
		Jobs: func(s *node.Services, w *workers.Worker) {
			workers.Register(w, func(ctx context.Context, job *workers.Job[Greet]) error {
				s.Logger.Info().Str("job_id", job.ID).Msgf("hello, %s", job.Args.Name)
				return nil
			})
		},
	})
}
