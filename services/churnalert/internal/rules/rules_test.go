package rules

import (
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
)

func TestDefaultsAreValid(t *testing.T) {
	kinds := map[alertv1.RuleKind]bool{}
	for _, r := range Defaults() {
		if ps := Validate(r, func(string) bool { return false }); len(ps) > 0 {
			t.Errorf("shipped rule %s: %v", r.GetRuleId(), ps)
		}
		kinds[r.GetKind()] = true
	}
	if len(kinds) != len(alertv1.RuleKind_name)-1 {
		t.Errorf("shipped rules cover %d kinds, want every one of %d", len(kinds), len(alertv1.RuleKind_name)-1)
	}
}

// TestValidateListsEveryProblem checks that one call names every bad field,
// so a client fixes a rule in one round trip.
func TestValidateListsEveryProblem(t *testing.T) {
	bad := &alertv1.Rule{
		RuleId:               "Bad Id",
		Kind:                 alertv1.RuleKind_RULE_KIND_SCORE_DROP,
		Threshold:            150,
		WindowDays:           60,
		SeverityRaise:        &alertv1.SeverityRaise{Tiers: []accountv1.Tier{0}, ArrUnitsAtLeast: -1},
		Cooldown:             durationpb.New(-time.Hour),
		EscalateAfter:        durationpb.New(365 * 24 * time.Hour),
		AutoResolve:          &alertv1.AutoResolve{Threshold: proto.Float64(200), Sustain: durationpb.New(time.Hour)},
		EscalationScheduleId: "nobody",
	}
	got := map[string]bool{}
	for _, p := range Validate(bad, func(string) bool { return false }) {
		got[p.GetField()] = true
	}
	for _, f := range []string{"rule.rule_id", "rule.threshold", "rule.window_days", "rule.severity", "rule.severity_raise.tiers[0]",
		"rule.severity_raise.arr_units_at_least", "rule.cooldown", "rule.escalate_after", "rule.escalation_schedule_id"} {
		if !got[f] {
			t.Errorf("no problem reported for %s (got %v)", f, got)
		}
	}
	if ps := Validate(&alertv1.Rule{RuleId: "x", Kind: alertv1.RuleKind_RULE_KIND_RED_BAND, Threshold: 3, WindowDays: 2,
		Severity: alertv1.Severity_SEVERITY_LOW}, nil); len(ps) != 2 {
		t.Errorf("red band with threshold and window: %d problems, want 2: %v", len(ps), ps)
	}
}

func TestSeverityRaise(t *testing.T) {
	r := &alertv1.Rule{Severity: alertv1.Severity_SEVERITY_MEDIUM, SeverityRaise: &alertv1.SeverityRaise{
		Tiers: []accountv1.Tier{accountv1.Tier_TIER_BENCHMARK}, ArrUnitsAtLeast: 100_000}}
	for _, c := range []struct {
		tier accountv1.Tier
		arr  int64
		want alertv1.Severity
	}{
		{accountv1.Tier_TIER_STANDARD, 10_000, alertv1.Severity_SEVERITY_MEDIUM},
		{accountv1.Tier_TIER_BENCHMARK, 10_000, alertv1.Severity_SEVERITY_HIGH},
		{accountv1.Tier_TIER_STANDARD, 250_000, alertv1.Severity_SEVERITY_HIGH},
		{accountv1.Tier_TIER_BENCHMARK, 250_000, alertv1.Severity_SEVERITY_CRITICAL},
	} {
		if got := Severity(r, c.tier, &accountv1.Money{CurrencyCode: "USD", Units: c.arr}); got != c.want {
			t.Errorf("tier %v arr %d: %v, want %v", c.tier, c.arr, got, c.want)
		}
	}
	top := &alertv1.Rule{Severity: alertv1.Severity_SEVERITY_CRITICAL, SeverityRaise: r.GetSeverityRaise()}
	if got := Severity(top, accountv1.Tier_TIER_BENCHMARK, &accountv1.Money{Units: 1e6}); got != alertv1.Severity_SEVERITY_CRITICAL {
		t.Errorf("raise past critical: %v", got)
	}
}

func rule(id string) *alertv1.Rule {
	for _, r := range Defaults() {
		if r.GetRuleId() == id {
			return r
		}
	}
	panic("no shipped rule " + id)
}

