package renewalforecast_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// The synthetic history: historyDays days of product usage ending now, for
// accounts with scripted fates. Past renewals carry recorded outcomes:
// most churners' usage fades, starting 45 to 150 days before their renewal,
// to near silence, a fifth of them leave without warning, and a quarter of
// the renewers has a dip that recovers (the false alarms a score must live
// with). Upcoming renewals fall
// in the next quarter, some of them declining now.
const (
	historyDays = 300
	partitions  = 4
	day         = 24 * time.Hour
)

var coreEvents = []string{"Report Created", "Opportunity Created", "Invoice Sent", "Workflow Run"}

type plan struct {
	acc        *accountv1.Account
	seats      int
	renewalDay int // day index of the (next) renewal
	churn      bool
	// declineFrom starts a decay of usage to almost nothing at renewalDay;
	// dipFrom a 20-day dip; -1 for none.
	declineFrom, dipFrom int
	outcome              *accountv1.RenewalOutcome
}

type world struct {
	tenant string
	start  time.Time // day 0
	plans  []*plan
}

func (w *world) dayTime(d int) time.Time { return w.start.Add(time.Duration(d) * day) }

func generate(tenant string, now time.Time) *world {
	r := rand.New(rand.NewPCG(2025, 5))
	w := &world{tenant: tenant, start: now.Truncate(day).Add(-historyDays * day)}
	tiers := []accountv1.Tier{accountv1.Tier_TIER_BENCHMARK, accountv1.Tier_TIER_GROWTH, accountv1.Tier_TIER_STANDARD, accountv1.Tier_TIER_STANDARD}
	newPlan := func(i int, renewalDay int, contractStart int) *plan {
		seats := 8 + r.IntN(12)
		return &plan{
			acc: &accountv1.Account{
				TenantId:          tenant,
				AccountId:         fmt.Sprintf("acct-%02d", i),
				Name:              fmt.Sprintf("Account %d", i),
				Arr:               &accountv1.Money{CurrencyCode: "EUR", Units: int64(seats) * 1500},
				SeatsPurchased:    int32(seats),
				ContractStartTime: timestamppb.New(w.dayTime(contractStart)),
				RenewalTime:       timestamppb.New(w.dayTime(renewalDay)),
				Owner:             &accountv1.Owner{CsmId: fmt.Sprintf("csm-%d", i%3)},
				Tier:              tiers[i%len(tiers)],
				Segment:           []string{"smb", "mid-market"}[i%2],
			},
			seats: seats, renewalDay: renewalDay, declineFrom: -1, dipFrom: -1,
		}
	}
	// Past renewals, with outcomes.
	for i := range 54 {
		p := newPlan(i, 150+r.IntN(historyDays-160), -200)
		switch {
		case r.Float64() < 0.35:
			p.churn = true
			if r.Float64() < 0.8 { // the rest leave without warning
				p.declineFrom = p.renewalDay - 45 - r.IntN(105)
			}
		case r.Float64() < 0.25:
			p.dipFrom = p.renewalDay - 20 - r.IntN(80)
		}
		w.plans = append(w.plans, p)
	}
	// Upcoming renewals, in the next 85 days.
	for i := 54; i < 74; i++ {
		p := newPlan(i, historyDays+5+r.IntN(80), -200)
		if r.Float64() < 0.35 {
			p.declineFrom = historyDays - 40 - r.IntN(30)
		}
		w.plans = append(w.plans, p)
	}
	// A customer that signed five days ago: new in this period.
	w.plans = append(w.plans, newPlan(74, historyDays+360, historyDays-5))

	for _, p := range w.plans {
		if p.renewalDay >= historyDays {
			continue
		}
		arr := p.acc.GetArr()
		o := &accountv1.RenewalOutcome{
			AccountId: p.acc.GetAccountId(), ArrBefore: arr,
			OutcomeTime: timestamppb.New(w.dayTime(p.renewalDay)),
		}
		switch u := r.Float64(); {
		case p.churn:
			o.Type = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
		case u < 0.2:
			o.Type, o.ArrAfter = accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED, &accountv1.Money{CurrencyCode: "EUR", Units: arr.GetUnits() * 6 / 5}
		case u < 0.3:
			o.Type, o.ArrAfter = accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED, &accountv1.Money{CurrencyCode: "EUR", Units: arr.GetUnits() * 4 / 5}
		default:
			o.Type, o.ArrAfter = accountv1.OutcomeType_OUTCOME_TYPE_RENEWED, arr
		}
		p.outcome = o
	}
	return w
}

// rate is an account's activity on day d, 0 to 1.
func (p *plan) rate(d int) float64 {
	rate := 1.0
	switch {
	case p.churn && d >= p.renewalDay:
		return 0
	case p.declineFrom >= 0 && d >= p.declineFrom:
		// Usage fades over the first 60% of the way to the renewal, then
		// stays nearly silent.
		rate = max(0.03, 1-float64(d-p.declineFrom)/(0.6*float64(p.renewalDay-p.declineFrom)))
	case p.dipFrom >= 0 && d >= p.dipFrom && d < p.dipFrom+20:
		rate = 0.25
	}
	return rate
}

