// Package grpcserver provides the gRPC server every Lodestar service runs
// on: health checking with per-service status, reflection, panic recovery,
// request logging, OpenTelemetry instrumentation and a graceful stop bounded
// by a deadline.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// streamWorkersPerCPU is how many RPCs per core run on reused goroutines:
// a core runs many handlers that wait on I/O.
const streamWorkersPerCPU = 32

// Defaults for Config fields left zero.
const (
	DefaultMaxRecvMsgSize  = 4 << 20 // gRPC's own default, made explicit.
	DefaultShutdownTimeout = 10 * time.Second
)

// Config configures a Server. The zero value works: it logs nowhere and
// instruments with the global OpenTelemetry providers.
type Config struct {
	// Logger receives the request log and recovered panics. Nil discards.
	Logger *slog.Logger
	// TracerProvider, MeterProvider and Propagator instrument every RPC
	// (health and reflection excepted). Nil means the OpenTelemetry global.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// MaxRecvMsgSize is the largest request message accepted, in bytes;
	// zero means DefaultMaxRecvMsgSize.
	MaxRecvMsgSize int
	// ShutdownTimeout bounds the graceful stop: RPCs still running after it
	// are cancelled. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Option adds to what Config sets.
type Option func(*options)

type options struct {
	unary         []grpc.UnaryServerInterceptor
	stream        []grpc.StreamServerInterceptor
	serverOptions []grpc.ServerOption
}

// WithUnaryInterceptors appends unary interceptors (authentication, for
// example). They run in the order given, inside the built-in logging and
// recovery interceptors, so their panics are recovered and their errors
// logged. Use IsInfraMethod to exempt health and reflection.
func WithUnaryInterceptors(i ...grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, i...) }
}

// WithStreamInterceptors is WithUnaryInterceptors for streaming RPCs.
func WithStreamInterceptors(i ...grpc.StreamServerInterceptor) Option {
	return func(o *options) { o.stream = append(o.stream, i...) }
}

// WithServerOptions appends raw grpc.ServerOptions (credentials, keepalive
// policy, ...). Add interceptors with WithUnaryInterceptors and
// WithStreamInterceptors instead, so they run inside recovery.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.serverOptions = append(o.serverOptions, opts...) }
}

// Server is a gRPC server with health, reflection and the interceptors
// every Lodestar service needs. Register services on GRPC() before Serve.
type Server struct {
	logger          *slog.Logger
	shutdownTimeout time.Duration
	grpc            *grpc.Server
	health          *health.Server
	panics          metric.Int64Counter

	mu sync.Mutex
	// serving is the status of every service the overall status depends
	// on: those registered on the gRPC server and those named in SetServing.
	serving  map[string]bool
	stopping bool

	shutdownOnce sync.Once
	stoppingCh   chan struct{} // closed when Shutdown begins
	stoppedCh    chan struct{} // closed when Shutdown has finished
}

// New builds a Server. Overall health ("") is NOT_SERVING until every
// tracked service has been marked serving with SetServing.
func New(cfg Config, opts ...Option) *Server {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxRecv := cfg.MaxRecvMsgSize
	if maxRecv <= 0 {
		maxRecv = DefaultMaxRecvMsgSize
	}
	shutdownTimeout := cfg.ShutdownTimeout
	if shutdownTimeout <= 0 {
		shutdownTimeout = DefaultShutdownTimeout
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}

	s := &Server{
		logger:          logger,
		shutdownTimeout: shutdownTimeout,
		health:          health.NewServer(),
		serving:         make(map[string]bool),
		stoppingCh:      make(chan struct{}),
		stoppedCh:       make(chan struct{}),
	}
	panics, err := mp.Meter("github.com/lodestar-cs/lodestar/pkg/grpcserver").Int64Counter(
		"lodestar.grpc.server.panics",
		metric.WithDescription("Panics recovered in gRPC handlers and interceptors."),
		metric.WithUnit("{panic}"),
	)
	if err != nil {
		// Instrument errors still return a usable no-op instrument.
		logger.Warn("create panic counter", "err", err)
	}
	s.panics = panics

	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := cfg.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	obs := newObserver(s, tp, mp, prop)

	// The observer outermost: it traces, times, recovers and logs, so the
	// log records the code recovery produced and carries the span's trace,
	// and panics in callers' interceptors are recovered too.
	// Undefined enum numbers are refused innermost, after authentication.
	unary := append(append([]grpc.UnaryServerInterceptor{obs.unary}, o.unary...), enumsUnary)
	stream := append(append([]grpc.StreamServerInterceptor{obs.stream}, o.stream...), enumsStream)
	serverOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Handle RPCs on long-lived workers instead of a new goroutine
		// each, whose stack grows anew on every call; RPCs beyond the
		// workers still get a goroutine of their own.
		grpc.NumStreamWorkers(uint32(streamWorkersPerCPU * runtime.GOMAXPROCS(0))),
	}, o.serverOptions...)
	s.grpc = grpc.NewServer(serverOpts...)

	// health.NewServer starts with "" SERVING; nothing is ready yet.
	s.health.SetServingStatus("", healthgrpc.HealthCheckResponse_NOT_SERVING)
	healthgrpc.RegisterHealthServer(s.grpc, &healthService{Server: s.health, stopping: s.stoppingCh})
	reflection.Register(s.grpc)
	return s
}

