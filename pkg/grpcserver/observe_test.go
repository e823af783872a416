package grpcserver_test

import (
	"context"
	"io"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
)

// TestRPCTelemetry checks the spans and the duration histogram of RPCs
// under the semantic conventions otelgrpc follows.
func TestRPCTelemetry(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	prop := propagation.TraceContext{}

	// The span a streaming handler sees, through a caller's interceptor.
	var (
		mu         sync.Mutex
		streamSpan trace.SpanContext
	)
	captureStream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		mu.Lock()
		streamSpan = trace.SpanContextFromContext(ss.Context())
		mu.Unlock()
		return handler(srv, ss)
	}
	h := start(t, grpcserver.Config{TracerProvider: tp, MeterProvider: mp, Propagator: prop}, nil,
		grpcserver.WithStreamInterceptors(captureStream))
	client := testpb.NewTestServiceClient(h.conn)

	// The caller's trace, in the metadata.
	callerTP := sdktrace.NewTracerProvider()
	ctx, caller := callerTP.Tracer("test").Start(ctxTimeout(t), "caller")
	defer caller.End()
	carrier := propagation.MapCarrier{}
	prop.Inject(ctx, carrier)
	ctx = metadata.NewOutgoingContext(ctx, metadata.New(carrier))

	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload("ok")}); err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]codes.Code{"internal": codes.Internal, "not-found": codes.NotFound, "panic": codes.Internal} {
		if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload(body)}); status.Code(err) != want {
			t.Fatalf("%s: %v, want %v", body, err, want)
		}
	}
	stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{Payload: payload("ok")})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	checkHealth(t, h.conn, "")

	// Spans: one per call but the health check, children of the caller's.
	ended := spans.Ended()
	if len(ended) != 5 {
		t.Fatalf("%d spans, want 5 (4 unary calls, 1 stream; none for health)", len(ended))
	}
	byCode := map[string]int{}
	for _, s := range ended {
		attrs := attrMap(s.Attributes())
		code := attrs["rpc.response.status_code"]
		byCode[s.Name()+" "+code]++
		if s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %s kind %v, want server", s.Name(), s.SpanKind())
		}
		if s.Parent().SpanID() != caller.SpanContext().SpanID() || !s.Parent().IsRemote() ||
			s.SpanContext().TraceID() != caller.SpanContext().TraceID() {
			t.Errorf("span %s does not continue the caller's trace: parent %v", s.Name(), s.Parent())
		}
		if attrs["rpc.method"] != s.Name() || attrs["rpc.system.name"] != "grpc" {
			t.Errorf("span %s attributes %v", s.Name(), attrs)
		}
		wantStatus := otelcodes.Unset
		if code == "INTERNAL" {
			wantStatus = otelcodes.Error
		}
		if s.Status().Code != wantStatus {
			t.Errorf("span %s (%s) status %v, want %v", s.Name(), code, s.Status(), wantStatus)
		}
	}
	want := map[string]int{
		"grpc.testing.TestService/UnaryCall OK":           1,
		"grpc.testing.TestService/UnaryCall INTERNAL":     2,
		"grpc.testing.TestService/UnaryCall NOT_FOUND":    1,
		"grpc.testing.TestService/StreamingOutputCall OK": 1,
	}
	for k, n := range want {
		if byCode[k] != n {
			t.Errorf("spans %v, want %v", byCode, want)
			break
		}
	}
	mu.Lock()
	if streamSpan.TraceID() != caller.SpanContext().TraceID() || streamSpan.SpanID() == caller.SpanContext().SpanID() {
		t.Errorf("the streaming handler's context has span %v, want the server span", streamSpan)
	}
	mu.Unlock()

	// The duration histogram: a point per method and code, error.type on
	// server failures only; health is not measured.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var hist *metricdata.Histogram[float64]
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "rpc.server.call.duration" {
				if m.Unit != "s" {
					t.Errorf("unit %q, want s", m.Unit)
				}
				h := m.Data.(metricdata.Histogram[float64])
				hist = &h
			}
		}
	}
	if hist == nil {
		t.Fatal("no rpc.server.call.duration")
	}
	points := map[string]uint64{}
	for _, p := range hist.DataPoints {
		a := attrMap(p.Attributes.ToSlice())
		if a["rpc.system.name"] != "grpc" {
			t.Errorf("point %v lacks rpc.system.name", a)
		}
		points[a["rpc.method"]+" "+a["rpc.response.status_code"]+" "+a["error.type"]] += p.Count
	}
	wantPoints := map[string]uint64{
		"grpc.testing.TestService/UnaryCall OK ":               1,
		"grpc.testing.TestService/UnaryCall INTERNAL INTERNAL": 2,
		"grpc.testing.TestService/UnaryCall NOT_FOUND ":        1,
		"grpc.testing.TestService/StreamingOutputCall OK ":     1,
	}
	if len(points) != len(wantPoints) {
		t.Errorf("histogram points %v, want %v", points, wantPoints)
	}
	for k, n := range wantPoints {
		if points[k] != n {
			t.Errorf("histogram points %v, want %v", points, wantPoints)
			break
		}
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}
