package sessions_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/sessions"
)

// paused runs a request on sm that loads the session, reports it loaded,
// waits for proceed, runs fn and saves. It returns once the request loaded.
func paused(c *client, sm *sessions.Manager, fn func(ctx context.Context)) (proceed chan<- struct{}, done <-chan *httptest.ResponseRecorder) {
	loaded, go_, fin := make(chan struct{}), make(chan struct{}), make(chan *httptest.ResponseRecorder, 1)
	h := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-go_
		fn(r.Context())
	}))
	r := c.request(http.MethodGet, "/", nil)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fin <- w
	}()
	<-loaded
	return go_, fin
}

func TestConcurrentRequestsOnTwoNodesKeepChangesToDifferentKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	nodeA, nodeB := e.sm, e.node()
	c := login(t, e)
	const iterations = 200
	for i := range iterations {
		var loaded sync.WaitGroup
		loaded.Add(2)
		var done sync.WaitGroup
		for _, n := range []struct {
			sm  *sessions.Manager
			key string
		}{{nodeA, fmt.Sprintf("a%d", i)}, {nodeB, fmt.Sprintf("b%d", i)}} {
			done.Go(func() {
				h := n.sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					loaded.Done()
					loaded.Wait() // both requests hold the same revision: one save must conflict
					if err := sessions.Put(r.Context(), n.key, i); err != nil {
						t.Error(err)
					}
				}))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, c.request(http.MethodGet, "/", nil))
				if w.Code != http.StatusOK {
					t.Errorf("%s: status %d: %s", n.key, w.Code, w.Body)
				}
			})
		}
		done.Wait()
	}
	// The client kept none of those responses' cookies: read what was
	// stored through a node without a copy of the bucket (one server: its
	// direct get sees every write).
	check := *e
	check.cfg.LocalCopy = -1
	c.run(check.node(), func(ctx context.Context) {
		for i := range iterations {
			for _, k := range []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)} {
				if v, ok := sessions.GetInt(ctx, k); !ok || v != i {
					t.Errorf("%s = %d, %v: a concurrent update was lost", k, v, ok)
				}
			}
		}
	})
}

func TestDestroyWinsOverASlowerConcurrentSave(t *testing.T) {
	t.Parallel()
	log, rec := logtest.New()
	e := newEnv(t, sessions.Config{Logger: log})
	slowNode := e.node()
	for range 50 {
		c := login(t, e)
		proceed, done := paused(c, slowNode, func(ctx context.Context) {
			must(t, sessions.Put(ctx, "cart", "late write"))
		})
		c.run(e.sm, func(ctx context.Context) { must(t, sessions.Destroy(ctx)) })
		close(proceed)
		w := <-done
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("the discarded save set a cookie: %v", w.Result().Cookies())
		}
		if keys := e.keys(); len(keys) != 0 {
			t.Fatalf("destroyed session came back: keys %v", keys)
		}
	}
	logged := rec.Entries()
	for _, e := range logged {
		if e.Str("level") != "warn" || e.Str("error") != sessions.ErrSessionGone.Error() ||
			e.Str("method") != http.MethodGet || e.Str("path") != "/" {
			t.Fatalf("log entry %v, want a warning with ErrSessionGone, the method and the path", e)
		}
	}
	if len(logged) != 50 {
		t.Errorf("Logger got %d entries, want 50 × ErrSessionGone", len(logged))
	}
}

func TestDestroyRacingASaveNeverLeavesTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	other := e.node()
	for i := range 100 {
		c := login(t, e)
		var loaded, done sync.WaitGroup
		loaded.Add(2)
		for _, step := range []struct {
			sm *sessions.Manager
			fn func(ctx context.Context) error
		}{
			{e.sm, sessions.Destroy},
			{other, func(ctx context.Context) error { return sessions.Put(ctx, "x", i) }},
		} {
			done.Go(func() {
				h := step.sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					loaded.Done()
					loaded.Wait()
					if err := step.fn(r.Context()); err != nil {
						t.Error(err)
					}
				}))
				h.ServeHTTP(httptest.NewRecorder(), c.request(http.MethodGet, "/", nil))
			})
		}
		done.Wait()
		if keys := e.keys(); len(keys) != 0 {
			t.Fatalf("iteration %d: session survived its Destroy: keys %v", i, keys)
		}
	}
}

func TestSameKeyRaceLastSaveWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := login(t, e)
	for _, order := range [][2]string{{"red", "blue"}, {"blue", "red"}} {
		first, firstDone := paused(c, e.node(), func(ctx context.Context) { must(t, sessions.Put(ctx, "color", order[0])) })
		second, secondDone := paused(c, e.node(), func(ctx context.Context) { must(t, sessions.Put(ctx, "color", order[1])) })
		close(first)
		c.keep(<-firstDone)
		close(second)
		c.keep(<-secondDone) // the browser got both answers: it reads what was saved last
		c.run(e.sm, func(ctx context.Context) {
			if got, _ := sessions.GetString(ctx, "color"); got != order[1] {
				t.Errorf("saved %s then %s: color = %q, want the last save", order[0], order[1], got)
			}
		})
	}
}

func TestPopLeavesAValueANewerRequestPut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := login(t, e)
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "msg", "old")) })
	var popped any
	proceed, done := paused(c, e.node(), func(ctx context.Context) { popped = sessions.Pop(ctx, "msg") })
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "msg", "new")) })
	close(proceed)
	<-done
	if popped != "old" {
		t.Errorf("popped %v, want old", popped)
	}
	c.run(e.sm, func(ctx context.Context) {
		if got, _ := sessions.GetString(ctx, "msg"); got != "new" {
			t.Errorf("msg = %q: Pop removed a value it never read", got)
		}
	})
}

func TestRenewTokenCarriesOverASaveThatLandedFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := login(t, e)
	proceed, done := paused(c, e.node(), func(ctx context.Context) { must(t, sessions.RenewToken(ctx)) })
	other := &client{name: c.name, token: c.token}
	other.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "theme", "dark")) })
	close(proceed)
	w := <-done
	renewed := &client{name: c.name}
	renewed.keep(w)
	if renewed.token == "" || renewed.token == c.token {
		t.Fatalf("no new token after RenewToken")
	}
	renewed.run(e.sm, func(ctx context.Context) {
		if got, _ := sessions.GetString(ctx, "theme"); got != "dark" || !sessions.Has(ctx, "user_id") {
			t.Errorf("renewed session keys %v: the concurrent save was lost", sessions.Keys(ctx))
		}
	})
	if keys := e.keys(); len(keys) != 1 {
		t.Errorf("bucket keys = %v, want only the renewed session", keys)
	}
}
