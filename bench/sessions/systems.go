package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/sessions"
)

type jetfleetSystem struct {
	*system
	nc *nats.Conn
}

func newJetfleet(ctx context.Context, url string, localCopy int) (*jetfleetSystem, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	sm, err := sessions.NewContext(ctx, js, sessions.Config{Bucket: "bench_sessions", LocalCopy: localCopy})
	if err != nil {
		nc.Close()
		return nil, err
	}
	visits := 0
	s := &system{
		name: "jetfleet",
		read: sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := sessions.GetInt(r.Context(), "user_id"); !ok {
				http.Error(w, errNoValue.Error(), http.StatusInternalServerError)
			}
		})),
		write: sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			visits++
			if err := sessions.Put(r.Context(), "visits", visits); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})),
	}
	loginH := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.Put(r.Context(), "user_id", 42); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	s.login = func() error { _, err := s.do(loginH); return err }
	return &jetfleetSystem{system: s, nc: nc}, nil
}

func (j *jetfleetSystem) close() { j.nc.Close() }

type scsSystem struct {
	*system
	pool *redis.Pool
}

func newSCS(addr string) (*scsSystem, error) {
	pool := &redis.Pool{MaxIdle: 10, IdleTimeout: 240 * time.Second,
		Dial: func() (redis.Conn, error) { return redis.Dial("tcp", addr) }}
	sm := scs.New()
	sm.Store = redisstore.NewWithPrefix(pool, fmt.Sprintf("bench_scs_%d:", time.Now().UnixNano()))
	sm.Lifetime = 2 * time.Hour
	visits := 0
	s := &system{
		name: "scs+redis",
		read: sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := sm.Get(r.Context(), "user_id").(int); !ok {
				http.Error(w, errNoValue.Error(), http.StatusInternalServerError)
			}
		})),
		write: sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			visits++
			sm.Put(r.Context(), "visits", visits)
		})),
	}
	loginH := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user_id", 42)
	}))
	s.login = func() error { _, err := s.do(loginH); return err }
	return &scsSystem{system: s, pool: pool}, nil
}

func (s *scsSystem) close() { _ = s.pool.Close() }
