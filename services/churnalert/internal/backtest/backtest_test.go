package backtest

import (
	"testing"
	"time"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// TestQuality: the measures, on four renewals, two churned.
func TestQuality(t *testing.T) {
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	churned, renewed := accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, accountv1.OutcomeType_OUTCOME_TYPE_RENEWED
	m := metrics{
		renewals: []Renewal{{"a", at, churned}, {"b", at, churned}, {"c", at, renewed}, {"d", at, accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED}},
		lead:     90 * day, csms: 2, weeks: 10,
	}
	red := alertv1.RuleKind_RULE_KIND_RED_BAND
	q := m.quality([]Opened{
		{AccountID: "a", Kind: red, At: at.Add(-30 * day)},  // flags a churn, 30 days ahead
		{AccountID: "a", Kind: red, At: at.Add(-10 * day)},  // the same renewal again
		{AccountID: "b", Kind: red, At: at.Add(-120 * day)}, // before the window: not in time
		{AccountID: "c", Kind: red, At: at.Add(-5 * day)},   // a false alarm
		{AccountID: "d", Kind: red, At: at.Add(5 * day)},    // after the renewal
	})
	if q.GetAlerts() != 5 || q.GetFlaggedRenewals() != 2 || q.GetFlaggedChurned() != 1 || q.GetFlaggedLost() != 1 ||
		q.GetPrecision() != 0.5 || q.GetRecall() != 0.5 || q.GetLift() != 1 || q.GetAlertsPerCsmPerWeek() != 0.25 ||
		q.GetMedianLeadTime().AsDuration() != 30*day {
		t.Fatalf("quality %v", q)
	}
	// A red spell under way when the window opens counts from its start.
	spell := m.quality([]Opened{{AccountID: "b", Kind: red, At: at.Add(-120 * day), spell: true}})
	if spell.GetFlaggedChurned() != 1 || spell.GetMedianLeadTime().AsDuration() != 90*day {
		t.Fatalf("spell %v", spell)
	}
	ended := m.quality([]Opened{{AccountID: "b", Kind: red, At: at.Add(-120 * day), Until: at.Add(-100 * day), spell: true}})
	if ended.GetFlaggedRenewals() != 0 {
		t.Fatalf("a spell that ended before the window flagged %v", ended)
	}
}
