package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// world is one account under test, with a clock and what it published.
type world struct {
	t        *testing.T
	st       *alertv1.AccountAlertState
	now      time.Time // the tenant's clock
	wall     time.Time // the wall clock; now when zero
	seq      uint64
	rules    []*alertv1.Rule
	page     bool
	events   []*alertv1.AlertEvent
	delivers []*alertv1.Delivery
}

func newWorld(t *testing.T, rs ...*alertv1.Rule) *world {
	return &world{t: t, st: &alertv1.AccountAlertState{TenantId: "acme", AccountId: "a1"}, now: t0, rules: rs, page: true}
}

func redBand() *alertv1.Rule {
	for _, r := range rules.Defaults() {
		if r.GetRuleId() == "red-band" {
			return r
		}
	}
	panic("no red-band rule")
}

var (
	owner  = &accountv1.Owner{CsmId: "dana", Name: "Dana", Email: "dana@example.com", ChatHandle: "U024BE7LH"}
	onCall = &alertv1.Person{PersonId: "oscar", Email: "oscar@example.com"}
)

func (w *world) env() Env {
	wall := w.now
	if !w.wall.IsZero() {
		wall = w.wall
	}
	return Env{
		Rules: w.rules,
		Channels: []*alertv1.Channel{
			{ChannelId: "hook", Config: &alertv1.Channel_Webhook{Webhook: &alertv1.WebhookChannel{Url: "https://example.com", Secret: "0123456789abcdef"}}},
			{ChannelId: "slack", Config: &alertv1.Channel_Slack{Slack: &alertv1.SlackChannel{WebhookUrl: "https://hooks.slack.com/x"}}},
		},
		OnCall:    func(string, time.Time) *alertv1.Person { return onCall },
		Now:       w.now,
		Wall:      wall,
		Freshness: 2 * time.Minute,
		Page:      w.page,
		Link:      "https://lodestar.example/a1",
	}
}

// drain moves the outbox into the world's published lists, as the store
// would after its write.
func (w *world) drain() {
	for _, o := range w.st.GetOutbox() {
		switch {
		case strings.HasPrefix(o.GetSubject(), streams.AlertsPrefix):
			ev := &alertv1.AlertEvent{}
			if err := proto.Unmarshal(o.GetData(), ev); err != nil {
				w.t.Fatal(err)
			}
			w.events = append(w.events, ev)
		default:
			d := &alertv1.Delivery{}
			if err := proto.Unmarshal(o.GetData(), d); err != nil {
				w.t.Fatal(err)
			}
			w.delivers = append(w.delivers, d)
		}
	}
	w.st.Outbox = nil
}

func (w *world) score(at time.Time, score float64, band scoringv1.Band) {
	w.t.Helper()
	w.seq++
	hs := &scoringv1.HealthScore{TenantId: "acme", AccountId: "a1", Score: score, Band: band, ScoreTime: timestamppb.New(at), AccountName: "Acme Corp"}
	if _, err := ApplyScore(w.st, hs, w.seq, 0, w.env()); err != nil {
		w.t.Fatal(err)
	}
	w.drain()
}

func (w *world) tick() {
	w.t.Helper()
	if _, err := Tick(w.st, w.env()); err != nil {
		w.t.Fatal(err)
	}
	w.drain()
}

func (w *world) types() []alertv1.AlertEventType {
	var out []alertv1.AlertEventType
	for _, ev := range w.events {
		out = append(out, ev.GetType())
	}
	return out
}

func (w *world) pages(channel string) int {
	n := 0
	for _, d := range w.delivers {
		if d.GetChannelId() == channel {
			n++
		}
	}
	return n
}

func (w *world) alert() *alertv1.Alert { return w.st.GetRules()["red-band"].GetAlert() }

// TestFlapping: an account bouncing in and out of red for a day raises one
// alert and one page, not twenty: the alert resolves each time the account
// leaves red, and reopens quietly within the cooldown; people hear of the
// first resolution only.
func TestFlapping(t *testing.T) {
	w := newWorld(t, redBand())
	for i := range 20 {
		band, score := scoringv1.Band_BAND_RED, 38.0
		if i%2 == 1 {
			band, score = scoringv1.Band_BAND_YELLOW, 42
		}
		w.score(t0.Add(time.Duration(i)*time.Hour), score, band)
	}
	opened := 0
	ids := map[string]bool{}
	for _, ev := range w.events {
		ids[ev.GetAlert().GetAlertId()] = true
		if ev.GetType() == alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED {
			opened++
		}
	}
	if opened != 1 || len(ids) != 1 {
		t.Fatalf("%d alerts opened (%d ids), want 1: %v", opened, len(ids), w.types())
	}
	if a := w.alert(); a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED || a.GetReopenCount() != 9 {
		t.Fatalf("after the last yellow score: %v", a)
	}
	var slack []alertv1.AlertEventType
	for _, d := range w.delivers {
		if d.GetChannelId() == "slack" {
			slack = append(slack, d.GetEvent().GetType())
		}
	}
	if !slices.Equal(slack, []alertv1.AlertEventType{alertv1.AlertEventType_ALERT_EVENT_TYPE_OPENED, alertv1.AlertEventType_ALERT_EVENT_TYPE_RESOLVED}) {
		t.Fatalf("slack heard %v; want one page and one resolution", slack)
	}
}

// TestResolveAndCooldown: the alert resolves as soon as the account leaves
// red, with the resolving score on it; firing again within the cooldown
// reopens it quietly; after the cooldown, a new alert pages.
func TestResolveAndCooldown(t *testing.T) {
	w := newWorld(t, redBand())
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	first := w.alert().GetAlertId()
	w.score(t0.Add(24*time.Hour), 55, scoringv1.Band_BAND_YELLOW)
	a := w.alert()
	if a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED || a.GetActor() != Actor {
		t.Fatalf("not resolved when the account left red: %v", a)
	}
	if rs := a.GetResolvingScore(); rs.GetScore() != 55 || rs.GetBand() != scoringv1.Band_BAND_YELLOW || !rs.GetScoreTime().AsTime().Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("resolving score %v, want 55 yellow at +1d", rs)
	}
	pagesBefore := w.pages("slack")
	w.score(t0.Add(5*24*time.Hour), 35, scoringv1.Band_BAND_RED) // within the cooldown
	if a := w.alert(); a.GetAlertId() != first || a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN || a.GetReopenCount() != 1 || a.ResolvingScore != nil {
		t.Fatalf("want the first alert reopened, got %v", a)
	}
	if w.pages("slack") != pagesBefore {
		t.Fatal("a reopen within the cooldown paged")
	}
	w.score(t0.Add(6*24*time.Hour), 60, scoringv1.Band_BAND_YELLOW)                                   // resolved again, quietly
	w.score(t0.Add(7*24*time.Hour+redBand().GetCooldown().AsDuration()), 30, scoringv1.Band_BAND_RED) // cooldown over
	a = w.alert()
	if a.GetAlertId() == first || a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("want a new alert after the cooldown, got %v", a)
	}
	if ps := a.GetPreviousAlerts(); len(ps) != 1 || ps[0].GetAlertId() != first || !ps[0].GetResolveTime().AsTime().Equal(t0.Add(6*24*time.Hour)) {
		t.Fatalf("previous alerts %v, want the first one, resolved at +6d", ps)
	}
	if w.pages("slack") != pagesBefore+1 { // the new alert
		t.Fatalf("slack pages %d, want %d", w.pages("slack"), pagesBefore+1)
	}
}

// TestEscalation: an alert not acknowledged in time goes to on-call; an
// acknowledged one does not.
func TestEscalation(t *testing.T) {
	r := proto.CloneOf(redBand())
	r.EscalateAfter = durationpb.New(10 * time.Minute)
	w := newWorld(t, r)
	w.st.Account = &accountv1.Account{Name: "Acme Corp", Owner: owner}
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	if a := w.alert(); a.GetAssignee().GetPersonId() != "dana" || !a.GetEscalateTime().AsTime().Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("want routed to the owner, escalating at +10m: %v", a)
	}
	w.now = t0.Add(9 * time.Minute)
	w.tick()
	if w.alert().GetEscalationLevel() != 0 {
		t.Fatal("escalated early")
	}
	w.now = t0.Add(10 * time.Minute)
	w.tick()
	a := w.alert()
	if a.GetEscalationLevel() != 1 || a.GetAssignee().GetPersonId() != "oscar" || a.EscalateTime != nil {
		t.Fatalf("not escalated to on-call: %v", a)
	}
	last := w.delivers[len(w.delivers)-1]
	if last.GetEvent().GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED || last.GetRecipient().GetPersonId() != "oscar" {
		t.Fatalf("escalation delivery %v", last)
	}
	w.tick()
	if n := len(w.events); w.events[n-1].GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED || w.alert().GetEscalationLevel() != 1 {
		t.Fatal("escalated twice")
	}

	// No owner: on-call from the start. Acknowledged in time: no escalation.
	w2 := newWorld(t, r)
	w2.score(t0, 35, scoringv1.Band_BAND_RED)
	if a := w2.alert(); a.GetOwner() != nil || a.GetAssignee().GetPersonId() != "oscar" {
		t.Fatalf("an account without owner must go to on-call: %v", a)
	}
	if _, err := Acknowledge(w2.st, w2.alert().GetAlertId(), "dana", "on it", w2.env()); err != nil {
		t.Fatal(err)
	}
	w2.drain()
	w2.now = t0.Add(time.Hour)
	w2.tick()
	if a := w2.alert(); a.GetState() != alertv1.AlertState_ALERT_STATE_ACKNOWLEDGED || a.GetEscalationLevel() != 0 {
		t.Fatalf("acknowledged alert escalated: %v", a)
	}
}

