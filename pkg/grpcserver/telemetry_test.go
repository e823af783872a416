package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
	"github.com/lodestar-cs/lodestar/pkg/telemetry"
)

// TestTelemetry runs the server with pkg/telemetry as a service does: the
// caller's trace continues on the server, error logs carry its trace_id,
// and RPC and panic metrics reach /metrics.
func TestTelemetry(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
	}
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: "grpcserver-test"})
	if err != nil {
		t.Fatalf("telemetry.Setup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("telemetry Shutdown: %v", err)
		}
	})
	logs := &syncBuffer{}
	h := start(t, grpcserver.Config{
		Logger:         telemetry.NewLogger(logs, slog.LevelInfo, telemetry.FormatJSON),
		TracerProvider: tel.TracerProvider(),
		MeterProvider:  tel.MeterProvider(),
		Propagator:     tel.Propagator(),
	}, nil)
	client := testpb.NewTestServiceClient(h.conn)

	// The client's span, sent as a traceparent header.
	ctx, span := tel.TracerProvider().Tracer("test").Start(ctxTimeout(t), "client")
	defer span.End()
	carrier := propagation.MapCarrier{}
	tel.Propagator().Inject(ctx, carrier)
	ctx = metadata.NewOutgoingContext(ctx, metadata.New(carrier))

	for _, body := range []string{"internal", "panic"} {
		if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload(body)}); status.Code(err) != codes.Internal {
			t.Fatalf("%s call: %v, want Internal", body, err)
		}
	}

	wantTrace := span.SpanContext().TraceID().String()
	var withTrace int
	for _, r := range logs.records(t) {
		if r[telemetry.TraceIDKey] == wantTrace {
			withTrace++
			if r[telemetry.SpanIDKey] == span.SpanContext().SpanID().String() {
				t.Errorf("log record %v has the client's span id, want the server span's", r)
			}
		}
	}
	// Per call: the "gRPC call" error; for the panic also the panic record.
	if withTrace != 3 {
		t.Errorf("%d log records carry the caller's trace id %s, want 3", withTrace, wantTrace)
	}

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	for _, want := range []string{
		"rpc_server_call_duration_seconds_count{",
		`lodestar_grpc_server_panics_total{`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Health probes are filtered out of instrumentation.
	checkHealth(t, h.conn, "")
	rec = httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ = io.ReadAll(rec.Result().Body)
	if strings.Contains(string(body), "grpc.health.v1.Health") {
		t.Error("health checks are instrumented")
	}
}
