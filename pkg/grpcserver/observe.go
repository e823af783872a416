package grpcserver

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// instrumentationScope names the tracer and meter of the RPC telemetry.
const instrumentationScope = "github.com/lodestar-cs/lodestar/pkg/grpcserver"

// observer is the outermost interceptor of every RPC: it traces and times
// the call, recovers panics and logs, in one step, with the span options and
// metric attributes of each method built once, so that an RPC's telemetry
// costs a span (when the sampler records it) and one histogram update.
//
// It records what otelgrpc's stats handler recorded, under the same
// semantic conventions: a server span named "package.Service/Method" that
// continues the caller's trace (W3C trace context in the metadata), with
// rpc.method, rpc.system.name and rpc.response.status_code, its status an
// error for the codes that mean a server failure; and the
// rpc.server.call.duration histogram with the same attributes and buckets,
// plus error.type on those failures. The duration is the interceptors' and
// the handler's: it leaves out decoding the request and writing the answer,
// which only a stats handler sees, at the price of gRPC building stats
// events for every RPC. Health and reflection are neither traced nor
// measured.
type observer struct {
	s        *Server
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram
	methods  sync.Map // full method name -> *methodTelemetry
}

// methodTelemetry is what the observer computes once per method.
type methodTelemetry struct {
	infra    bool
	spanName string
	spanOpts []trace.SpanStartOption
	// byCode holds the histogram's attributes per status code, as ready
	// record options: no attribute set is built per call.
	byCode [numCodes][]metric.RecordOption
}

// numCodes is the number of status codes gRPC defines (OK to
// Unauthenticated); others are rare enough to build their attributes anew.
const numCodes = int(codes.Unauthenticated) + 1

// durationBuckets are otelgrpc's bucket boundaries, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

func newObserver(s *Server, tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator) *observer {
	o := &observer{
		s:      s,
		tracer: tp.Tracer(instrumentationScope),
		prop:   prop,
	}
	meter := mp.Meter(instrumentationScope, metric.WithSchemaURL(semconv.SchemaURL))
	d, err := rpcconv.NewServerCallDuration(meter, metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		// Instrument errors still return a usable no-op instrument.
		s.logger.Warn("create RPC duration histogram", "err", err)
	}
	o.duration = d.Inst()
	return o
}

func (o *observer) method(fullMethod string) *methodTelemetry {
	if m, ok := o.methods.Load(fullMethod); ok {
		return m.(*methodTelemetry)
	}
	// gRPC calls interceptors only for registered methods, so the map
	// stays as small as the services.
	m, _ := o.methods.LoadOrStore(fullMethod, newMethodTelemetry(fullMethod))
	return m.(*methodTelemetry)
}

func newMethodTelemetry(fullMethod string) *methodTelemetry {
	m := &methodTelemetry{infra: IsInfraMethod(fullMethod)}
	if m.infra {
		return m
	}
	m.spanName = fullMethod
	if len(fullMethod) > 0 && fullMethod[0] == '/' {
		m.spanName = fullMethod[1:]
	}
	base := []attribute.KeyValue{semconv.RPCMethod(m.spanName), semconv.RPCSystemNameGRPC}
	m.spanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(base...)}
	for c := range codes.Code(numCodes) {
		m.byCode[c] = []metric.RecordOption{metric.WithAttributeSet(metricAttributes(base, c))}
	}
	return m
}

// metricAttributes are the histogram's attributes of a call that ended
// with code: as otelgrpc, error.type only on a server failure.
func metricAttributes(base []attribute.KeyValue, code codes.Code) attribute.Set {
	attrs := append(base[:len(base):len(base)], semconv.RPCResponseStatusCode(codeName(code)))
	if serverFailure(code) {
		attrs = append(attrs, semconv.ErrorTypeKey.String(codeName(code)))
	}
	return attribute.NewSet(attrs...)
}

func (o *observer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	m := o.method(info.FullMethod)
	start := time.Now()
	ctx, span := o.startSpan(ctx, m)
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, o.s.recovered(ctx, info.FullMethod, r)
		}
		o.finish(ctx, info.FullMethod, m, span, err, start)
	}()
	return handler(ctx, req)
}

func (o *observer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	m := o.method(info.FullMethod)
	start := time.Now()
	ctx, span := o.startSpan(ss.Context(), m)
	if span != nil {
		ss = &tracedStream{ServerStream: ss, ctx: ctx}
	}
	defer func() {
		if r := recover(); r != nil {
			err = o.s.recovered(ctx, info.FullMethod, r)
		}
		o.finish(ctx, info.FullMethod, m, span, err, start)
	}()
	return handler(srv, ss)
}

// startSpan continues the caller's trace, if the metadata carries one, in
// a server span; nil for health and reflection.
func (o *observer) startSpan(ctx context.Context, m *methodTelemetry) (context.Context, trace.Span) {
	if m.infra {
		return ctx, nil
	}
	ctx = o.prop.Extract(ctx, incomingCarrier{ctx})
	return o.tracer.Start(ctx, m.spanName, m.spanOpts...)
}

func (o *observer) finish(ctx context.Context, method string, m *methodTelemetry, span trace.Span, err error, start time.Time) {
	d := time.Since(start)
	code := statusCode(err)
	if span != nil {
		if span.IsRecording() {
			if int(code) < numCodes {
				span.SetAttributes(statusAttrs[code]...)
			} else {
				span.SetAttributes(semconv.RPCResponseStatusCode(codeName(code)))
			}
			if serverFailure(code) {
				span.SetStatus(otelcodes.Error, status.Convert(err).Message())
			}
		}
		span.End()
	}
	if !m.infra && o.duration.Enabled(ctx) {
		if int(code) < numCodes {
			o.duration.Record(ctx, d.Seconds(), m.byCode[code]...)
		} else {
			base := []attribute.KeyValue{semconv.RPCMethod(m.spanName), semconv.RPCSystemNameGRPC}
			o.duration.Record(ctx, d.Seconds(), metric.WithAttributeSet(metricAttributes(base, code)))
		}
	}
	o.s.logRPC(ctx, method, code, err, d)
}

// tracedStream gives a streaming handler the context with its span.
type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tracedStream) Context() context.Context { return s.ctx }

// incomingCarrier reads the propagator's fields from the incoming metadata
// without copying all of it, as metadata.FromIncomingContext would.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set does nothing: incoming metadata is not written to.
func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// serverFailure reports whether a code means the server failed, as
// otelgrpc classifies a server's codes for span status and error.type.
func serverFailure(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// codeNames are the codes' canonical names, as in rpc.response.status_code.
var codeNames = [numCodes]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// statusAttrs are the rpc.response.status_code attributes of the codes.
var statusAttrs = func() (a [numCodes][]attribute.KeyValue) {
	for c := range codes.Code(numCodes) {
		a[c] = []attribute.KeyValue{semconv.RPCResponseStatusCode(codeNames[c])}
	}
	return a
}()

func codeName(c codes.Code) string {
	if int(c) < numCodes {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}
