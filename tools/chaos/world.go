package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// world is one tenant's deterministic history: accounts of four fates and
// their events, by day and partition.
type world struct {
	tenant   string
	accounts []*accountv1.Account
	// days[d][p] are day d's events of partition p, in time order.
	days   [][][]*eventv1.Event
	events int
}

func newWorld(tenant string, accounts, days int) *world {
	r := rand.New(rand.NewPCG(14, 2026))
	end := time.Now().Add(-72 * time.Hour).Truncate(24 * time.Hour)
	start := end.Add(-time.Duration(days) * 24 * time.Hour)
	w := &world{tenant: tenant, days: make([][][]*eventv1.Event, days)}
	for d := range w.days {
		w.days[d] = make([][]*eventv1.Event, natsx.DefaultPartitions)
	}
	core := []string{"Report Created", "Opportunity Created", "Invoice Sent", "Workflow Run"}
	n := 0
	for i := range accounts {
		id := fmt.Sprintf("acct-%05d", i)
		seats := 2 + r.IntN(6)
		w.accounts = append(w.accounts, &accountv1.Account{
			TenantId: tenant, AccountId: id, Name: "Account " + strconv.Itoa(i),
			SeatsPurchased: int32(seats), Tier: accountv1.Tier_TIER_STANDARD,
			ContractStartTime: timestamppb.New(start.Add(-365 * 24 * time.Hour)),
			RenewalTime:       timestamppb.New(end.Add(time.Duration(30+r.IntN(300)) * 24 * time.Hour)),
		})
		p := natsx.Partition(tenant, id, natsx.DefaultPartitions)
		fate := i % 4 // healthy, declining, silent after half the days, sporadic
		for d := range days {
			rate := 0.5
			switch {
			case fate == 1:
				rate = 0.5 * (1 - float64(d)/float64(days))
			case fate == 2 && d >= days/2:
				rate = 0
			case fate == 3:
				rate = 0.1
			}
			for u := range seats {
				if r.Float64() >= rate {
					continue
				}
				n++
				w.days[d][p] = append(w.days[d][p], &eventv1.Event{
					TenantId: tenant, MessageId: "m" + strconv.Itoa(n),
					Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: fmt.Sprintf("%s-u%d", id, u), AccountId: id,
					Event:     core[r.IntN(len(core))],
					EventTime: timestamppb.New(start.Add(time.Duration(d)*24*time.Hour + time.Duration(r.IntN(86400))*time.Second)),
				})
			}
		}
	}
	for _, day := range w.days {
		for _, evs := range day {
			sort.SliceStable(evs, func(i, j int) bool { return evs[i].GetEventTime().AsTime().Before(evs[j].GetEventTime().AsTime()) })
		}
	}
	w.events = n
	return w
}

// lastDay is the day of the last event.
func (w *world) lastDay() time.Time {
	var last time.Time
	for _, evs := range w.days[len(w.days)-1] {
		if len(evs) > 0 && evs[len(evs)-1].GetEventTime().AsTime().After(last) {
			last = evs[len(evs)-1].GetEventTime().AsTime()
		}
	}
	return last.Truncate(24 * time.Hour)
}

func (w *world) publishAccounts(ctx context.Context, js jetstream.JetStream) error {
	var msgs []*nats.Msg
	for _, a := range w.accounts {
		b, _ := proto.Marshal(&accountv1.AccountChange{TenantId: w.tenant, Account: a})
		msgs = append(msgs, &nats.Msg{Subject: natsx.AccountChangeSubject(w.tenant, a.GetAccountId(), natsx.DefaultPartitions), Data: b,
			Header: nats.Header{jetstream.MsgIDHeader: []string{natsx.MsgID(w.tenant, "account", a.GetAccountId())}}})
	}
	return natsx.PublishAll(ctx, js, msgs)
}

// publishDay publishes day d as ingest would: one message per partition,
// then the watermark markers.
func (w *world) publishDay(ctx context.Context, js jetstream.JetStream, d int) error {
	var msgs []*nats.Msg
	var latest time.Time
	for p, evs := range w.days[d] {
		if len(evs) == 0 {
			continue
		}
		b, err := proto.Marshal(&eventv1.EventBatch{Events: evs})
		if err != nil {
			return err
		}
		msgs = append(msgs, &nats.Msg{Subject: natsx.EventSubject(w.tenant, uint32(p)), Data: b,
			Header: nats.Header{jetstream.MsgIDHeader: []string{natsx.MsgID(w.tenant, "day", strconv.Itoa(d), strconv.Itoa(p))}}})
		if at := evs[len(evs)-1].GetEventTime().AsTime(); at.After(latest) {
			latest = at
		}
	}
	msgs = append(msgs, natsx.WatermarkMsgs(w.tenant, latest, natsx.DefaultPartitions)...)
	return natsx.PublishAll(ctx, js, msgs)
}

// liveEvents are events of now, one per partition, each of an account new
// to the tenant: a new account's first score is always a recorded change,
// so every partition publishes on SCORES soon after, whoever owns it.
func (w *world) liveEvents(seq int) []*nats.Msg {
	now := time.Now()
	msgs := make([]*nats.Msg, 0, natsx.DefaultPartitions)
	for p := range uint32(natsx.DefaultPartitions) {
		var a string
		for k := 0; ; k++ {
			if a = fmt.Sprintf("live-%d-%d", seq, k); natsx.Partition(w.tenant, a, natsx.DefaultPartitions) == p {
				break
			}
		}
		b, _ := proto.Marshal(&eventv1.EventBatch{Events: []*eventv1.Event{{
			TenantId: w.tenant, MessageId: a, Type: eventv1.EventType_EVENT_TYPE_TRACK, UserId: a + "-u0", AccountId: a,
			Event: "Report Created", EventTime: timestamppb.New(now),
		}}})
		msgs = append(msgs, &nats.Msg{Subject: natsx.EventSubject(w.tenant, p), Data: b,
			Header: nats.Header{jetstream.MsgIDHeader: []string{natsx.MsgID(w.tenant, a)}}})
	}
	return msgs
}