// GRPC returns the underlying server, to register services on before Serve.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// SetServing sets the health status of one service, named as gRPC names it
// ("lodestar.scoring.v1.ScoringService"), and recomputes the overall status
// (""): SERVING only when every tracked service is serving. Tracked are the
// services registered on GRPC() (health and reflection aside) and any name
// ever passed here, so a process with no tracked service is never SERVING.
// After Shutdown has begun it does nothing.
func (s *Server) SetServing(service string, serving bool) {
	if service == "" {
		s.logger.Warn("grpcserver: SetServing needs a service name; the overall status is derived")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return
	}
	s.trackRegisteredLocked()
	s.serving[service] = serving
	s.health.SetServingStatus(service, servingStatus(serving))
	s.updateOverallLocked()
}

// trackRegisteredLocked starts tracking, as not serving, the services
// registered on the gRPC server that are not tracked yet.
func (s *Server) trackRegisteredLocked() {
	for name := range s.grpc.GetServiceInfo() {
		if _, ok := s.serving[name]; ok || isInfraService(name) {
			continue
		}
		s.serving[name] = false
		s.health.SetServingStatus(name, healthgrpc.HealthCheckResponse_NOT_SERVING)
	}
}

func (s *Server) updateOverallLocked() {
	all := len(s.serving) > 0
	for _, ok := range s.serving {
		all = all && ok
	}
	s.health.SetServingStatus("", servingStatus(all))
}

func servingStatus(serving bool) healthgrpc.HealthCheckResponse_ServingStatus {
	if serving {
		return healthgrpc.HealthCheckResponse_SERVING
	}
	return healthgrpc.HealthCheckResponse_NOT_SERVING
}

// Serve accepts connections on lis until ctx is cancelled, then shuts the
// server down (see Shutdown) and returns nil once it has stopped. It also
// returns nil, after the stop completes, when Shutdown is called directly.
// If accepting fails, it shuts down and returns the error.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.mu.Lock()
	if !s.stopping {
		// Services are all registered by now: gRPC forbids it after Serve.
		s.trackRegisteredLocked()
		s.updateOverallLocked()
	}
	s.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()

	select {
	case <-ctx.Done():
		s.Shutdown()
		<-errc
		return nil
	case err := <-errc:
		if s.isStopping() && (err == nil || errors.Is(err, grpc.ErrServerStopped)) {
			// Shutdown was called; wait until it has drained.
			<-s.stoppedCh
			return nil
		}
		if err == nil {
			// Stopped through GRPC() directly: nothing of ours to wait for.
			return nil
		}
		s.Shutdown()
		return fmt.Errorf("grpcserver: serve on %s: %w", lis.Addr(), err)
	}
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// Stopping returns a channel closed when Shutdown begins. Long-lived
// streaming handlers should return when it closes: a graceful stop waits
// for them until ShutdownTimeout.
func (s *Server) Stopping() <-chan struct{} { return s.stoppingCh }

// Shutdown stops the server: it sets every health status to NOT_SERVING,
// so load balancers and clients stop choosing it, then stops gracefully
// (no new RPCs, in-flight ones complete) and, if RPCs are still running
// after ShutdownTimeout, cancels them. It returns once the server has
// stopped; calling it again waits for the same stop.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		defer close(s.stoppedCh)

		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		s.health.Shutdown()
		close(s.stoppingCh)

		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		timer := time.NewTimer(s.shutdownTimeout)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			s.logger.Warn("grpcserver: graceful stop timed out; cancelling remaining RPCs", "timeout", s.shutdownTimeout)
			s.grpc.Stop()
			<-done
		}
	})
	<-s.stoppedCh
}

// IsInfraMethod reports whether fullMethod ("/package.Service/Method") is
// a gRPC health or reflection method: those need no authentication.
func IsInfraMethod(fullMethod string) bool {
	m := strings.TrimPrefix(fullMethod, "/")
	return strings.HasPrefix(m, healthgrpc.Health_ServiceDesc.ServiceName+"/") ||
		strings.HasPrefix(m, "grpc.reflection.")
}

func isInfraService(name string) bool { return IsInfraMethod(name + "/") }

// healthService ends Watch streams when shutdown begins. Without it, every
// client doing client-side health checking keeps a Watch stream open and
// GracefulStop waits for the whole ShutdownTimeout.
type healthService struct {
	*health.Server
	stopping <-chan struct{}
}

func (h *healthService) Watch(req *healthgrpc.HealthCheckRequest, stream healthgrpc.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-stop:
		}
	}()
	err := h.Server.Watch(req, &watchStream{Health_WatchServer: stream, ctx: ctx})
	select {
	case <-h.stopping:
		// Watch may have seen the cancellation before the NOT_SERVING
		// update; make sure the client learns the status before the end.
		_ = stream.Send(&healthgrpc.HealthCheckResponse{Status: healthgrpc.HealthCheckResponse_NOT_SERVING})
		return errServerStopping
	default:
		return err
	}
}

type watchStream struct {
	healthgrpc.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }
