package lifecycle

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

const day = 24 * time.Hour

func withMeasure(kind scoringv1.MeasureKind, raw float64) []*scoringv1.MeasureResult {
	return []*scoringv1.MeasureResult{{Kind: kind, HasData: true, RawValue: raw}}
}

// TestEveryKindOpensAndResolves: for every rule kind, the alert opens while
// its condition holds, and resolves as soon as it clears, the resolving
// score recorded on it.
func TestEveryKindOpensAndResolves(t *testing.T) {
	type point struct {
		score    float64
		band     scoringv1.Band
		measures []*scoringv1.MeasureResult
	}
	churned := &accountv1.Account{LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED,
		Outcomes: []*accountv1.RenewalOutcome{{Type: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, OutcomeTime: timestamppb.New(t0.Add(-60 * day))}}}
	yellow, red, green := scoringv1.Band_BAND_YELLOW, scoringv1.Band_BAND_RED, scoringv1.Band_BAND_GREEN
	tests := []struct {
		kind    alertv1.RuleKind
		account *accountv1.Account
		before  []point // scores before the condition holds
		fire    point
		clear   point
	}{
		{kind: alertv1.RuleKind_RULE_KIND_RED_BAND, fire: point{35, red, nil}, clear: point{52, yellow, nil}},
		{kind: alertv1.RuleKind_RULE_KIND_SCORE_DROP, before: []point{{55, yellow, nil}},
			fire: point{30, red, nil}, clear: point{45, red, nil}},
		{kind: alertv1.RuleKind_RULE_KIND_USAGE_DROP,
			fire:  point{30, red, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND, 0.35)},
			clear: point{35, red, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND, 0.8)}},
		{kind: alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT,
			fire:  point{30, red, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 16)},
			clear: point{45, red, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 1)}},
		{kind: alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK, account: &accountv1.Account{RenewalTime: timestamppb.New(t0.Add(45 * day))},
			fire: point{35, red, nil}, clear: point{52, yellow, nil}},
		{kind: alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED,
			fire:  point{35, red, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, 0)},
			clear: point{38, red, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, 0.5)}},
		{kind: alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED,
			account: &accountv1.Account{LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING, ContractStartTime: timestamppb.New(t0.Add(-35 * day))},
			fire:    point{40, yellow, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES, 0.33)},
			clear:   point{45, yellow, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES, 1)}},
		{kind: alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY,
			fire:  point{90, green, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, 0.95)},
			clear: point{88, green, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, 0.7)}},
		{kind: alertv1.RuleKind_RULE_KIND_WIN_BACK, account: churned,
			fire:  point{20, scoringv1.Band_BAND_CHURNED, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 2)},
			clear: point{15, scoringv1.Band_BAND_CHURNED, withMeasure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 30)}},
	}
	covered := map[alertv1.RuleKind]bool{}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			var r *alertv1.Rule
			for _, d := range rules.Defaults() {
				if d.GetKind() == tc.kind {
					r = d
				}
			}
			w := newWorld(t, r)
			if tc.account != nil {
				w.seq++
				if _, err := ApplyAccount(w.st, &accountv1.AccountChange{Account: tc.account}, w.seq, w.env()); err != nil {
					t.Fatal(err)
				}
			}
			at := t0
			apply := func(p point) *alertv1.Alert {
				hs := &scoringv1.HealthScore{TenantId: "acme", AccountId: "a1", Score: p.score, Band: p.band, Measures: p.measures,
					ScoreTime: timestamppb.New(at), Summary: "summary"}
				w.seq++
				if _, err := ApplyScore(w.st, hs, w.seq, 0, w.env()); err != nil {
					t.Fatal(err)
				}
				w.drain()
				at = at.Add(day)
				return w.st.GetRules()[r.GetRuleId()].GetAlert()
			}
			for _, p := range tc.before {
				if a := apply(p); a != nil {
					t.Fatalf("opened before its condition held: %v", a)
				}
			}
			if a := apply(tc.fire); a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN {
				t.Fatalf("condition holds, alert %v", a)
			}
			a := apply(tc.clear)
			if a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED {
				t.Fatalf("condition cleared, alert still %v", a.GetState())
			}
			if rs := a.GetResolvingScore(); rs.GetScore() != tc.clear.score || rs.GetBand() != tc.clear.band || rs.GetSummary() != "summary" {
				t.Fatalf("resolving score %v, want %v %v", rs, tc.clear.score, tc.clear.band)
			}
			covered[tc.kind] = true
		})
	}
	for k := range alertv1.RuleKind_name {
		if k != 0 && !covered[alertv1.RuleKind(k)] {
			t.Errorf("rule kind %v not covered", alertv1.RuleKind(k))
		}
	}
}

