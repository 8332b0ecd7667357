package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// floors times the bare round trips under each system, interleaved: a
// Redis GET, a NATS direct get (any replica answers) and a JetStream leader
// get ($JS.API.STREAM.MSG.GET) of one key, so the report says how much of
// each request is the store's round trip.
func floors(ctx context.Context, out io.Writer, natsURL, redisAddr string, n int) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	rc, err := redis.Dial("tcp", redisAddr)
	if err != nil {
		return err
	}
	defer rc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_floor"}) // direct gets on
	if err != nil {
		return err
	}
	rev, err := kv.Put(ctx, "floor", []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		return err
	}
	const stream, subj = "KV_bench_floor", "$KV.bench_floor.floor"
	if _, err := rc.Do("SET", "bench_floor", "0123456789abcdef0123456789abcdef"); err != nil {
		return err
	}
	leaderReq := []byte(`{"last_by_subj":"` + subj + `"}`)
	ops := []struct {
		name string
		do   func() error
		sum  time.Duration
	}{
		{name: "redis GET", do: func() error { _, err := rc.Do("GET", "bench_floor"); return err }},
		{name: "nats direct get", do: func() error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream+"."+subj, nil)
			return err
		}},
		{name: "nats leader get", do: func() error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, leaderReq)
			return err
		}},
		{name: "redis SET", do: func() error {
			_, err := rc.Do("SET", "bench_floor", "0123456789abcdef0123456789abcdef")
			return err
		}},
		{name: "nats kv put (acked)", do: func() error {
			rev, err = kv.Put(ctx, "floor", []byte("0123456789abcdef0123456789abcdef"))
			return err
		}},
		// The conditional write the sessions make: only if the key is still
		// at the revision last written.
		{name: "nats kv update (at revision)", do: func() error {
			rev, err = kv.Update(ctx, "floor", []byte("0123456789abcdef0123456789abcdef"), rev)
			return err
		}},
	}
	for i := range n {
		for j := range ops {
			op := &ops[(i+j)%len(ops)]
			t0 := time.Now()
			if err := op.do(); err != nil {
				return fmt.Errorf("%s: %w", op.name, err)
			}
			op.sum += time.Since(t0)
		}
	}
	fmt.Fprintf(out, "round trips alone (µs, mean):")
	for _, op := range ops {
		fmt.Fprintf(out, "  %s %.1f", op.name, float64(op.sum.Nanoseconds())/1000/float64(n))
	}
	fmt.Fprintln(out)
	return nil
}