func measure(kind scoringv1.MeasureKind, raw float64, detail string) *scoringv1.MeasureResult {
	return &scoringv1.MeasureResult{Kind: kind, HasData: true, RawValue: raw, Detail: detail}
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	scored := func(score float64, band scoringv1.Band, ms ...*scoringv1.MeasureResult) *scoringv1.HealthScore {
		return &scoringv1.HealthScore{Score: score, Band: band, Measures: ms, ScoreTime: timestamppb.New(now)}
	}
	churned := &accountv1.Account{LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED,
		Outcomes: []*accountv1.RenewalOutcome{{Type: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, OutcomeTime: timestamppb.New(now.Add(-60 * day))}}}
	onboarding := func(started time.Duration) *accountv1.Account {
		return &accountv1.Account{LifecycleStage: accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING, ContractStartTime: timestamppb.New(now.Add(-started))}
	}
	renewing := &accountv1.Account{RenewalTime: timestamppb.New(now.Add(45 * day))}
	history := []*alertv1.ScorePoint{{Time: timestamppb.New(now.Add(-20 * day)), Score: 95}, {Time: timestamppb.New(now.Add(-5 * day)), Score: 80}}
	tests := []struct {
		name    string
		rule    string
		account *accountv1.Account
		score   *scoringv1.HealthScore
		mem     *alertv1.RuleState
		firing  bool
		reason  string
	}{
		{"red", "red-band", nil, scored(35, scoringv1.Band_BAND_RED), nil, true, "red band at 35"},
		{"yellow", "red-band", nil, scored(45, scoringv1.Band_BAND_YELLOW), nil, false, ""},
		{"unscored", "red-band", nil, nil, nil, false, ""},
		// Risk rules fire on red accounts only (onboarding-stalled excepted):
		// each has a yellow case that stays quiet.
		{"drop within window", "score-drop", nil, scored(38, scoringv1.Band_BAND_RED), nil, true, "fell 42 points within 7 days (80 → 38)"},
		{"older peak ignored", "score-drop", nil, scored(70, scoringv1.Band_BAND_RED), nil, false, ""}, // 25 below the 95 of day -20, 10 below the 80 of day -5
		{"drop while yellow", "score-drop", nil, scored(58, scoringv1.Band_BAND_YELLOW), nil, false, ""},
		{"drop while green", "score-drop", nil, scored(58, scoringv1.Band_BAND_GREEN), nil, false, ""},
		{"usage down", "usage-drop", nil, scored(35, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND, 0.35, "7 vs 20/wk")), nil, true, "35% of its own baseline"},
		{"usage back", "usage-drop", nil, scored(35, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND, 0.6, "")), nil, false, ""},
		{"usage down while yellow", "usage-drop", nil, scored(50, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND, 0.35, "")), nil, false, ""},
		{"usage down while green", "usage-drop", nil, scored(80, scoringv1.Band_BAND_GREEN, measure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND, 0.35, "")), nil, false, ""},
		{"silent", "silent-account", nil, scored(30, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 16, "last core event 16 days ago")), nil, true, "Silent for 16 days"},
		{"active again", "silent-account", nil, scored(30, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 1, "")), nil, false, ""},
		{"silent while yellow", "silent-account", nil, scored(60, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 16, "")), nil, false, ""},
		{"renewal near, red", "renewal-at-risk", renewing, scored(35, scoringv1.Band_BAND_RED), nil, true, "Renews on 2026-04-24 (in 45 days) while red at 35"},
		{"renewal near, yellow", "renewal-at-risk", renewing, scored(55, scoringv1.Band_BAND_YELLOW), nil, false, ""},
		{"renewal near, green", "renewal-at-risk", renewing, scored(80, scoringv1.Band_BAND_GREEN), nil, false, ""},
		{"renewal far", "renewal-at-risk", &accountv1.Account{RenewalTime: timestamppb.New(now.Add(200 * day))}, scored(35, scoringv1.Band_BAND_RED), nil, false, ""},
		{"renewal past", "renewal-at-risk", &accountv1.Account{RenewalTime: timestamppb.New(now.Add(-day))}, scored(35, scoringv1.Band_BAND_RED), nil, false, ""},
		{"stakeholders gone", "stakeholders-disengaged", nil, scored(35, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, 0, "0 of 3 S/A stakeholders active in 30 days")), &alertv1.RuleState{}, true, "0 of 3"},
		{"stakeholders back", "stakeholders-disengaged", nil, scored(35, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, 0.5, "")), &alertv1.RuleState{ConditionTime: timestamppb.New(now.Add(-day))}, false, ""},
		{"stakeholders gone while yellow", "stakeholders-disengaged", nil, scored(50, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, 0, "")), &alertv1.RuleState{}, false, ""},
		{"onboarding overdue", "onboarding-stalled", onboarding(35 * day), scored(40, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES, 0.33, "1 of 3")), nil, true, "Day 35 of onboarding"},
		{"onboarding early", "onboarding-stalled", onboarding(10 * day), scored(40, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES, 0.33, "")), nil, false, ""},
		{"onboarding done", "onboarding-stalled", onboarding(35 * day), scored(70, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES, 1, "")), nil, false, ""},
		{"seats full", "expansion-opportunity", nil, scored(90, scoringv1.Band_BAND_GREEN, measure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, 0.95, "38 of 40 seats")), nil, true, "95% of purchased seats"},
		{"seats half", "expansion-opportunity", nil, scored(60, scoringv1.Band_BAND_YELLOW, measure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, 0.5, "")), nil, false, ""},
		{"churned and back", "win-back", churned, scored(20, scoringv1.Band_BAND_CHURNED, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 2, "last core event 2 days ago")), nil, true, "Churned on 2026-01-09 and active again"},
		{"churned and quiet", "win-back", churned, scored(5, scoringv1.Band_BAND_CHURNED, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 30, "")), nil, false, ""},
		{"not churned: no win-back", "win-back", nil, scored(20, scoringv1.Band_BAND_RED, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 2, "")), nil, false, ""},
		{"churned: no risk alert", "red-band", churned, scored(5, scoringv1.Band_BAND_RED), nil, false, ""},
		// Not judged yet (too little history): no rule fires on it.
		{"watched: not red", "red-band", nil, scored(11, scoringv1.Band_BAND_INSUFFICIENT_DATA), nil, false, ""},
		{"watched: not silent", "silent-account", nil, scored(11, scoringv1.Band_BAND_INSUFFICIENT_DATA, measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY, 30, "")), nil, false, ""},
		{"watched: no drop", "score-drop", nil, scored(40, scoringv1.Band_BAND_INSUFFICIENT_DATA), nil, false, ""},
		{"watched: no onboarding alert", "onboarding-stalled", onboarding(35 * day), scored(40, scoringv1.Band_BAND_INSUFFICIENT_DATA, measure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES, 0.33, "1 of 3")), nil, false, ""},
		{"watched: no expansion", "expansion-opportunity", nil, scored(40, scoringv1.Band_BAND_INSUFFICIENT_DATA, measure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, 0.95, "")), nil, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := tc.mem
			if mem == nil {
				mem = &alertv1.RuleState{}
			}
			v := Evaluate(rule(tc.rule), Facts{At: now, Account: tc.account, Score: tc.score, History: history}, mem)
			if v.Firing != tc.firing {
				t.Fatalf("firing %v, want %v (reason %q)", v.Firing, tc.firing, v.Reason)
			}
			if tc.firing && !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", v.Reason, tc.reason)
			}
		})
	}
}

