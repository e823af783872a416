package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
)

const testService = "grpc.testing.TestService"

// service is a grpc.testing.TestService whose UnaryCall and
// StreamingOutputCall do what the request payload's body says.
type service struct {
	testpb.UnimplementedTestServiceServer
	entered chan struct{} // receives when a "block" call has started
	release chan struct{} // closed to let "block" calls finish
}

func newService() *service {
	return &service{entered: make(chan struct{}, 10), release: make(chan struct{})}
}

func (s *service) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *service) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := s.act(ctx, string(req.GetPayload().GetBody())); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (s *service) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := s.act(stream.Context(), string(req.GetPayload().GetBody())); err != nil {
		return err
	}
	return stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()})
}

func (s *service) act(ctx context.Context, what string) error {
	switch what {
	case "panic":
		panic("boom")
	case "not-found":
		return status.Error(codes.NotFound, "no such account")
	case "internal":
		return status.Error(codes.Internal, "store broken")
	case "plain-error":
		return errors.New("not a status")
	case "block":
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func payload(body string) *testpb.Payload { return &testpb.Payload{Body: []byte(body)} }

// syncBuffer is a log sink the server's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the JSON log records written so far.
func (b *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

type harness struct {
	srv  *grpcserver.Server
	svc  *service
	conn *grpc.ClientConn
	logs *syncBuffer
	stop context.CancelFunc // cancels Serve's context

	serveDone chan struct{}
	serveErr  error
}

// start serves a Server with the test service registered on a loopback
// listener and connects a client to it. register, if not nil, runs before
// Serve.
func start(t *testing.T, cfg grpcserver.Config, register func(*grpcserver.Server), opts ...grpcserver.Option) *harness {
	t.Helper()
	h := &harness{svc: newService(), logs: &syncBuffer{}, serveDone: make(chan struct{})}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.srv = grpcserver.New(cfg, opts...)
	testpb.RegisterTestServiceServer(h.srv.GRPC(), h.svc)
	if register != nil {
		register(h.srv)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() {
		defer close(h.serveDone)
		h.serveErr = h.srv.Serve(ctx, lis)
	}()
	t.Cleanup(func() {
		cancel()
		if err := h.waitServe(t, 20*time.Second); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// Runs before the cleanup above: close the client, then stop the server.
	t.Cleanup(func() { conn.Close() })
	h.conn = conn
	return h
}

// waitServe waits for Serve to return and gives its result.
func (h *harness) waitServe(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-h.serveDone:
		return h.serveErr
	case <-time.After(within):
		t.Fatalf("Serve did not return within %v", within)
		return nil
	}
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func checkHealth(t *testing.T, conn *grpc.ClientConn, service string) healthgrpc.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthgrpc.NewHealthClient(conn).Check(ctxTimeout(t), &healthgrpc.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check %q: %v", service, err)
	}
	return resp.GetStatus()
}

func TestHealth(t *testing.T) {
	const extra = "lodestar.test.v1.Extra" // tracked only through SetServing
	h := start(t, grpcserver.Config{}, func(s *grpcserver.Server) {
		s.SetServing(extra, false)
	})
	const (
		serving    = healthgrpc.HealthCheckResponse_SERVING
		notServing = healthgrpc.HealthCheckResponse_NOT_SERVING
	)

	steps := []struct {
		name string
		set  func()
		want map[string]healthgrpc.HealthCheckResponse_ServingStatus
	}{
		{
			name: "nothing ready",
			want: map[string]healthgrpc.HealthCheckResponse_ServingStatus{"": notServing, testService: notServing, extra: notServing},
		},
		{
			name: "one of two ready",
			set:  func() { h.srv.SetServing(testService, true) },
			want: map[string]healthgrpc.HealthCheckResponse_ServingStatus{"": notServing, testService: serving, extra: notServing},
		},
		{
			name: "all ready",
			set:  func() { h.srv.SetServing(extra, true) },
			want: map[string]healthgrpc.HealthCheckResponse_ServingStatus{"": serving, testService: serving, extra: serving},
		},
		{
			name: "one goes back",
			set:  func() { h.srv.SetServing(testService, false) },
			want: map[string]healthgrpc.HealthCheckResponse_ServingStatus{"": notServing, testService: notServing, extra: serving},
		},
		{
			name: "ready again",
			set:  func() { h.srv.SetServing(testService, true) },
			want: map[string]healthgrpc.HealthCheckResponse_ServingStatus{"": serving, testService: serving, extra: serving},
		},
	}
	for _, step := range steps {
		if step.set != nil {
			step.set()
		}
		for svc, want := range step.want {
			if got := checkHealth(t, h.conn, svc); got != want {
				t.Errorf("%s: health(%q) = %v, want %v", step.name, svc, got, want)
			}
		}
	}
}

func TestHealthNoTrackedServiceIsNotServing(t *testing.T) {
	srv := grpcserver.New(grpcserver.Config{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })

	if got := checkHealth(t, conn, ""); got != healthgrpc.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health(\"\") = %v with nothing declared ready, want NOT_SERVING", got)
	}
}

func TestShutdownSetsNotServingBeforeStopping(t *testing.T) {
	// A long timeout: the Watch stream must end with the shutdown, not hold
	// the graceful stop until the deadline.
	h := start(t, grpcserver.Config{ShutdownTimeout: time.Minute}, nil)
	h.srv.SetServing(testService, true)

	ctx := ctxTimeout(t)
	watch, err := healthgrpc.NewHealthClient(h.conn).Watch(ctx, &healthgrpc.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
		t.Fatalf("first watch status = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	began := time.Now()
	h.stop()
	resp, err := watch.Recv()
	if err != nil || resp.GetStatus() != healthgrpc.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch status after shutdown = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	if err := h.waitServe(t, 20*time.Second); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("shutdown took %v: the health Watch stream held the graceful stop", d)
	}
}

func TestReflection(t *testing.T) {
	h := start(t, grpcserver.Config{}, nil)
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctxTimeout(t))
	if err != nil {
		t.Fatalf("reflection stream: %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatalf("send list services: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("receive list services: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
	var got []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		got = append(got, s.GetName())
	}
	for _, want := range []string{testService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(got, want) {
			t.Errorf("reflection lists %v, missing %q", got, want)
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	h := start(t, grpcserver.Config{}, nil)
	client := testpb.NewTestServiceClient(h.conn)

	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{
			name: "unary",
			call: func(ctx context.Context) error {
				_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload("panic")})
				return err
			},
		},
		{
			name: "stream",
			call: func(ctx context.Context) error {
				stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{Payload: payload("panic")})
				if err != nil {
					return err
				}
				_, err = stream.Recv()
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctxTimeout(t))
			if status.Code(err) != codes.Internal {
				t.Fatalf("panicking %s call: %v, want code Internal", tt.name, err)
			}
			if strings.Contains(err.Error(), "boom") {
				t.Errorf("panic value leaked to the client: %v", err)
			}
			// The process and the server are still up.
			if _, err := client.EmptyCall(ctxTimeout(t), &testpb.Empty{}); err != nil {
				t.Fatalf("call after panic: %v", err)
			}
		})
	}

	var panics int
	for _, r := range h.logs.records(t) {
		if r["msg"] != "panic in gRPC handler" {
			continue
		}
		panics++
		if r["level"] != "ERROR" || r["panic"] != "boom" || !strings.Contains(r["stack"].(string), "(*service).act") {
			t.Errorf("panic log record %v lacks level, value or stack", r)
		}
	}
	if panics != len(tests) {
		t.Errorf("logged %d panics, want %d", panics, len(tests))
	}
}

func TestGracefulStopCompletesInFlight(t *testing.T) {
	h := start(t, grpcserver.Config{ShutdownTimeout: time.Minute}, nil)
	client := testpb.NewTestServiceClient(h.conn)

	type result struct {
		resp *testpb.SimpleResponse
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client.UnaryCall(ctxTimeout(t), &testpb.SimpleRequest{Payload: payload("block")})
		res <- result{resp, err}
	}()
	select {
	case <-h.svc.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("blocking call never reached the handler")
	}

	h.stop()
	select {
	case <-h.srv.Stopping():
	case <-time.After(10 * time.Second):
		t.Fatal("Stopping not closed after the context was cancelled")
	}
	select {
	case <-h.serveDone:
		t.Fatal("Serve returned while an RPC was in flight")
	case <-time.After(200 * time.Millisecond):
	}

	close(h.svc.release)
	r := <-res
	if r.err != nil {
		t.Fatalf("in-flight call: %v, want success", r.err)
	}
	if string(r.resp.GetPayload().GetBody()) != "block" {
		t.Errorf("in-flight call response = %v", r.resp)
	}
	if err := h.waitServe(t, 10*time.Second); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// New calls are refused once stopped.
	if _, err := client.EmptyCall(ctxTimeout(t), &testpb.Empty{}); status.Code(err) != codes.Unavailable {
		t.Errorf("call after stop: %v, want Unavailable", err)
	}
}

func TestShutdownTimeoutCancelsStragglers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := start(t, grpcserver.Config{ShutdownTimeout: timeout}, nil)
	client := testpb.NewTestServiceClient(h.conn)

	errc := make(chan error, 1)
	go func() {
		// Never released: only the forced stop ends it.
		_, err := client.UnaryCall(ctxTimeout(t), &testpb.SimpleRequest{Payload: payload("block")})
		errc <- err
	}()
	<-h.svc.entered

	began := time.Now()
	h.stop()
	if err := h.waitServe(t, 10*time.Second); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(began); d < timeout {
		t.Errorf("Serve returned after %v, before the %v shutdown timeout", d, timeout)
	}
	if err := <-errc; status.Code(err) == codes.OK {
		t.Error("straggling call succeeded, want it cancelled")
	}
}

func TestShutdownDirect(t *testing.T) {
	h := start(t, grpcserver.Config{}, nil)
	h.srv.Shutdown()
	if err := h.waitServe(t, 10*time.Second); err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	h.srv.Shutdown() // idempotent
	h.srv.SetServing(testService, true)
	// Serve on a stopped server returns at once.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if err := h.srv.Serve(t.Context(), lis); err != nil {
		t.Errorf("Serve on a stopped server: %v", err)
	}
}

func TestRequestLogging(t *testing.T) {
	h := start(t, grpcserver.Config{}, nil)
	client := testpb.NewTestServiceClient(h.conn)

	tests := []struct {
		body      string
		wantCode  codes.Code
		wantLevel string
	}{
		{body: "ok", wantCode: codes.OK, wantLevel: "DEBUG"},
		{body: "not-found", wantCode: codes.NotFound, wantLevel: "DEBUG"},
		{body: "internal", wantCode: codes.Internal, wantLevel: "ERROR"},
		{body: "plain-error", wantCode: codes.Unknown, wantLevel: "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			_, err := client.UnaryCall(ctxTimeout(t), &testpb.SimpleRequest{Payload: payload(tt.body)})
			if status.Code(err) != tt.wantCode {
				t.Fatalf("call: %v, want code %v", err, tt.wantCode)
			}
		})
	}
	// Successful health checks stay out of the log.
	checkHealth(t, h.conn, "")

	var got []map[string]any
	for _, r := range h.logs.records(t) {
		if r["msg"] == "gRPC call" {
			got = append(got, r)
		}
	}
	if len(got) != len(tests) {
		t.Fatalf("logged %d calls, want %d: %v", len(got), len(tests), got)
	}
	for i, tt := range tests {
		r := got[i]
		if r["method"] != "/grpc.testing.TestService/UnaryCall" || r["code"] != tt.wantCode.String() || r["level"] != tt.wantLevel {
			t.Errorf("%s: log record %v, want code %v at %s", tt.body, r, tt.wantCode, tt.wantLevel)
		}
		if _, ok := r["duration"]; !ok {
			t.Errorf("%s: log record %v lacks duration", tt.body, r)
		}
	}
}

