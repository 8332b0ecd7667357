package node

// Tracing from the standard OpenTelemetry environment variables. A node
// exports spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp) is
// set, and is off otherwise: its packages then get the no-op provider,
// start no span and add nothing to a request, a job or a log line.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracing is a node's trace provider and how to flush it.
type tracing struct {
	tp       trace.TracerProvider
	on       bool
	shutdown func(context.Context) error
}

// offTracing is tracing switched off.
func offTracing() *tracing {
	return &tracing{tp: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}
}

// newTracing is the provider cfg.TracerProvider names, else one made from
// the OTEL_* settings, else the no-op provider.
func newTracing(cfg Config, service string) (*tracing, error) {
	if cfg.TracerProvider != nil {
		_, off := cfg.TracerProvider.(noop.TracerProvider)
		return &tracing{tp: cfg.TracerProvider, on: !off, shutdown: func(context.Context) error { return nil }}, nil
	}
	s, err := parseOTelEnv(cfg.Getenv)
	if err != nil || !s.On {
		return offTracing(), err
	}
	return s.start(service, cfg.Logger)
}

// otelSettings are the OTEL_* environment variables a node reads, parsed.
type otelSettings struct {
	// On is true when spans are exported: an OTLP endpoint is set (or
	// OTEL_TRACES_EXPORTER=otlp) and neither OTEL_SDK_DISABLED=true nor
	// OTEL_TRACES_EXPORTER=none says otherwise.
	On bool
	// Endpoint is the full URL spans are posted to (…/v1/traces).
	Endpoint string
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_HEADERS).
	Headers map[string]string
	// Timeout bounds one export (OTEL_EXPORTER_OTLP_TIMEOUT, ms).
	Timeout time.Duration
	// Gzip compresses exports (OTEL_EXPORTER_OTLP_COMPRESSION=gzip).
	Gzip bool
	// Sampler is OTEL_TRACES_SAMPLER with OTEL_TRACES_SAMPLER_ARG;
	// SamplerName names it for the log.
	Sampler     sdktrace.Sampler
	SamplerName string
	// ServiceName is OTEL_SERVICE_NAME, else service.name of
	// OTEL_RESOURCE_ATTRIBUTES, else "" (the node uses the app's name).
	ServiceName string
	// Resource holds OTEL_RESOURCE_ATTRIBUTES.
	Resource []attribute.KeyValue
	// Batch holds the OTEL_BSP_* settings of the batch span processor.
	Batch []sdktrace.BatchSpanProcessorOption
}

// parseOTelEnv reads the OTEL_* settings through getenv. A setting it
// cannot honour (OTLP over gRPC, an unknown sampler) is an error naming
// the variable, so that tracing is never silently off.
func parseOTelEnv(getenv func(string) string) (otelSettings, error) {
	var s otelSettings
	on, err := otelOn(getenv)
	if err != nil || !on {
		return s, err
	}
	s.On = true
	steps := []func(func(string) string) error{s.parseEndpoint, s.parseExport, s.parseSampler, s.parseResource, s.parseBatch}
	for _, step := range steps {
		if err := step(getenv); err != nil {
			return otelSettings{}, err
		}
	}
	return s, nil
}

// otelOn decides whether spans are exported at all.
func otelOn(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: jetfleet exports traces with otlp only (or none)", exp)
	}
}

// parseEndpoint reads the traces URL and checks the protocol.
func (s *otelSettings) parseEndpoint(getenv func(string) string) error {
	proto := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	if proto != "" && proto != "http/protobuf" {
		return fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: jetfleet exports OTLP over HTTP only: set http/protobuf and the collector's HTTP port (4318)", proto)
	}
	s.Endpoint = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if s.Endpoint == "" {
		base := cmp.Or(strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")), "http://localhost:4318")
		s.Endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %q is not an http:// or https:// URL", s.Endpoint)
	}
	return nil
}

// parseExport reads the headers, timeout and compression of exports.
func (s *otelSettings) parseExport(getenv func(string) string) error {
	var err error
	if s.Headers, err = parseOTelList("OTEL_EXPORTER_OTLP_HEADERS", firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")); err != nil {
		return err
	}
	if v := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return fmt.Errorf("OTEL_EXPORTER_OTLP_TIMEOUT=%q is not a positive number of milliseconds", v)
		}
		s.Timeout = time.Duration(ms) * time.Millisecond
	}
	switch c := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"); c {
	case "", "none":
	case "gzip":
		s.Gzip = true
	default:
		return fmt.Errorf("OTEL_EXPORTER_OTLP_COMPRESSION=%q: want gzip or none", c)
	}
	return nil
}

// parseSampler reads OTEL_TRACES_SAMPLER and its argument; the default is
// parentbased_always_on, as the specification says.
func (s *otelSettings) parseSampler(getenv func(string) string) error {
	name := cmp.Or(strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))), "parentbased_always_on")
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := 1.0
	if strings.HasSuffix(name, "traceidratio") && arg != "" {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q is not a ratio between 0 and 1", arg)
		}
		ratio = r
	}
	samplers := map[string]sdktrace.Sampler{
		"always_on":                sdktrace.AlwaysSample(),
		"always_off":               sdktrace.NeverSample(),
		"traceidratio":             sdktrace.TraceIDRatioBased(ratio),
		"parentbased_always_on":    sdktrace.ParentBased(sdktrace.AlwaysSample()),
		"parentbased_always_off":   sdktrace.ParentBased(sdktrace.NeverSample()),
		"parentbased_traceidratio": sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)),
	}
	sampler, ok := samplers[name]
	if !ok {
		return fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
	}
	s.Sampler, s.SamplerName = sampler, name
	if strings.HasSuffix(name, "traceidratio") {
		s.SamplerName += " " + strconv.FormatFloat(ratio, 'g', -1, 64)
	}
	return nil
}