func TestSnoozeAndActions(t *testing.T) {
	w := newWorld(t, redBand())
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	id := w.alert().GetAlertId()
	if _, err := Snooze(w.st, id, t0.Add(time.Hour), "talking to the customer", "dana", w.env()); err != nil {
		t.Fatal(err)
	}
	w.drain()
	if a := w.alert(); a.GetState() != alertv1.AlertState_ALERT_STATE_SNOOZED || a.GetSnoozeReason() != "talking to the customer" {
		t.Fatalf("snooze: %v", a)
	}
	w.now = t0.Add(time.Hour)
	w.tick()
	if a := w.alert(); a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN || a.SnoozeEndTime != nil {
		t.Fatalf("snooze did not end: %v", a)
	}
	if w.events[len(w.events)-1].GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_UNSNOOZED {
		t.Fatalf("events %v", w.types())
	}
	if _, err := Resolve(w.st, id, "dana", "renewed the deal", w.env()); err != nil {
		t.Fatal(err)
	}
	w.drain()
	n := len(w.events)
	if _, err := Resolve(w.st, id, "dana", "again", w.env()); err != nil {
		t.Fatal("resolving twice must be a no-op:", err)
	}
	if _, err := Acknowledge(w.st, id, "dana", "", w.env()); !errors.Is(err, ErrResolved) {
		t.Fatalf("acknowledging a resolved alert: %v", err)
	}
	if _, err := Snooze(w.st, "al-nope", t0, "x", "", w.env()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown alert: %v", err)
	}
	w.drain()
	if len(w.events) != n {
		t.Fatal("no-op actions published events")
	}
}

// TestReplay: old messages move state but page nobody; a redelivered
// message is not applied twice.
func TestReplay(t *testing.T) {
	w := newWorld(t, redBand())
	w.page = false
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	if len(w.events) != 1 || len(w.delivers) != 0 {
		t.Fatalf("replay: %d events, %d deliveries; want 1, 0", len(w.events), len(w.delivers))
	}
	hs := &scoringv1.HealthScore{Score: 90, Band: scoringv1.Band_BAND_GREEN, ScoreTime: timestamppb.New(t0.Add(time.Hour))}
	if changed, _ := ApplyScore(w.st, hs, w.seq, 0, w.env()); changed || w.st.GetScore().GetScore() != 35 {
		t.Fatal("a redelivered message was applied again")
	}
}

// TestHandover: around a change of scoring partition owner, each account
// applies every change of the owners' common history once and nothing of an
// owner older than the last one applied: a stale owner's late write, and a
// new owner's recomputation of what its predecessor had published, are not
// applied; whatever else the stream holds between them does not matter.
func TestHandover(t *testing.T) {
	type change struct {
		hour  int
		epoch uint64
		score float64
	}
	for _, tc := range []struct {
		name    string
		changes []change
		applied []float64 // the scores applied, in order
	}{
		{"one owner", []change{{0, 1, 35}, {1, 1, 40}, {2, 1, 90}}, []float64{35, 40, 90}},
		{"new owner recomputes the last change", []change{{0, 1, 35}, {1, 1, 40}, {1, 2, 40}, {2, 2, 90}}, []float64{35, 40, 90}},
		{"new owner recomputes from an older snapshot", []change{{0, 1, 35}, {1, 1, 40}, {2, 1, 45}, {1, 2, 40}, {2, 2, 45}, {3, 2, 90}}, []float64{35, 40, 45, 90}},
		{"stale owner writes late", []change{{0, 1, 35}, {1, 2, 40}, {2, 1, 45}, {2, 2, 45}, {3, 2, 90}}, []float64{35, 40, 45, 90}},
		{"stale copy is the only one stored", []change{{0, 1, 35}, {1, 1, 40}, {2, 2, 90}}, []float64{35, 40, 90}},
		{"a later change at the same time", []change{{0, 1, 35}, {0, 1, 40}}, []float64{35, 40}},
		{"new owner's other score at the same time", []change{{0, 1, 35}, {0, 2, 40}}, []float64{35, 40}},
		{"no epoch (one process)", []change{{0, 0, 35}, {1, 0, 40}}, []float64{35, 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, redBand())
			var applied []float64
			for _, c := range tc.changes {
				w.seq++
				hs := &scoringv1.HealthScore{TenantId: "acme", AccountId: "a1", Score: c.score, Band: scoringv1.Band_BAND_RED,
					ScoreTime: timestamppb.New(t0.Add(time.Duration(c.hour) * time.Hour))}
				ok, err := ApplyScore(w.st, hs, w.seq, c.epoch, w.env())
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					applied = append(applied, c.score)
				}
				w.drain()
			}
			if !slices.Equal(applied, tc.applied) {
				t.Errorf("applied %v, want %v", applied, tc.applied)
			}
		})
	}
}

