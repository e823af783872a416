package eventreplay_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/eventreplay"
)

const days = 60

var start = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

func at(d, hour int) time.Time { return start.Add(time.Duration(d*24+hour) * time.Hour) }

// history is 60 days of two accounts of tenant "acme" (one steady, one
// silent from day 30) and noise from tenant "other", one batch per day.
func history() [][]*eventv1.Event {
	out := make([][]*eventv1.Event, days)
	for d := range days {
		for _, acc := range []string{"steady", "fading"} {
			if acc == "fading" && d >= 30 {
				continue
			}
			for u := range 8 {
				out[d] = append(out[d], &eventv1.Event{
					TenantId: "acme", Type: eventv1.EventType_EVENT_TYPE_TRACK, AccountId: acc,
					UserId: fmt.Sprintf("%s-%d", acc, u), Event: "Report Created", EventTime: timestamppb.New(at(d, 9+u)),
				})
			}
		}
		out[d] = append(out[d], &eventv1.Event{
			TenantId: "other", Type: eventv1.EventType_EVENT_TYPE_TRACK, AccountId: "x", UserId: "u",
			Event: "Report Created", EventTime: timestamppb.New(at(d, 12)),
		})
	}
	return out
}

func facts() []replay.Fact {
	acc := func(id string, renewal time.Time) *accountv1.Account {
		return &accountv1.Account{AccountId: id, SeatsPurchased: 10, ContractStartTime: timestamppb.New(at(-400, 0)),
			RenewalTime: timestamppb.New(renewal)}
	}
	return []replay.Fact{
		// Day 40 brings the steady account's renewal within 120 days.
		{At: at(40, 0), Account: acc("steady", at(150, 0))},
		{Account: acc("steady", at(400, 0))},
		{Account: acc("fading", at(400, 0))},
	}
}

func defaultScorecard(t *testing.T) *scoringv1.Scorecard {
	t.Helper()
	sc, err := scorecard.Default()
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestStream replays the history from a real EVENTS stream and checks it
// against a replay of the same events in memory: the same score changes, one
// per account and day at most, in event time, with the facts of their time.
func TestStream(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := natsx.DefaultLimits()
	if err := natsx.EnsureStreams(ctx, js, l.EventsStream()); err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	for d, evs := range history() {
		// Batched as ingest does: one message per tenant and partition.
		byTenant := map[string][]*eventv1.Event{}
		for _, ev := range evs {
			byTenant[ev.GetTenantId()] = append(byTenant[ev.GetTenantId()], ev)
		}
		for tenant, evs := range byTenant {
			b, _ := proto.Marshal(&eventv1.EventBatch{Events: evs})
			m := nats.NewMsg(natsx.EventSubject(tenant, 0))
			m.Data = b
			m.Header.Set(nats.MsgIdHdr, natsx.MsgID(tenant, strconv.Itoa(d)))
			msgs = append(msgs, m)
		}
	}
	if err := natsx.PublishAll(ctx, js, msgs); err != nil {
		t.Fatal(err)
	}

	sc := defaultScorecard(t)
	var streamed []*scoringv1.HealthScore
	if err := eventreplay.Stream(ctx, js, "acme", sc, facts(), func(hs *scoringv1.HealthScore) { streamed = append(streamed, hs) }); err != nil {
		t.Fatal(err)
	}
	r, err := replay.New("acme", sc, facts())
	if err != nil {
		t.Fatal(err)
	}
	var all []*eventv1.Event
	for _, evs := range history() {
		all = append(all, evs...)
	}
	inMemory := append(r.Apply(all, at(400, 0)), r.Finish()...)

	if len(streamed) == 0 || len(streamed) != len(inMemory) {
		t.Fatalf("streamed %d score changes, in memory %d", len(streamed), len(inMemory))
	}
	seen := map[string]bool{}
	var fadingRed, preRenewalFrom time.Time
	for i, hs := range streamed {
		if !proto.Equal(hs, inMemory[i]) {
			t.Fatalf("change %d differs:\n%v\n%v", i, hs, inMemory[i])
		}
		key := hs.GetAccountId() + hs.GetScoreTime().AsTime().Format(time.DateOnly)
		if hs.GetTenantId() != "acme" || seen[key] {
			t.Fatalf("change %d: tenant %q, or a second change of %s", i, hs.GetTenantId(), key)
		}
		seen[key] = true
		when := hs.GetScoreTime().AsTime()
		if hs.GetAccountId() == "fading" && hs.GetBand() == scoringv1.Band_BAND_RED && fadingRed.IsZero() {
			fadingRed = when
		}
		if hs.GetLifecycleStage() == accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL && preRenewalFrom.IsZero() {
			preRenewalFrom = when
		}
	}
	if fadingRed.Before(at(30, 0)) || fadingRed.After(at(50, 0)) {
		t.Errorf("the fading account turned red at %v; it went silent on day 30", fadingRed)
	}
	if preRenewalFrom.Before(at(40, 0)) || preRenewalFrom.After(at(41, 0)) {
		t.Errorf("pre-renewal from %v; the renewal date moved within 120 days on day 40", preRenewalFrom)
	}
}
