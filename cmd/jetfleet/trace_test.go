package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/jaegertest"
)

// randomHex is n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestTraceSurvivesRetriesAndQueueRetry publishes a job the way another
// language's producer joins a trace (a plain NATS publish with a W3C
// traceparent header), lets `jetfleet work` fail it until it is
// dead-lettered, retries the dead letter with `jetfleet queue retry`, and
// reads the trace back from a real Jaeger: every attempt, before and after
// the dead letter, is a child of the producer's span in the producer's
// trace, with its attempt number and settled outcome.
func TestTraceSurvivesRetriesAndQueueRetry(t *testing.T) {
	j := jaegertest.Start(t)
	f := newFleet(t)
	f.startWorker([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.OTLPEndpoint, "OTEL_BSP_SCHEDULE_DELAY=100"},
		"--queue", "default", "--tries", "2", "--backoff", "10ms")

	traceID, parent := randomHex(t, 16), randomHex(t, 8)
	msg := &nats.Msg{Subject: bus.JobSubject("default", "jetfleet-fail"), Data: []byte(`{"times":5}`), Header: nats.Header{
		bus.HeaderMsgID:       {"traced-job"},
		bus.HeaderTraceparent: {"00-" + traceID + "-" + parent + "-01"},
		bus.HeaderTracestate:  {"vendor=value"},
	}}
	if _, err := f.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	f.waitDLQ(1)
	if r := f.jf("queue", "retry", "traced-job"); r.Code != 0 {
		t.Fatalf("queue retry: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	f.waitDLQ(1) // the retried job fails its two tries again

	var spans []jaegertest.Span
	eventually(t, 30*time.Second, "four attempts in the producer's trace", func() error {
		tr, err := j.Trace(traceID)
		if err != nil {
			return err
		}
		spans = tr.Named("process jetfleet-fail")
		if len(spans) != 4 {
			return fmt.Errorf("%d attempt spans", len(spans))
		}
		return nil
	})
	slices.SortFunc(spans, func(a, b jaegertest.Span) int { return int(a.StartTime - b.StartTime) })
	var got []string
	for _, s := range spans {
		if s.Parent() != parent {
			t.Errorf("attempt %s has parent %q, want the producer's span %s", s.Tag("jetfleet.job.attempt"), s.Parent(), parent)
		}
		if s.Tag("jetfleet.job.id") != "traced-job" {
			t.Errorf("attempt span's job ID %q", s.Tag("jetfleet.job.id"))
		}
		got = append(got, s.Tag("jetfleet.job.attempt")+":"+s.Tag("jetfleet.job.outcome"))
	}
	want := "1:retried 2:dead_lettered 1:retried 2:dead_lettered"
	if strings.Join(got, " ") != want {
		t.Errorf("attempts in start order: %s, want %s", strings.Join(got, " "), want)
	}
}
