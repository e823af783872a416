package ingest_test

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/ingest"
)

// Keys of the test tenants: acme and globex are unlimited, slow allows 5
// events and then one a minute.
const (
	acmeWriteKey   = "wk_test_acme_0123456789"
	acmeAPIKey     = "ak_test_acme_0123456789"
	globexWriteKey = "wk_test_globex_0123456789"
	globexAPIKey   = "ak_test_globex_0123456789"
	slowWriteKey   = "wk_test_slow_0123456789"
	slowAPIKey     = "ak_test_slow_0123456789"
	// globexOrigin is the one web origin globex allows; acme allows all.
	globexOrigin = "https://app.globex.example"
)

func testTenants(t testing.TB) *auth.Registry {
	t.Helper()
	r, err := auth.NewRegistry([]auth.Tenant{
		{ID: "acme", WriteKeys: []string{acmeWriteKey}, APIKeys: []string{acmeAPIKey}},
		{ID: "globex", WriteKeys: []string{globexWriteKey}, APIKeys: []string{globexAPIKey}, AllowedOrigins: []string{globexOrigin}},
		{ID: "slow", WriteKeys: []string{slowWriteKey}, APIKeys: []string{slowAPIKey}, RateLimit: auth.RateLimit{EventsPerSecond: 1.0 / 60, Burst: 5}},
	})
	if err != nil {
		t.Fatalf("tenants: %v", err)
	}
	return r
}

// env is a running ingest service on an embedded NATS server.
type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	svc  *ingest.Service
	http *httptest.Server
	// grpcAddr is a gRPC server with the auth interceptors; see dial.
	grpcAddr string
}

// start runs an ingest service on nc (a fresh embedded server when nil)
// until the test ends.
func start(t testing.TB, nc *nats.Conn) *env {
	t.Helper()
	return startWith(t, nc, ingest.DefaultConfig())
}

// unlimited is the default configuration without the default per-tenant
// limits, for benchmarks, which measure the machine.
func unlimited() ingest.Config {
	cfg := ingest.DefaultConfig()
	cfg.DefaultRate = auth.RateLimit{}
	cfg.Accounts.MaxAccounts, cfg.Accounts.NewAccountsPerHour = 0, 0
	return cfg
}

// startWith is start with cfg.
func startWith(t testing.TB, nc *nats.Conn, cfg ingest.Config) *env {
	t.Helper()
	if nc == nil {
		_, nc = testenv.NATS(t)
	}
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	tenants := testTenants(t)
	svc, err := ingest.New(cfg, ingest.Deps{JS: js, Tenants: tenants, Limits: natsx.DefaultLimits()})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); !svc.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("service not ready after 10s")
		}
	}

	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(hs.Close)

	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(tenants.UnaryServerInterceptor(nil)),
		grpc.ChainStreamInterceptor(tenants.StreamServerInterceptor(nil)))
	svc.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return &env{nc: nc, js: js, svc: svc, http: hs, grpcAddr: lis.Addr().String()}
}

// dial returns a gRPC connection sending key (none when empty).
func (e *env) dial(t testing.TB, key string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: key, Insecure: true}))
	}
	conn, err := grpc.NewClient(e.grpcAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// stored is one EVENTS message.
type stored struct {
	subject string
	header  nats.Header
	events  []*eventv1.Event
}

// messages reads every message of a stream.
func (e *env) messages(t testing.TB, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %s message %d: %v", stream, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// storedMessages reads every message of the EVENTS stream.
func (e *env) storedMessages(t testing.TB) []stored {
	t.Helper()
	var out []stored
	for _, m := range e.messages(t, natsx.StreamEvents) {
		var b eventv1.EventBatch
		if err := proto.Unmarshal(m.Data, &b); err != nil {
			t.Fatalf("message %d: %v", m.Sequence, err)
		}
		out = append(out, stored{subject: m.Subject, header: m.Header, events: b.Events})
	}
	return out
}

// storedEvents returns the stored events by message id, failing the test
// when an event is stored twice or inconsistently with its message.
func (e *env) storedEvents(t testing.TB) map[string]*eventv1.Event {
	t.Helper()
	byID := map[string]*eventv1.Event{}
	for _, m := range e.storedMessages(t) {
		for _, ev := range m.events {
			if _, dup := byID[ev.MessageId]; dup {
				t.Errorf("event %s stored twice", ev.MessageId)
			}
			byID[ev.MessageId] = ev
			if want := natsx.EventSubject(ev.TenantId, ev.Partition); m.subject != want {
				t.Errorf("event %s on subject %s, want %s", ev.MessageId, m.subject, want)
			}
			if got := m.header.Get("Lodestar-Tenant"); got != ev.TenantId {
				t.Errorf("event %s of tenant %s in a message of tenant %q", ev.MessageId, ev.TenantId, got)
			}
			if want := natsx.Partition(ev.TenantId, ev.AccountId, uint32(natsx.DefaultLimits().Partitions)); ev.Partition != want {
				t.Errorf("event %s in partition %d, want %d", ev.MessageId, ev.Partition, want)
			}
		}
	}
	return byID
}