// TestCallerInterceptors checks that interceptors given as options run, in
// order, inside recovery, and that IsInfraMethod exempts health from them as
// an authentication interceptor would.
func TestCallerInterceptors(t *testing.T) {
	var (
		mu    sync.Mutex
		order []string
	)
	record := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return handler(ctx, req)
		}
	}
	auth := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if grpcserver.IsInfraMethod(info.FullMethod) {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		switch v := md.Get("authorization"); {
		case len(v) == 0:
			return nil, status.Error(codes.Unauthenticated, "no key")
		case v[0] == "panic":
			panic("interceptor bug")
		}
		return handler(ctx, req)
	}
	h := start(t, grpcserver.Config{}, nil,
		grpcserver.WithUnaryInterceptors(record("first"), record("second")),
		grpcserver.WithUnaryInterceptors(auth),
	)
	client := testpb.NewTestServiceClient(h.conn)

	tests := []struct {
		name string
		md   string
		want codes.Code
	}{
		{name: "no key", want: codes.Unauthenticated},
		{name: "key", md: "key", want: codes.OK},
		{name: "panicking interceptor", md: "panic", want: codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxTimeout(t)
			if tt.md != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.md)
			}
			if _, err := client.EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != tt.want {
				t.Errorf("EmptyCall: %v, want %v", err, tt.want)
			}
		})
	}
	// Health needs no key.
	checkHealth(t, h.conn, "")

	mu.Lock()
	defer mu.Unlock()
	if len(order) < 2 || order[0] != "first" || order[1] != "second" {
		t.Errorf("interceptor order %v, want first, second, ...", order)
	}
}