// events are one day's events, by partition, in time order.
func (w *world) events(r *rand.Rand, d int) [partitions][]*eventv1.Event {
	var out [partitions][]*eventv1.Event
	weekend := w.dayTime(d).Weekday() == time.Saturday || w.dayTime(d).Weekday() == time.Sunday
	for _, p := range w.plans {
		if d < int(p.acc.GetContractStartTime().AsTime().Sub(w.start)/day) {
			continue
		}
		rate := p.rate(d)
		if weekend {
			rate *= 0.2
		}
		part := natsx.Partition(w.tenant, p.acc.GetAccountId(), partitions)
		users := p.seats * 4 / 5
		for u := range users {
			// As an account fades, users drop out (the last to go first) and
			// the rest work less.
			if float64(u) >= rate*float64(users) || r.Float64() >= 0.6*rate {
				continue
			}
			out[part] = append(out[part], &eventv1.Event{
				TenantId:  w.tenant,
				Type:      eventv1.EventType_EVENT_TYPE_TRACK,
				UserId:    fmt.Sprintf("%s-u%d", p.acc.GetAccountId(), u),
				AccountId: p.acc.GetAccountId(),
				Event:     coreEvents[r.IntN(len(coreEvents))],
				EventTime: timestamppb.New(w.dayTime(d).Add(time.Duration(8*3600+r.IntN(10*3600)) * time.Second)),
			})
		}
	}
	for i := range out {
		slices.SortFunc(out[i], func(a, b *eventv1.Event) int { return a.GetEventTime().AsTime().Compare(b.GetEventTime().AsTime()) })
	}
	return out
}

// accountNow is the account as AccountService holds it today: after its
// recorded outcome, with the ARR after and the stage it moved to.
func (p *plan) accountNow() *accountv1.Account {
	a := proto.CloneOf(p.acc)
	if o := p.outcome; o != nil {
		a.Outcomes = []*accountv1.RenewalOutcome{o}
		a.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_RENEWED
		a.Arr = o.GetArrAfter()
		if o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED {
			a.LifecycleStage = accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED
			a.Arr = &accountv1.Money{CurrencyCode: "EUR"}
		}
	}
	return a
}

func loadScorecard(t *testing.T, path string) *scoringv1.Scorecard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := &scoringv1.Scorecard{}
	if err := protojson.Unmarshal(b, sc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sc
}

// publish stores the world in JetStream as the other services would have:
// the events in EVENTS, the score changes the scoring core computes from
// them with the active scorecard in SCORES (day by day, in event time), and
// every account's current record in ACCOUNT_CHANGES.
func (w *world) publish(t *testing.T, js jetstream.JetStream, active *scoringv1.Scorecard) {
	t.Helper()
	ctx := context.Background()
	// The scoring core as it ran: knowing each account's renewal date then.
	var facts []replay.Fact
	for _, p := range w.plans {
		facts = append(facts, replay.Fact{Account: p.acc})
		if o := p.outcome; o != nil {
			facts = append(facts, replay.Fact{At: o.GetOutcomeTime().AsTime(), Account: p.accountNow()})
		}
	}
	scorer, err := replay.New(w.tenant, active, facts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 11))
	var msgs []*nats.Msg
	scores := func(hs []*scoringv1.HealthScore) {
		for _, s := range hs {
			b, _ := proto.Marshal(&scoringv1.ScoreChangeEvent{Score: s})
			m := nats.NewMsg(natsx.ScoreSubject(w.tenant, s.GetAccountId(), natsx.DefaultPartitions))
			m.Data = b
			msgs = append(msgs, m)
		}
	}
	for d := range historyDays {
		for part, evs := range w.events(r, d) {
			if len(evs) == 0 {
				continue
			}
			b, _ := proto.Marshal(&eventv1.EventBatch{Events: evs})
			m := nats.NewMsg(natsx.EventSubject(w.tenant, uint32(part)))
			m.Data = b
			m.Header.Set(nats.MsgIdHdr, natsx.MsgID(w.tenant, strconv.Itoa(d), strconv.Itoa(part)))
			msgs = append(msgs, m)
			scores(scorer.Apply(evs, time.Now()))
		}
		if len(msgs) > 2000 {
			if err := natsx.PublishAll(ctx, js, msgs); err != nil {
				t.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	scores(scorer.Finish())
	for _, p := range w.plans {
		b, _ := proto.Marshal(&accountv1.AccountChange{TenantId: w.tenant, Account: p.accountNow(), Outcome: p.outcome})
		m := nats.NewMsg(natsx.AccountChangeSubject(w.tenant, p.acc.GetAccountId(), natsx.DefaultPartitions))
		m.Data = b
		msgs = append(msgs, m)
	}
	if err := natsx.PublishAll(ctx, js, msgs); err != nil {
		t.Fatal(err)
	}
}
