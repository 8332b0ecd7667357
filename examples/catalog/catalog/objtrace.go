package catalog

// Spans of the catalog's Object Store calls: "objectstore put", "get",
// "get info" and "delete", children of the request's or the job's span,
// with the bucket, the object's name and its size. The store is wrapped
// once, in New; the code that calls it is unchanged.

import (
	"context"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetfleet/jetfleet/bus"
)

// traceObjects wraps obs so that its calls start spans of tp; with no
// provider or the no-op one it returns obs itself.
func traceObjects(obs jetstream.ObjectStore, bucket string, tp trace.TracerProvider) jetstream.ObjectStore {
	if tp == nil {
		return obs
	}
	if _, off := tp.(noop.TracerProvider); off {
		return obs
	}
	return &tracedObjects{ObjectStore: obs, bucket: bucket, tracer: tp.Tracer(bus.TracerName)}
}

// tracedObjects is an Object Store whose reads and writes are traced.
type tracedObjects struct {
	jetstream.ObjectStore
	bucket string
	tracer trace.Tracer
}

func (o *tracedObjects) start(ctx context.Context, op, name string) (context.Context, trace.Span) {
	return o.tracer.Start(ctx, "objectstore "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("nats.object_store.bucket", o.bucket), attribute.String("nats.object_store.object", name)))
}

// end records the object's size and err, and ends span.
func end(span trace.Span, info *jetstream.ObjectInfo, err error) {
	if info != nil {
		span.SetAttributes(attribute.Int64("nats.object_store.size", int64(info.Size)))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (o *tracedObjects) Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (*jetstream.ObjectInfo, error) {
	ctx, span := o.start(ctx, "put", meta.Name)
	info, err := o.ObjectStore.Put(ctx, meta, r)
	end(span, info, err)
	return info, err
}

func (o *tracedObjects) PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	ctx, span := o.start(ctx, "put", name)
	info, err := o.ObjectStore.PutBytes(ctx, name, data)
	end(span, info, err)
	return info, err
}

func (o *tracedObjects) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	ctx, span := o.start(ctx, "get", name)
	res, err := o.ObjectStore.Get(ctx, name, opts...)
	var info *jetstream.ObjectInfo
	if err == nil {
		info, _ = res.Info()
	}
	end(span, info, err)
	return res, err
}

func (o *tracedObjects) GetBytes(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) ([]byte, error) {
	ctx, span := o.start(ctx, "get", name)
	data, err := o.ObjectStore.GetBytes(ctx, name, opts...)
	span.SetAttributes(attribute.Int("nats.object_store.size", len(data)))
	end(span, nil, err)
	return data, err
}

func (o *tracedObjects) GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error) {
	ctx, span := o.start(ctx, "get info", name)
	info, err := o.ObjectStore.GetInfo(ctx, name, opts...)
	end(span, info, err)
	return info, err
}

func (o *tracedObjects) Delete(ctx context.Context, name string) error {
	ctx, span := o.start(ctx, "delete", name)
	err := o.ObjectStore.Delete(ctx, name)
	end(span, nil, err)
	return err
}