// TestSeverityRaisePages: a bigger ARR raises the severity of the open
// alert, which pages again; a disabled rule resolves its alert.
func TestSeverityRaisePages(t *testing.T) {
	w := newWorld(t, redBand())
	w.st.Account = &accountv1.Account{Arr: &accountv1.Money{CurrencyCode: "USD", Units: 50_000}}
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	if w.alert().GetSeverity() != alertv1.Severity_SEVERITY_HIGH {
		t.Fatalf("severity %v", w.alert().GetSeverity())
	}
	w.seq++
	ch := &accountv1.AccountChange{Account: &accountv1.Account{Arr: &accountv1.Money{CurrencyCode: "USD", Units: 500_000}}, ChangeTime: timestamppb.New(t0)}
	if _, err := ApplyAccount(w.st, ch, w.seq, w.env()); err != nil {
		t.Fatal(err)
	}
	w.drain()
	last := w.events[len(w.events)-1]
	if last.GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_UPDATED || last.GetPreviousSeverity() != alertv1.Severity_SEVERITY_HIGH ||
		last.GetAlert().GetSeverity() != alertv1.Severity_SEVERITY_CRITICAL {
		t.Fatalf("want UPDATED HIGH → CRITICAL, got %v", last)
	}
	if w.pages("slack") != 2 {
		t.Fatalf("slack pages %d, want 2", w.pages("slack"))
	}
	disabled := proto.CloneOf(redBand())
	disabled.Disabled = true
	w.rules = []*alertv1.Rule{disabled}
	w.tick()
	if a := w.alert(); a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED || !strings.Contains(a.GetNote(), "disabled") {
		t.Fatalf("disabled rule left its alert %v", a)
	}
}

// TestSweepPaceDoesNotMatter: what falls due between two score changes (an
// escalation, a renewal coming near) is decided the same whether sweeps came
// by daily in between or never: a replay alerts as live running did,
// whatever the pace of its sweeps.
func TestSweepPaceDoesNotMatter(t *testing.T) {
	run := func(sweeps bool) []string {
		w := newWorld(t, rules.Defaults()...)
		w.page = false
		w.st.Account = &accountv1.Account{TenantId: "acme", AccountId: "a1", Owner: owner,
			RenewalTime: timestamppb.New(t0.Add(100 * 24 * time.Hour))}
		w.score(t0, 30, scoringv1.Band_BAND_RED)
		end := t0.Add(30 * 24 * time.Hour)
		if sweeps {
			for w.now = t0; w.now.Before(end); w.now = w.now.Add(24 * time.Hour) {
				w.tick()
			}
		}
		w.now = end
		w.score(end, 85, scoringv1.Band_BAND_GREEN)
		var out []string
		for _, ev := range w.events {
			out = append(out, fmt.Sprintf("%s %s %s", ev.GetType(), ev.GetAlert().GetRuleId(), ev.GetAlert().GetAlertId()))
		}
		return out
	}
	daily, none := run(true), run(false)
	if !slices.Equal(daily, none) {
		t.Fatalf("alert events with daily sweeps:\n%s\nwithout:\n%s", strings.Join(daily, "\n"), strings.Join(none, "\n"))
	}
	for _, want := range []string{"ALERT_EVENT_TYPE_ESCALATED red-band", "ALERT_EVENT_TYPE_OPENED renewal-at-risk", "ALERT_EVENT_TYPE_RESOLVED renewal-at-risk"} {
		if !slices.ContainsFunc(none, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no %q among\n%s", want, strings.Join(none, "\n"))
		}
	}
}
