package engine

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// The scenario: one tenant, six scripted account histories over scenarioDays days,
// scored with the default scorecard.
const (
	tenantID     = "acme"
	scenarioDays = 90
)

var coreEvents = []string{"Report Created", "Opportunity Created", "Invoice Sent", "Workflow Run"}

// day0 is a Monday; a day's events happen in its working hours.
func dayTime(d int, hour, minute int) time.Time {
	return time.Date(2025, 3, 3, hour, minute, 0, 0, time.UTC).AddDate(0, 0, d)
}

// replayWall is the wall clock of replays: well after every event.
var replayWall = dayTime(400, 0, 0)

func scenarioAccounts() []*accountv1.Account {
	acct := func(id string, seats int32, tier accountv1.Tier, renewalDay int) *accountv1.Account {
		return &accountv1.Account{
			TenantId:          tenantID,
			AccountId:         id,
			Name:              "Account " + id,
			Arr:               &accountv1.Money{CurrencyCode: "EUR", Units: int64(seats) * 1200},
			SeatsPurchased:    seats,
			ContractStartTime: timestamppb.New(dayTime(-200, 0, 0)),
			RenewalTime:       timestamppb.New(dayTime(renewalDay, 0, 0)),
			Owner:             &accountv1.Owner{CsmId: "csm-1"},
			Tier:              tier,
			Segment:           "mid-market",
		}
	}
	onboarding := acct("onboarding", 20, accountv1.Tier_TIER_STANDARD, 445)
	onboarding.ContractStartTime = timestamppb.New(dayTime(80, 0, 0))
	return []*accountv1.Account{
		acct("healthy", 40, accountv1.Tier_TIER_BENCHMARK, 300),
		acct("declining", 40, accountv1.Tier_TIER_GROWTH, 150),
		acct("silent", 40, accountv1.Tier_TIER_STANDARD, 300),
		onboarding,
		acct("expanding", 10, accountv1.Tier_TIER_GROWTH, 300),
		acct("dead", 25, accountv1.Tier_TIER_STANDARD, 300),
	}
}

// scenarioEvents lists the events of day d, in a fixed order.
func scenarioEvents(d int) []*eventv1.Event {
	b := eventBuilder{day: d}
	// healthy: 30 users, each at work five days a week.
	b.usage("healthy", d, 0, 30, 1)
	if d == 0 {
		b.identifyAll("healthy", d, 30)
	}
	if d == 50 {
		for u, score := range []float64{9, 10, 8} {
			b.track("healthy", u+5, "NPS Submitted", dayTime(d, 15, u), map[string]any{"score": score})
		}
	}
	switch d {
	case 30:
		b.track("healthy", 3, "Ticket Opened", dayTime(d, 10, 0), map[string]any{"ticket_id": "T-1", "severity": "low"})
	case 32:
		b.track("healthy", 3, "Ticket Closed", dayTime(d, 10, 0), map[string]any{"ticket_id": "T-1"})
	case 40:
		b.track("healthy", 0, "Payment Failed", dayTime(d, 2, 0), nil)
	case 41:
		b.track("healthy", 0, "Payment Succeeded", dayTime(d, 2, 0), nil)
	}

	// declining: 30 users until day 30, then fewer and fewer, down to 2 by day 75;
	// the executives and directors (the first users) stop first.
	users := 30
	if d >= 30 {
		users = max(2, 30-(d-30)*28/45)
	}
	b.usage("declining", d, 30-users, users, 1)
	if d == 0 {
		b.identifyAll("declining", d, 30)
	}
	switch d {
	case 70:
		b.track("declining", 28, "NPS Submitted", dayTime(d, 15, 0), map[string]any{"score": 6})
		b.track("declining", 29, "NPS Submitted", dayTime(d, 15, 5), map[string]any{"score": "4"})
	case 75:
		b.track("declining", 29, "Ticket Opened", dayTime(d, 9, 0), map[string]any{"ticket_id": "T-2", "severity": "Urgent"})
	case 80:
		b.track("declining", 29, "Ticket Opened", dayTime(d, 9, 0), map[string]any{"ticket_id": 77})
	case 85:
		// From the billing system: no user.
		b.track("declining", -1, "Subscription Downgraded", dayTime(d, 11, 0), nil)
	}

	// silent: healthy until day 60, then nothing.
	if d <= 60 {
		b.usage("silent", d, 0, 25, 1)
	}
	if d == 0 {
		b.identifyAll("silent", d, 25)
	}

	// onboarding: signed on day 80, two of three milestones reached.
	if d >= 81 {
		b.usage("onboarding", d, 0, 6, 1)
	}
	switch d {
	case 81:
		b.identifyAll("onboarding", d, 6)
		b.track("onboarding", 0, "Account Configured", dayTime(d, 9, 30), nil)
	case 83:
		b.track("onboarding", 1, "Teammate Invited", dayTime(d, 9, 30), nil)
	}

	// expanding: more users than seats, and more use each.
	b.usage("expanding", d, 0, 5+d/10, 2)
	if d%10 == 0 {
		b.identifyAll("expanding", d, 5+d/10)
	}

	// dead: one visit long ago, then only trouble.
	switch d {
	case 2:
		b.track("dead", 0, "Report Created", dayTime(d, 10, 0), nil)
	case 70:
		b.track("dead", 0, "Payment Failed", dayTime(d, 2, 0), nil)
	case 75:
		b.track("dead", 0, "Ticket Opened", dayTime(d, 9, 0), map[string]any{"ticket_id": "D-1", "severity": "high"})
	}
	return b.events
}