// TestOneClock: rules run on the tenant's clock, not the wall clock. A
// backfill of last year decides as live running did then (renewal-at-risk
// fires for a renewal that is past on the wall clock), records its
// transitions as historical and delivers nothing; the alert resolves when
// the tenant's clock, not the wall clock, passes the renewal.
func TestOneClock(t *testing.T) {
	var r *alertv1.Rule
	for _, d := range rules.Defaults() {
		if d.GetKind() == alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK {
			r = d
		}
	}
	w := newWorld(t, r)
	w.wall = t0.Add(400 * day)
	w.seq++
	if _, err := ApplyAccount(w.st, &accountv1.AccountChange{Account: &accountv1.Account{RenewalTime: timestamppb.New(t0.Add(30 * day))},
		ChangeTime: timestamppb.New(w.wall)}, w.seq, w.env()); err != nil {
		t.Fatal(err)
	}
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	a := w.st.GetRules()[r.GetRuleId()].GetAlert()
	if a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN || !a.GetCreateTime().AsTime().Equal(t0) {
		t.Fatalf("want opened at the event time %v: %v", t0, a)
	}
	if len(w.delivers) != 0 || !w.events[0].GetHistorical() {
		t.Fatalf("a year-old transition: %d deliveries, historical %v", len(w.delivers), w.events[0].GetHistorical())
	}
	w.now = t0.Add(20 * day) // the tenant's clock moves; the renewal is still ahead
	w.tick()
	if a.GetState() != alertv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("resolved before the renewal: %v", a)
	}
	w.now = t0.Add(31 * day)
	w.tick()
	if a := w.st.GetRules()[r.GetRuleId()].GetAlert(); a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED || !a.GetResolveTime().AsTime().Equal(w.now) {
		t.Fatalf("want resolved at the tenant's clock once the renewal passed: %v", a)
	}

	// Caught up: the same transition within the freshness window pages.
	live := newWorld(t, redBand())
	live.wall = t0.Add(time.Minute)
	live.score(t0, 35, scoringv1.Band_BAND_RED)
	if live.pages("slack") != 1 || live.events[0].GetHistorical() {
		t.Fatalf("a fresh transition: %d slack pages, historical %v", live.pages("slack"), live.events[0].GetHistorical())
	}
}

// TestStaleAlertResolvesOnTick: an alert left open although its condition
// no longer holds (by an older version, or a rule changed meanwhile)
// resolves on the first tick, as the rescan at start gives every account.
func TestStaleAlertResolvesOnTick(t *testing.T) {
	w := newWorld(t, redBand())
	w.score(t0, 35, scoringv1.Band_BAND_RED)
	w.st.Score = &scoringv1.HealthScore{Score: 93.25, Band: scoringv1.Band_BAND_GREEN, ScoreTime: timestamppb.New(t0.Add(day))}
	w.tick()
	if a := w.alert(); a.GetState() != alertv1.AlertState_ALERT_STATE_RESOLVED || a.GetResolvingScore().GetScore() != 93.25 {
		t.Fatalf("stale alert after a tick: %v", a)
	}
}

// TestLiveButOld: a live tenant judges a score change at the wall clock,
// but a change whose score is older than the freshness window (a
// backfill's last hour, processed once the tenant is live) is history.
func TestLiveButOld(t *testing.T) {
	w := newWorld(t, redBand())
	w.now = t0.Add(time.Hour) // live: the tenant's clock is the wall clock
	st, hs := w.st, &scoringv1.HealthScore{Score: 35, Band: scoringv1.Band_BAND_RED, ScoreTime: timestamppb.New(t0)}
	env := w.env()
	env.Live = true
	if _, err := ApplyScore(st, hs, 1, 0, env); err != nil {
		t.Fatal(err)
	}
	w.drain()
	if a := w.alert(); !a.GetCreateTime().AsTime().Equal(w.now) || len(w.delivers) != 0 || !w.events[0].GetHistorical() {
		t.Fatalf("an hour-old score: created %v (want %v), %d deliveries, historical %v", a.GetCreateTime().AsTime(), w.now, len(w.delivers), w.events[0].GetHistorical())
	}
}

// TestOldEscalationIsHistory: once a backfilled tenant is live, its
// alerts' escalations fall due at once; they escalate, but page nobody:
// they were due days ago.
func TestOldEscalationIsHistory(t *testing.T) {
	w := newWorld(t, redBand())
	w.wall = t0.Add(3 * day)
	w.score(t0, 35, scoringv1.Band_BAND_RED) // historical: 3 days old
	w.now = w.wall                           // live
	w.tick()
	last := w.events[len(w.events)-1]
	if last.GetType() != alertv1.AlertEventType_ALERT_EVENT_TYPE_ESCALATED || !last.GetHistorical() || len(w.delivers) != 0 {
		t.Fatalf("last event %v (historical %v), %d deliveries: want a historical escalation, none delivered", last.GetType(), last.GetHistorical(), len(w.delivers))
	}
}

// TestJustCaughtUp: a fresh transition of a tenant that caught up less than
// the freshness window ago is the catch-up's result (the last changes of a
// backfill that ends now), not news; later ones are.
func TestJustCaughtUp(t *testing.T) {
	for _, c := range []struct {
		liveFor time.Duration
		paged   bool
	}{{30 * time.Second, false}, {3 * time.Minute, true}} {
		w := newWorld(t, redBand())
		env := w.env()
		env.Live, env.LiveSince = true, w.now.Add(-c.liveFor)
		hs := &scoringv1.HealthScore{Score: 35, Band: scoringv1.Band_BAND_RED, ScoreTime: timestamppb.New(w.now)}
		if _, err := ApplyScore(w.st, hs, 1, 0, env); err != nil {
			t.Fatal(err)
		}
		w.drain()
		if paged := len(w.delivers) > 0; paged != c.paged || w.events[0].GetHistorical() == c.paged {
			t.Errorf("live for %s: paged %v, historical %v; want paged %v", c.liveFor, paged, w.events[0].GetHistorical(), c.paged)
		}
	}
}
