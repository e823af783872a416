package churnalert_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// clock is the service's wall clock in tests: real time plus an offset the
// test moves, so timers keep running while escalations fall due at once.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// testConfig is the configuration with the intervals of a test.
// testPartitions is the tests' partition count: several pipelines, but
// fewer than the default 16, whose goroutines tripled the package's time
// under -race.
const testPartitions = 4

func testLimits() natsx.Limits {
	l := natsx.DefaultLimits()
	l.Partitions = testPartitions
	return l
}

func testConfig() churnalert.Config {
	cfg := churnalert.DefaultConfig()
	cfg.SweepInterval = 20 * time.Millisecond
	cfg.DeliveryBackoff = 50 * time.Millisecond
	cfg.DeliveryAttempts = 3
	cfg.DeliveryTimeout = 2 * time.Second
	cfg.CheckpointInterval = 20 * time.Millisecond
	cfg.DigestCheckInterval = 50 * time.Millisecond
	cfg.AllowHTTPEndpoints = true
	cfg.EndpointAllowList = config.StringList{"127.0.0.1"} // the receivers
	cfg.AccountURL = "https://lodestar.test/accounts/{tenant}/{account}"
	return cfg
}

// env is a running churn-alert service on an embedded NATS server, with
// its gRPC API behind the real authentication interceptor.
type env struct {
	t      testing.TB
	js     jetstream.JetStream
	nc     *nats.Conn
	url    string // of the NATS server, for child processes
	cfg    churnalert.Config
	clock  *clock
	reg    *auth.Registry
	client alertv1.AlertServiceClient
	keys   map[string]string // tenant → API key
	stop   func()            // stops the service, keeping NATS
}

// newEnv starts NATS and the service for the given tenants.
func newEnv(t testing.TB, cfg churnalert.Config, tenants ...string) *env {
	t.Helper()
	srv, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, js: js, nc: nc, url: srv.ClientURL(), cfg: cfg, clock: &clock{}, keys: map[string]string{}}
	var ts []auth.Tenant
	for i, id := range tenants {
		key := fmt.Sprintf("ak_test_%s_%d_0123456789", id, i)
		e.keys[id] = key
		ts = append(ts, auth.Tenant{ID: id, APIKeys: []string{key}})
	}
	if e.reg, err = auth.NewRegistry(ts); err != nil {
		t.Fatal(err)
	}
	e.start()
	return e
}

