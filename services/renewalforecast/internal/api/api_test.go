package api

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func outcome(typ accountv1.OutcomeType, at time.Time, before, after int64) *accountv1.RenewalOutcome {
	return &accountv1.RenewalOutcome{
		Type: typ, OutcomeTime: timestamppb.New(at),
		ArrBefore: &accountv1.Money{CurrencyCode: "USD", Units: before},
		ArrAfter:  &accountv1.Money{CurrencyCode: "USD", Units: after},
	}
}

func TestNextRenewal(t *testing.T) {
	renewed := accountv1.OutcomeType_OUTCOME_TYPE_RENEWED
	for _, tc := range []struct {
		name     string
		renewal  time.Time
		outcomes []*accountv1.RenewalOutcome
		want     time.Time
	}{
		{"none recorded", date(2025, 6, 1), nil, date(2025, 6, 1)},
		{"renewed early, in pre-renewal: next year", date(2025, 6, 1),
			[]*accountv1.RenewalOutcome{outcome(renewed, date(2025, 3, 15), 10, 10)}, date(2026, 6, 1)},
		{"an older outcome settles nothing", date(2025, 6, 1),
			[]*accountv1.RenewalOutcome{outcome(renewed, date(2024, 6, 1), 10, 10)}, date(2025, 6, 1)},
		{"CRM never moved the date: a year per renewal", date(2023, 6, 1),
			[]*accountv1.RenewalOutcome{outcome(renewed, date(2023, 6, 1), 10, 10), outcome(renewed, date(2024, 6, 2), 10, 10)}, date(2025, 6, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := nextRenewal(&accountv1.Account{RenewalTime: timestamppb.New(tc.renewal), Outcomes: tc.outcomes})
			if !ok || !got.Equal(tc.want) {
				t.Errorf("nextRenewal = %v %v, want %v", got, ok, tc.want)
			}
		})
	}
	if _, ok := nextRenewal(&accountv1.Account{}); ok {
		t.Error("an account without a renewal date has a next renewal")
	}
}

// TestFactsOf checks the facts a replay sees: before the first renewal its
// date and the ARR then, after each one the ARR after, the stage it moved
// to, and the next renewal's date.
func TestFactsOf(t *testing.T) {
	acc := &accountv1.Account{
		AccountId: "a", LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED,
		RenewalTime: timestamppb.New(date(2024, 6, 1)),
		Outcomes: []*accountv1.RenewalOutcome{
			outcome(accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, date(2025, 6, 1), 120, 0),
			outcome(accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED, date(2024, 6, 1), 100, 120),
		},
	}
	facts := factsOf(acc)
	if len(facts) != 3 {
		t.Fatalf("%d facts, want 3", len(facts))
	}
	for i, want := range []struct {
		at      time.Time
		stage   accountv1.LifecycleStage
		renewal time.Time
		arr     int64
	}{
		{time.Time{}, accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED, date(2024, 6, 1), 100},
		{date(2024, 6, 1), accountv1.LifecycleStage_LIFECYCLE_STAGE_RENEWED, date(2025, 6, 1), 120},
		{date(2025, 6, 1), accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED, date(2026, 6, 1), 0},
	} {
		f := facts[i]
		if !f.At.Equal(want.at) || f.Account.GetLifecycleStage() != want.stage ||
			!f.Account.GetRenewalTime().AsTime().Equal(want.renewal) || f.Account.GetArr().GetUnits() != want.arr ||
			len(f.Account.GetOutcomes()) != 0 {
			t.Errorf("fact %d = %v at %v, want %+v", i, f.Account, f.At, want)
		}
	}
	if acc.GetLifecycleStage() != accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED || len(acc.GetOutcomes()) != 2 {
		t.Error("factsOf modified the stored account")
	}
}
