package backtest

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
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

// TestReplayInScoreTimeOrder: the same scores, with two partitions' changes
// interleaved as SCORES may hold them (one partition's pipeline days ahead of
// the other's), replay to the same alerts at the same times.
func TestReplayInScoreTimeOrder(t *testing.T) {
	start := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	score := func(account string, d int, v float64) *scoringv1.HealthScore {
		band := scoringv1.Band_BAND_GREEN
		if v < 40 {
			band = scoringv1.Band_BAND_RED
		}
		return &scoringv1.HealthScore{TenantId: "t", AccountId: account, Score: v, Band: band, ScoreTime: timestamppb.New(start.Add(time.Duration(d) * day))}
	}
	var a, b []*scoringv1.HealthScore
	for d, v := range []float64{80, 70, 35, 30, 30, 75, 80, 30, 25, 85} {
		a = append(a, score("a", 3*d, v))
		b = append(b, score("b", 3*d+1, 110-v))
	}
	facts := []Fact{{At: start, Account: &accountv1.Account{AccountId: "a", RenewalTime: timestamppb.New(start.Add(40 * day))}},
		{At: start, Account: &accountv1.Account{AccountId: "b", RenewalTime: timestamppb.New(start.Add(40 * day))}}}
	var inTime []*scoringv1.HealthScore
	for i := range a {
		inTime = append(inTime, a[i], b[i])
	}
	run := func(scores []*scoringv1.HealthScore) []Opened {
		return Replay(History{Tenant: "t", Scores: scores, Facts: facts}, rules.Defaults()).Opened
	}
	want := run(inTime)
	if len(want) == 0 {
		t.Fatal("no alert opened: the test shows nothing")
	}
	// Partition of a published everything before partition of b began.
	if got := run(append(slices.Clone(a), b...)); !slices.Equal(got, want) {
		t.Fatalf("interleaved as one partition ahead: opened\n%v\nwant\n%v", got, want)
	}
}
