package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// errPanic is what a client sees of a panic: the details are in the log.
	errPanic          = status.Error(codes.Internal, "internal error")
	errServerStopping = status.Error(codes.Unavailable, "server is shutting down")
)

// recovered turns a panic in a handler or interceptor into codes.Internal,
// so one bad request never takes the process down (panics in goroutines the
// handler starts are out of reach): it counts and logs the panic, and
// returns what the client sees. The observer interceptor calls it.
func (s *Server) recovered(ctx context.Context, method string, r any) error {
	s.panics.Add(ctx, 1, metric.WithAttributes(attribute.String("rpc.method", method)))
	s.logger.LogAttrs(ctx, slog.LevelError, "panic in gRPC handler",
		slog.String("method", method),
		slog.String("panic", fmt.Sprint(r)),
		slog.String("stack", string(debug.Stack())),
	)
	return errPanic
}

// logRPC logs every RPC at debug level, and at error level those that
// failed with a code meaning a server bug (Internal, Unknown). Successful
// health and reflection calls are not logged: probes would drown the rest.
func (s *Server) logRPC(ctx context.Context, method string, code codes.Code, err error, d time.Duration) {
	level := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown:
		level = slog.LevelError
	case codes.OK:
		if IsInfraMethod(method) {
			return
		}
	}
	if !s.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", d),
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.logger.LogAttrs(ctx, level, "gRPC call", attrs...)
}

// statusCode is the code gRPC sends for err: like the server itself, it
// maps bare context errors to Canceled and DeadlineExceeded, not Unknown,
// so clients going away are not logged as server errors.
func statusCode(err error) codes.Code {
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return status.FromContextError(err).Code()
}
