package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// clearOTelEnv makes a test independent of the OTEL_* variables of the
// machine running it.
func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		envOTLPEndpoint, envOTLPTracesEndpoint, envOTLPProtocol, envOTLPTracesProtocol,
		envTracesExporter, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER",
	} {
		t.Setenv(k, "")
	}
}

func setup(t *testing.T, cfg Config) *Telemetry {
	t.Helper()
	tel, err := Setup(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	return string(body)
}

func TestMetricsHandler(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Config{ServiceName: "metrics-test", ServiceVersion: "1.2.3"})

	meter := tel.MeterProvider().Meter("github.com/lodestar-cs/lodestar/pkg/telemetry/test")
	requests, err := meter.Int64Counter("lodestar.test.requests", metric.WithDescription("Test requests."))
	if err != nil {
		t.Fatalf("create counter: %v", err)
	}
	requests.Add(t.Context(), 3, metric.WithAttributes(attribute.String("tenant", "acme")))
	latency, err := meter.Float64Histogram("lodestar.test.latency", metric.WithUnit("s"))
	if err != nil {
		t.Fatalf("create histogram: %v", err)
	}
	latency.Record(t.Context(), 0.25)

	body := scrape(t, tel.MetricsHandler())
	for _, want := range []string{
		"# HELP lodestar_test_requests_total Test requests.",
		`lodestar_test_requests_total{otel_scope_name="github.com/lodestar-cs/lodestar/pkg/telemetry/test",otel_scope_schema_url="",otel_scope_version="",tenant="acme"} 3`,
		"lodestar_test_latency_seconds_bucket{",
		"lodestar_test_latency_seconds_count{",
		`service_name="metrics-test"`,
		`service_version="1.2.3"`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics output:\n%s", body)
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	clearOTelEnv(t)
	// Two Telemetry values in one process (as tests and the all-in-one may
	// create) must not collide on a shared registry.
	a := setup(t, Config{ServiceName: "a"})
	b := setup(t, Config{ServiceName: "b"})

	c, err := a.MeterProvider().Meter("test").Int64Counter("only.in.a")
	if err != nil {
		t.Fatalf("create counter: %v", err)
	}
	c.Add(t.Context(), 1)

	if !strings.Contains(scrape(t, a.MetricsHandler()), "only_in_a_total") {
		t.Error("metric missing from its own registry")
	}
	if strings.Contains(scrape(t, b.MetricsHandler()), "only_in_a_total") {
		t.Error("metric leaked into another Telemetry's registry")
	}
}

func TestResourceFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		notWant []string
	}{
		{
			name: "config only",
			want: []string{`service_name="from-config"`},
		},
		{
			name:    "OTEL_SERVICE_NAME wins",
			env:     map[string]string{"OTEL_SERVICE_NAME": "from-env"},
			want:    []string{`service_name="from-env"`},
			notWant: []string{`service_name="from-config"`},
		},
		{
			name: "OTEL_RESOURCE_ATTRIBUTES",
			env:  map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging,service.name=attr-name"},
			want: []string{`deployment_environment_name="staging"`, `service_name="attr-name"`},
		},
		{
			name: "malformed OTEL_RESOURCE_ATTRIBUTES is not fatal",
			env:  map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "no-equals-sign"},
			want: []string{`service_name="from-config"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tel := setup(t, Config{ServiceName: "from-config"})
			body := scrape(t, tel.MetricsHandler())
			var targetInfo string
			for line := range strings.Lines(body) {
				if strings.HasPrefix(line, "target_info{") {
					targetInfo = line
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(targetInfo, w) {
					t.Errorf("target_info %q lacks %q", targetInfo, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(targetInfo, w) {
					t.Errorf("target_info %q has %q", targetInfo, w)
				}
			}
		})
	}
}

func TestOTLPTracesEnabled(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		want     bool
		endpoint string
	}{
		{name: "nothing set"},
		{name: "generic endpoint", env: map[string]string{envOTLPEndpoint: "http://collector:4317"}, want: true, endpoint: "http://collector:4317"},
		{name: "traces endpoint", env: map[string]string{envOTLPTracesEndpoint: "http://traces:4317"}, want: true, endpoint: "http://traces:4317"},
		{name: "traces endpoint preferred", env: map[string]string{envOTLPEndpoint: "http://a:4317", envOTLPTracesEndpoint: "http://b:4317"}, want: true, endpoint: "http://b:4317"},
		{name: "exporter none wins", env: map[string]string{envOTLPEndpoint: "http://a:4317", envTracesExporter: "none"}},
		{name: "exporter otlp without endpoint", env: map[string]string{envTracesExporter: "otlp"}, want: true, endpoint: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			endpoint, ok := otlpTracesEnabled()
			if ok != tt.want || endpoint != tt.endpoint {
				t.Errorf("otlpTracesEnabled() = %q, %v; want %q, %v", endpoint, ok, tt.endpoint, tt.want)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "no exporter"},
		// Nothing listens on port 1; with no spans pending, neither Setup
		// nor Shutdown may wait for the collector.
		{name: "unreachable collector", env: map[string]string{envOTLPEndpoint: "http://127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tel, err := Setup(t.Context(), Config{ServiceName: "shutdown-test"})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if tt.env == nil {
				_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
				span.End()
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := tel.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := tel.Shutdown(ctx); err != nil {
				t.Fatalf("second Shutdown: %v", err)
			}
		})
	}
}

func TestPropagator(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Config{ServiceName: "prop-test"})
	fields := strings.Join(tel.Propagator().Fields(), ",")
	for _, want := range []string{"traceparent", "baggage"} {
		if !strings.Contains(fields, want) {
			t.Errorf("propagator fields %q lack %q", fields, want)
		}
	}
}