// TestStakeholdersLast checks a threshold in days: the rule fires only once
// the measure has read zero that long.
func TestStakeholdersLast(t *testing.T) {
	r := proto.CloneOf(rule("stakeholders-disengaged"))
	r.Threshold = 7
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	zero := &scoringv1.HealthScore{Band: scoringv1.Band_BAND_RED, Measures: []*scoringv1.MeasureResult{measure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT, 0, "")}}
	mem := &alertv1.RuleState{}
	var fired []int
	for d := range 10 {
		if Evaluate(r, Facts{At: start.Add(time.Duration(d) * 24 * time.Hour), Score: zero}, mem).Firing {
			fired = append(fired, d)
		}
	}
	if !slices.Equal(fired, []int{7, 8, 9}) {
		t.Fatalf("fired on days %v, want 7 8 9", fired)
	}
}

// TestRedOnly: a red-only risk rule fires on red accounts only; without
// the flag, on yellow ones too.
func TestRedOnly(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	r := proto.CloneOf(rule("renewal-at-risk"))
	f := Facts{At: now, Account: &accountv1.Account{RenewalTime: timestamppb.New(now.Add(30 * 24 * time.Hour))}}
	for _, redOnly := range []bool{true, false} {
		r.RedOnly = redOnly
		for band, want := range map[scoringv1.Band]bool{scoringv1.Band_BAND_YELLOW: !redOnly, scoringv1.Band_BAND_RED: true, scoringv1.Band_BAND_GREEN: false} {
			f.Score = &scoringv1.HealthScore{Score: 35, Band: band}
			if got := Evaluate(r, f, &alertv1.RuleState{}).Firing; got != want {
				t.Errorf("red_only %v, %v: firing %v, want %v", redOnly, band, got, want)
			}
		}
	}
	if ps := Validate(&alertv1.Rule{RuleId: "x", Kind: alertv1.RuleKind_RULE_KIND_WIN_BACK, Threshold: 14, Severity: alertv1.Severity_SEVERITY_LOW, RedOnly: true}, nil); len(ps) != 1 || ps[0].GetField() != "rule.red_only" {
		t.Errorf("red-only win-back: %v", ps)
	}
}
