package node

import (
	"strings"
	"testing"
	"time"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestParseOTelEnv: tracing is on only with an endpoint (or the otlp
// exporter named), off with OTEL_SDK_DISABLED or the none exporter; the
// endpoint, headers, sampler, resource and batch settings are read as the
// specification says, and what jetfleet cannot honour is an error naming
// the variable.
func TestParseOTelEnv(t *testing.T) {
	for _, c := range []struct {
		name string
		env  []string
		on   bool
		err  string
		want func(otelSettings) string // "" when right
	}{
		{name: "unset", env: nil},
		{name: "endpoint", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"}, on: true, want: func(s otelSettings) string {
			if s.Endpoint != "http://c:4318/v1/traces" || s.SamplerName != "parentbased_always_on" {
				return s.Endpoint + " " + s.SamplerName
			}
			return ""
		}},
		{name: "traces endpoint as is", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c/x"}, on: true, want: func(s otelSettings) string {
			if s.Endpoint != "https://c/x" {
				return s.Endpoint
			}
			return ""
		}},
		{name: "exporter otlp alone", env: []string{"OTEL_TRACES_EXPORTER", "otlp"}, on: true, want: func(s otelSettings) string {
			if s.Endpoint != "http://localhost:4318/v1/traces" {
				return s.Endpoint
			}
			return ""
		}},
		{name: "disabled", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_SDK_DISABLED", "true"}},
		{name: "exporter none", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_TRACES_EXPORTER", "none"}},
		{name: "exporter zipkin", env: []string{"OTEL_TRACES_EXPORTER", "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "grpc", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "bad endpoint", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "ratio", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c", "OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25"}, on: true, want: func(s otelSettings) string {
			if s.SamplerName != "parentbased_traceidratio 0.25" {
				return s.SamplerName
			}
			return ""
		}},
		{name: "bad ratio", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "bad sampler", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c", "OTEL_TRACES_SAMPLER", "jaeger_remote"}, err: "OTEL_TRACES_SAMPLER"},
		{name: "headers, resource, batch", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c",
			"OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=y", "OTEL_RESOURCE_ATTRIBUTES", "service.name=r,env=prod",
			"OTEL_SERVICE_NAME", "shop", "OTEL_BSP_SCHEDULE_DELAY", "200", "OTEL_EXPORTER_OTLP_TIMEOUT", "1500", "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"}, on: true,
			want: func(s otelSettings) string {
				if s.Headers["api-key"] != "a b" || s.Headers["x"] != "y" || s.ServiceName != "shop" || len(s.Resource) != 1 ||
					len(s.Batch) != 1 || s.Timeout != 1500*time.Millisecond || !s.Gzip {
					return "wrong"
				}
				return ""
			}},
		{name: "bad header", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c", "OTEL_EXPORTER_OTLP_HEADERS", "novalue"}, err: "OTEL_EXPORTER_OTLP_HEADERS"},
		{name: "bad batch", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c", "OTEL_BSP_MAX_QUEUE_SIZE", "-1"}, err: "OTEL_BSP_MAX_QUEUE_SIZE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := parseOTelEnv(envOf(c.env...))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one naming %s", err, c.err)
				}
				return
			}
			if err != nil || s.On != c.on {
				t.Fatalf("on %v, err %v; want on %v", s.On, err, c.on)
			}
			if c.want != nil {
				if msg := c.want(s); msg != "" {
					t.Errorf("settings: %s (%+v)", msg, s)
				}
			}
		})
	}
}