// parseResource reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
func (s *otelSettings) parseResource(getenv func(string) string) error {
	attrs, err := parseOTelList("OTEL_RESOURCE_ATTRIBUTES", getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return err
	}
	for k, v := range attrs {
		if k == "service.name" {
			s.ServiceName = v
			continue
		}
		s.Resource = append(s.Resource, attribute.String(k, v))
	}
	s.ServiceName = cmp.Or(strings.TrimSpace(getenv("OTEL_SERVICE_NAME")), s.ServiceName)
	return nil
}

// parseBatch reads the OTEL_BSP_* settings (milliseconds and counts).
func (s *otelSettings) parseBatch(getenv func(string) string) error {
	ms := func(opt func(time.Duration) sdktrace.BatchSpanProcessorOption) func(int) sdktrace.BatchSpanProcessorOption {
		return func(n int) sdktrace.BatchSpanProcessorOption { return opt(time.Duration(n) * time.Millisecond) }
	}
	settings := []struct {
		name string
		opt  func(int) sdktrace.BatchSpanProcessorOption
	}{
		{"OTEL_BSP_SCHEDULE_DELAY", ms(sdktrace.WithBatchTimeout)},
		{"OTEL_BSP_EXPORT_TIMEOUT", ms(sdktrace.WithExportTimeout)},
		{"OTEL_BSP_MAX_QUEUE_SIZE", sdktrace.WithMaxQueueSize},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", sdktrace.WithMaxExportBatchSize},
	}
	for _, st := range settings {
		v := strings.TrimSpace(getenv(st.name))
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s=%q is not a positive whole number", st.name, v)
		}
		s.Batch = append(s.Batch, st.opt(n))
	}
	return nil
}

// parseOTelList reads the k=v,k2=v2 form of OTEL_RESOURCE_ATTRIBUTES and
// OTEL_EXPORTER_OTLP_HEADERS (values percent-encoded).
func parseOTelList(name, v string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(v, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if !ok || k == "" || err != nil {
			return nil, fmt.Errorf("%s: %q is not key=value (values percent-encoded)", name, strings.TrimSpace(part))
		}
		out[k] = dec
	}
	return out, nil
}

// firstSet is the first of the variables that is set, trimmed.
func firstSet(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// start makes the SDK provider: a batch span processor exporting over
// OTLP/HTTP, the sampler, and a resource naming the service and process.
func (s otelSettings) start(service string, log zerolog.Logger) (*tracing, error) {
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(s.Endpoint), otlptracehttp.WithHeaders(s.Headers)}
	if s.Timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(s.Timeout))
	}
	if s.Gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", s.Endpoint, err)
	}
	service = cmp.Or(s.ServiceName, service)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, log: log, endpoint: s.Endpoint}, s.Batch...),
		sdktrace.WithSampler(s.Sampler),
		sdktrace.WithResource(s.resource(service)))
	log.Info().Str("otlp_endpoint", s.Endpoint).Str("service", service).Str("sampler", s.SamplerName).
		Msg("tracing on: spans exported over OTLP/HTTP")
	return &tracing{tp: tp, on: true, shutdown: tp.Shutdown}, nil
}

// resource names the service and this process.
func (s otelSettings) resource(service string) *resource.Resource {
	host, _ := os.Hostname()
	attrs := append([]attribute.KeyValue{
		attribute.String("service.name", service),
		attribute.String("service.instance.id", fmt.Sprintf("%s-%d-%s", host, os.Getpid(), nuid.Next()[16:])),
		attribute.String("host.name", host),
		attribute.Int("process.pid", os.Getpid()),
		attribute.String("telemetry.sdk.name", "opentelemetry"),
		attribute.String("telemetry.sdk.language", "go"),
		attribute.String("telemetry.sdk.version", otel.Version()),
	}, s.Resource...)
	return resource.NewSchemaless(attrs...)
}

// loggingExporter logs failed exports through the node's logger, at most
// once a minute, instead of OpenTelemetry's global error handler.
type loggingExporter struct {
	sdktrace.SpanExporter
	log      zerolog.Logger
	endpoint string

	mu     sync.Mutex
	warned time.Time
	failed int
}

// ExportSpans exports and logs a failure; it never returns one, so the
// SDK does not report it again through the global handler.
func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failed += len(spans)
	if time.Since(e.warned) >= time.Minute {
		e.log.Warn().Err(err).Str("otlp_endpoint", e.endpoint).Int("spans_lost", e.failed).Msg("tracing: spans not exported")
		e.warned, e.failed = time.Now(), 0
	}
	return nil
}

// openTracing sets up the node's provider and hands it to its parts; with
// tracing on, the node's logger adds trace IDs to lines written with a
// span's context (TraceHook).
func (n *Node) openTracing() error {
	tr, err := newTracing(n.cfg, n.Name())
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	n.tr = tr
	n.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.shutdown(ctx); err != nil {
			n.cfg.Logger.Warn().Err(err).Msg("tracing: the last spans were not exported")
		}
	})
	if tr.on {
		n.cfg.Logger = n.cfg.Logger.Hook(TraceHook{})
		n.s.Logger = n.cfg.Logger
	}
	n.s.TracerProvider = tr.tp
	return nil
}
