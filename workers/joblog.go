package workers

// The fields of the lines a worker writes about a job.

import (
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
)

// jobFields adds a job's ID, queue, kind and attempt to each line written
// about it, and the trace and span IDs of its attempt when that span is
// sampled. It is a zerolog hook, so that the fields are written only into
// the lines a run writes (one, "job succeeded", for most jobs) instead of
// into a logger made for each job: zerolog's With copies the logger into a
// new 500-byte buffer, once for the job's fields and once more for its
// trace IDs.
type jobFields struct {
	job  *bus.Job
	span trace.SpanContext // the attempt's span; its IDs are logged when sampled
}

// Run implements zerolog.Hook.
func (f *jobFields) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str("job_id", f.job.ID).Str("queue", f.job.Queue).Str("kind", f.job.Kind).Int("attempt", f.job.Attempt)
	if f.span.IsSampled() {
		e.Str("trace_id", f.span.TraceID().String()).Str("span_id", f.span.SpanID().String())
	}
}

// logJob makes r's lines, written through log, carry job's fields.
func (r *run) logJob(log zerolog.Logger, job *bus.Job) {
	r.fields = jobFields{job: job}
	r.log = log.Hook(&r.fields)
}