func TestMaxRecvMsgSize(t *testing.T) {
	h := start(t, grpcserver.Config{MaxRecvMsgSize: 1024}, nil)
	client := testpb.NewTestServiceClient(h.conn)
	big := strings.Repeat("x", 2048)
	if _, err := client.UnaryCall(ctxTimeout(t), &testpb.SimpleRequest{Payload: payload(big)}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized request: %v, want ResourceExhausted", err)
	}
	if _, err := client.UnaryCall(ctxTimeout(t), &testpb.SimpleRequest{Payload: payload("ok")}); err != nil {
		t.Errorf("small request: %v", err)
	}
}

func TestIsInfraMethod(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{"/grpc.health.v1.Health/Check", true},
		{"/grpc.health.v1.Health/Watch", true},
		{"/grpc.health.v1.Health/List", true},
		{"grpc.health.v1.Health/Check", true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", true},
		{"/grpc.health.v1.HealthExtra/Check", false},
		{"/lodestar.scoring.v1.ScoringService/GetScore", false},
		{"/grpc.testing.TestService/EmptyCall", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := grpcserver.IsInfraMethod(tt.method); got != tt.want {
			t.Errorf("IsInfraMethod(%q) = %v, want %v", tt.method, got, tt.want)
		}
	}
}
