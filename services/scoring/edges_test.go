package scoring_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/services/scoring"
)

// runService runs svc until the test ends.
func runService(t *testing.T, svc *scoring.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestDeadLetterKeepsTheRest stores one EVENTS message holding the events of
// three accounts, the middle one an identify call nested beyond what
// protobuf decodes (as ingest accepted before it bounded nesting), and
// checks that the other two accounts are scored and the bad event is on
// DEADLETTER with its reason and source (issue 13, item 2).
func TestDeadLetterKeepsTheRest(t *testing.T) {
	tenant := testenv.Tenant(t)
	_, nc := testenv.NATS(t)
	js, _ := natsx.NewJetStream(nc)
	ensureStreams(t, js)

	deep := &structpb.Struct{Fields: map[string]*structpb.Value{"leaf": structpb.NewNumberValue(1)}}
	for range 6000 {
		deep = &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStructValue(deep)}}
	}
	at := timestamppb.New(time.Now().Add(-time.Hour))
	ev := func(i int, account string) *eventv1.Event {
		return &eventv1.Event{TenantId: tenant, MessageId: "m" + strconv.Itoa(i), Type: eventv1.EventType_EVENT_TYPE_TRACK,
			UserId: "u" + strconv.Itoa(i), AccountId: account, Event: "Report Created", EventTime: at, ReceivedTime: at}
	}
	bad := ev(1, "acct-deep")
	bad.Type, bad.Event, bad.Traits = eventv1.EventType_EVENT_TYPE_IDENTIFY, "", deep
	data, err := proto.Marshal(&eventv1.EventBatch{Events: []*eventv1.Event{ev(0, "acct-a"), bad, ev(2, "acct-b")}})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(natsx.EventSubject(tenant, 0))
	m.Data = data
	if err := natsx.PublishAll(context.Background(), js, []*nats.Msg{m}); err != nil {
		t.Fatal(err)
	}

	c := cache.NewMemory(cache.Config{})
	svc, err := newService(js, c)
	if err != nil {
		t.Fatal(err)
	}
	runService(t, svc)
	waitFor(t, "acct-a and acct-b scored", func() bool {
		s, err := c.GetScores(context.Background(), tenant, []string{"acct-a", "acct-b"})
		return err == nil && s[0] != nil && s[1] != nil
	})

	ctx := context.Background()
	var dl jetstream.Stream
	waitFor(t, "a dead letter", func() bool {
		dl, err = js.Stream(ctx, natsx.StreamDeadLetter)
		if err != nil {
			return false
		}
		info, err := dl.Info(ctx)
		return err == nil && info.State.Msgs > 0
	})
	msg, err := dl.GetLastMsgForSubject(ctx, natsx.DeadLetterSubject("events", tenant))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Lodestar-Source-Index") != "1" || msg.Header.Get("Lodestar-Source") != "EVENTS:1" || msg.Header.Get("Lodestar-Reason") == "" {
		t.Errorf("dead letter headers %v: want index 1 of EVENTS:1 with a reason", msg.Header)
	}
	var back eventv1.Event
	if err := (proto.UnmarshalOptions{RecursionLimit: 20000}).Unmarshal(msg.Data, &back); err != nil || back.GetMessageId() != "m1" {
		t.Errorf("dead letter holds %q (%v), want event m1", back.GetMessageId(), err)
	}
}

// redisServer is a redis-server child process on a loopback port, without
// persistence, as Lodestar runs it.
type redisServer struct {
	t    *testing.T
	port string
	cmd  *exec.Cmd
}

// startRedis starts redis-server on a free loopback port until the test ends.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	s := &redisServer{t: t, port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) addr() string { return "127.0.0.1:" + s.port }

func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.t.TempDir())
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr()})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not answer within 10s")
		}
	}
}

