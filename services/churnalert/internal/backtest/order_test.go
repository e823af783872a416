package backtest

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

// TestPartitionOrder evaluates one history in the orders the SCORES stream
// may hold it in: each partition publishes its accounts' changes in event
// time, at its own pace, so one partition's whole history may come before
// another's first day. The answer must not depend on it.
func TestPartitionOrder(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// dayScores is an account's day-end scores from day first on: watched
	// for 14 days, then green, then red from day red on.
	dayScores := func(account string, first, red int) []*scoringv1.HealthScore {
		var out []*scoringv1.HealthScore
		for d := first; d < 60; d++ {
			band, score := scoringv1.Band_BAND_GREEN, 80.0
			switch {
			case d-first+1 < 14:
				band = scoringv1.Band_BAND_INSUFFICIENT_DATA
			case d >= red:
				band, score = scoringv1.Band_BAND_RED, 20
			}
			out = append(out, &scoringv1.HealthScore{
				TenantId: "t", AccountId: account, Score: score, Band: band,
				LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION,
				ScoreTime:      timestamppb.New(start.AddDate(0, 0, d+1).Add(-time.Second)),
			})
		}
		return out
	}
	p0 := append(dayScores("a", 0, 30), dayScores("c", 2, 50)...)
	p1 := dayScores("b", 5, 40)
	renewals := []Renewal{
		{AccountID: "a", At: start.AddDate(0, 0, 60), Outcome: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED},
		{AccountID: "b", At: start.AddDate(0, 0, 60), Outcome: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED},
		{AccountID: "c", At: start.AddDate(0, 0, 60), Outcome: accountv1.OutcomeType_OUTCOME_TYPE_RENEWED},
	}
	interleaved := func() []*scoringv1.HealthScore {
		var out []*scoringv1.HealthScore
		for i, j := 0, 0; i < len(p0) || j < len(p1); {
			if j == len(p1) || i < len(p0) && !p0[i].GetScoreTime().AsTime().After(p1[j].GetScoreTime().AsTime()) {
				out, i = append(out, p0[i]), i+1
			} else {
				out, j = append(out, p1[j]), j+1
			}
		}
		return out
	}()
	orders := []struct {
		name   string
		scores []*scoringv1.HealthScore
	}{
		{"in event time", interleaved},
		{"partition 1 first", append(append([]*scoringv1.HealthScore{}, p1...), p0...)},
		{"partition 0 first", append(append([]*scoringv1.HealthScore{}, p0...), p1...)},
	}
	var want *alertv1.EvaluateRulesResponse
	for _, o := range orders {
		resp := Evaluate(History{Tenant: "t", Scores: o.scores, Renewals: renewals}, rules.Defaults(), 90*24*time.Hour)
		if resp.GetOverall().GetAlerts() == 0 {
			t.Fatalf("%s: no alert", o.name)
		}
		if resp.GetEarlyAlerts() != 0 || !resp.GetStartTime().AsTime().Equal(start.Add(day-time.Second)) {
			t.Errorf("%s: %d early alerts, history from %v", o.name, resp.GetEarlyAlerts(), resp.GetStartTime().AsTime())
		}
		if want == nil {
			want = resp
			continue
		}
		if !proto.Equal(want, resp) {
			t.Errorf("%s: %v\nwant (%s) %v", o.name, resp, orders[0].name, want)
		}
	}
}