// start runs the service and its gRPC API, until stop.
func (e *env) start() {
	t := e.t
	t.Helper()
	gs := grpcserver.New(grpcserver.Config{},
		grpcserver.WithUnaryInterceptors(e.reg.UnaryServerInterceptor(grpcserver.IsInfraMethod)),
		grpcserver.WithStreamInterceptors(e.reg.StreamServerInterceptor(grpcserver.IsInfraMethod)))
	svc, err := churnalert.New(e.cfg, churnalert.Deps{JS: e.js, Limits: testLimits(), Stopping: gs.Stopping(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc.Register(gs.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := svc.Run(ctx); err != nil {
			t.Errorf("service: %v", err)
		}
	})
	wg.Go(func() { _ = gs.Serve(ctx, lis) })
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(e.stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.client = alertv1.NewAlertServiceClient(conn)
	waitFor(t, 20*time.Second, "service ready", svc.Ready)
}

// as is a context authenticated as a tenant.
func (e *env) as(tenant string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.keys[tenant])
}

func waitFor(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// step is one change of a scripted account history: a score or an account.
type step struct {
	score   *scoringv1.HealthScore
	account *accountv1.Account
}

// partitionMate is an account id in account's partition.
func partitionMate(tenant, account string) string {
	want := natsx.Partition(tenant, account, testPartitions)
	for i := 0; ; i++ {
		if id := "q" + strconv.Itoa(i); natsx.Partition(tenant, id, testPartitions) == want {
			return id
		}
	}
}

// renamed gives the steps of account from to account to.
func renamed(steps []step, from, to string) []step {
	for _, s := range steps {
		if s.score.GetAccountId() == from {
			s.score.AccountId = to
		}
		if s.account.GetAccountId() == from {
			s.account.AccountId = to
		}
	}
	return steps
}

// publish puts a history into SCORES and ACCOUNT_CHANGES, as scoring and
// ingest would.
func publish(t testing.TB, js jetstream.JetStream, tenant string, steps ...step) {
	t.Helper()
	var msgs []*nats.Msg
	for i, s := range steps {
		var m *nats.Msg
		var data []byte
		switch {
		case s.score != nil:
			s.score.TenantId = tenant
			m = nats.NewMsg(natsx.ScoreSubject(tenant, s.score.GetAccountId(), testPartitions))
			data, _ = proto.Marshal(&scoringv1.ScoreChangeEvent{Score: s.score})
		default:
			s.account.TenantId = tenant
			m = nats.NewMsg(natsx.AccountChangeSubject(tenant, s.account.GetAccountId(), testPartitions))
			data, _ = proto.Marshal(&accountv1.AccountChange{TenantId: tenant, Account: s.account, ChangeTime: timestamppb.Now()})
		}
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, natsx.MsgID(tenant, strconv.FormatInt(time.Now().UnixNano(), 36), strconv.Itoa(i)))
		msgs = append(msgs, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsx.PublishAll(ctx, js, msgs); err != nil {
		t.Fatal(err)
	}
}

// settle waits until the service has applied every change published: its
// stored positions reach the ends of SCORES and ACCOUNT_CHANGES.
func settle(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		last = ""
		for _, stream := range []string{natsx.StreamScores, natsx.StreamAccountChanges} {
			last = behind(ctx, js, stream)
			if last != "" {
				break
			}
		}
		if last == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("changes not applied after 20s: %s", last)
}

// behind says how far the service's position is behind a stream's end, ""
// when it is not.
func behind(ctx context.Context, js jetstream.JetStream, stream string) string {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err.Error()
	}
	kv, err := js.KeyValue(ctx, streams.BucketState)
	if err != nil {
		return err.Error()
	}
	prefix := natsx.ScoresSubjectPrefix
	if stream == natsx.StreamAccountChanges {
		prefix = natsx.AccountsSubjectPrefix
	}
	// Each partition's pipeline stores its own position.
	for p := range uint32(testPartitions) {
		last, err := st.GetLastMsgForSubject(ctx, natsx.PartitionFilter(prefix, p))
		if err != nil {
			continue // none in this partition
		}
		var pos uint64
		if e, err := kv.Get(ctx, churnalert.PositionKey(stream, p, testPartitions)); err == nil {
			pos, _ = strconv.ParseUint(string(e.Value()), 10, 64)
		}
		if pos < last.Sequence {
			return fmt.Sprintf("%s partition %d: applied up to %d of %d", stream, p, pos, last.Sequence)
		}
	}
	return ""
}

// band reads a score as the shipped scorecard's bands do.
func band(score float64) scoringv1.Band {
	switch {
	case score < 40:
		return scoringv1.Band_BAND_RED
	case score < 70:
		return scoringv1.Band_BAND_YELLOW
	}
	return scoringv1.Band_BAND_GREEN
}

// scored is a score change of an account at a time, with measures.
func scored(account string, at time.Time, score float64, ms ...*scoringv1.MeasureResult) step {
	return step{score: &scoringv1.HealthScore{
		AccountId: account, AccountName: "Account " + account, Score: score, Band: band(score),
		ScoreTime: timestamppb.New(at), Measures: ms, Summary: "scripted score",
	}}
}

func measure(kind scoringv1.MeasureKind, raw float64) *scoringv1.MeasureResult {
	return &scoringv1.MeasureResult{Kind: kind, HasData: true, RawValue: raw, Detail: "scripted"}
}

func account(a *accountv1.Account) step { return step{account: a} }