// kill kills the server with SIGKILL, by its pid, and waits for it to end.
func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestRedisRestart kills Redis (SIGKILL, no persistence) once the accounts
// are scored, streams the last events while it is down, starts it again
// empty, and checks that every account is readable again, with the score of
// a run that never lost its cache, and that scoring is ready only then
// (issue 13, item 5). Most accounts get no event after the restart: only
// the refill can bring them back.
func TestRedisRestart(t *testing.T) {
	const accounts = 40
	tenant := testenv.Tenant(t)
	h := makeHistory(tenant, accounts, 50)

	// The run that never lost its cache.
	_, ncA := testenv.NATS(t)
	jsA, _ := natsx.NewJetStream(ncA)
	ensureStreams(t, jsA)
	publishAccounts(t, jsA, h.accounts)
	publishBatches(t, jsA, tenant, h.batches)
	cacheA := cache.NewRedis(testenv.Redis(t), cache.Config{KeyPrefix: "redisrestart-a-" + tenant})
	svcA, err := newService(jsA, cacheA)
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- svcA.Run(ctxA) }()
	want := finalScores(t, cacheA, tenant, h, svcA.Ready)
	cancelA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}

	// The run whose Redis dies.
	rs := startRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: rs.addr(), MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	_, ncB := testenv.NATS(t)
	jsB, _ := natsx.NewJetStream(ncB)
	ensureStreams(t, jsB)
	publishAccounts(t, jsB, h.accounts)
	last := len(h.batches) - 2 // the last day has begun before them
	publishBatches(t, jsB, tenant, h.batches[:last])
	cacheB := cache.NewRedis(rc, cache.Config{KeyPrefix: "redisrestart-b"})
	svcB, err := newService(jsB, cacheB)
	if err != nil {
		t.Fatal(err)
	}
	runService(t, svcB)
	ids := make([]string, accounts)
	for i, a := range h.accounts {
		ids[i] = a.GetAccountId()
	}
	day := func(b *eventv1.EventBatch, i int) time.Time {
		return b.GetEvents()[i].GetEventTime().AsTime().Truncate(24 * time.Hour)
	}
	lastDay := day(h.batches[len(h.batches)-1], 0)
	if !day(h.batches[last-1], len(h.batches[last-1].GetEvents())-1).Equal(lastDay) {
		t.Fatal("the events before the kill do not reach the last day")
	}
	waitFor(t, "every account scored on the last day before the kill", func() bool {
		scores, err := cacheB.GetScores(context.Background(), tenant, ids)
		if err != nil || !svcB.Ready() {
			return false
		}
		for _, s := range scores {
			if s == nil || !s.GetScoreTime().AsTime().Truncate(24*time.Hour).Equal(lastDay) {
				return false
			}
		}
		return true
	})

	rs.kill()
	publishBatches(t, jsB, tenant, h.batches[last:]) // mid-stream: events keep coming
	waitFor(t, "not ready while Redis is down", func() bool { return !svcB.Ready() })
	rs.start()
	restarted := time.Now()
	got := finalScores(t, cacheB, tenant, h, svcB.Ready)
	t.Logf("every account readable and scoring ready %v after Redis restarted", time.Since(restarted).Round(time.Millisecond))
	// Readiness says the events present at start are applied, not those
	// published while Redis was down: each partition's pipeline applies
	// them at its own pace, so the scores converge rather than being final
	// at once.
	diff := sameScores(want, got)
	for deadline := time.Now().Add(30 * time.Second); diff != "" && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		got = finalScores(t, cacheB, tenant, h, svcB.Ready)
		diff = sameScores(want, got)
	}
	if diff != "" {
		t.Fatalf("scores after the Redis restart differ from the run that kept its cache: %s", diff)
	}
	listed, _, err := cacheB.ListScores(context.Background(), tenant, cache.ListQuery{PageSize: 1000})
	if err != nil || len(listed) != accounts {
		t.Errorf("the ranking lists %d accounts (%v), want %d", len(listed), err, accounts)
	}
}
