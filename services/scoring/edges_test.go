package scoring_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