type eventBuilder struct {
	events []*eventv1.Event
	day    int
	n      int
}

func (b *eventBuilder) add(ev *eventv1.Event) {
	b.n++
	ev.TenantId = tenantID
	ev.MessageId = fmt.Sprintf("d%d-m%d", b.day, b.n) // unique, as a client's are
	b.events = append(b.events, ev)
}

// track emits a track event of user u, or of no user when u < 0.
func (b *eventBuilder) track(acct string, u int, name string, at time.Time, props map[string]any) {
	ev := &eventv1.Event{
		Type: eventv1.EventType_EVENT_TYPE_TRACK, AccountId: acct, Event: name, EventTime: timestamppb.New(at),
	}
	if u < 0 {
		ev.AnonymousId = acct + "-system"
	} else {
		ev.UserId = userID(acct, u)
	}
	if props != nil {
		ev.Properties = mustStruct(props)
	}
	b.add(ev)
}

// usage emits a working day: users first..first+n-1, each active five days of seven
// (staggered), doing perUser core events, a feature event and a page view.
func (b *eventBuilder) usage(acct string, d, first, n, perUser int) {
	for u := first; u < first+n; u++ {
		if (u+d)%7 >= 5 {
			continue
		}
		at := dayTime(d, 8+u%10, u%60)
		for k := 0; k < perUser; k++ {
			b.track(acct, u, coreEvents[(u+d+k)%len(coreEvents)], at.Add(time.Duration(k)*time.Minute), nil)
		}
		b.track(acct, u, fmt.Sprintf("Feature %d Used", (u+d)%6), at.Add(30*time.Minute), nil)
		b.add(&eventv1.Event{
			Type: eventv1.EventType_EVENT_TYPE_PAGE, UserId: userID(acct, u), AccountId: acct,
			Name: "Dashboard", EventTime: timestamppb.New(at.Add(31 * time.Minute)),
		})
	}
}

// identifyAll identifies n users: a CEO, a VP, three directors, then analysts.
func (b *eventBuilder) identifyAll(acct string, d, n int) {
	for u := 0; u < n; u++ {
		role := "Analyst"
		switch {
		case u == 0:
			role = "CEO"
		case u == 1:
			role = "VP Sales"
		case u <= 4:
			role = "Director"
		}
		b.add(&eventv1.Event{
			Type: eventv1.EventType_EVENT_TYPE_IDENTIFY, UserId: userID(acct, u), AccountId: acct,
			Traits: mustStruct(map[string]any{"role": role, "email": userID(acct, u) + "@example.com"}), EventTime: timestamppb.New(dayTime(d, 7, u%60)),
		})
	}
}

func userID(acct string, u int) string { return fmt.Sprintf("%s-user-%d", acct, u) }

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}
