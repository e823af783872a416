package rules

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Facts are what a rule is evaluated on: the latest account facts and score
// (either may be nil), the account's recent scores, and the evaluation time
// (event time, so that replays decide as live runs did).
type Facts struct {
	At      time.Time
	Account *accountv1.Account
	Score   *scoringv1.HealthScore
	History []*alertv1.ScorePoint
}

// Stage is the account's lifecycle stage: the CRM's when it gives one, else
// the one scoring derived.
func (f Facts) Stage() accountv1.LifecycleStage {
	if s := f.Account.GetLifecycleStage(); s != accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED {
		return s
	}
	return f.Score.GetLifecycleStage()
}

// Renewal is the account's renewal date, zero when unknown.
func (f Facts) Renewal() time.Time {
	ts := f.Account.GetRenewalTime()
	if ts == nil {
		ts = f.Score.GetRenewalTime()
	}
	return asTime(ts)
}

func asTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// measure is the score's first measure of a kind that has data: rules name
// kinds, not measure names, so they work with any tenant's scorecard.
func (f Facts) measure(kind scoringv1.MeasureKind) *scoringv1.MeasureResult {
	for _, m := range f.Score.GetMeasures() {
		if m.GetKind() == kind && m.GetHasData() {
			return m
		}
	}
	return nil
}

// Verdict is a rule's reading of an account: an alert of the rule is open
// exactly while its verdict fires, and resolves when it stops.
type Verdict struct {
	Firing bool
	// Reason explains a firing verdict, with the numbers.
	Reason string
}

// Risk reports whether a kind warns of churn: expansion and win-back point
// at opportunities instead.
func Risk(k alertv1.RuleKind) bool {
	return k != alertv1.RuleKind_RULE_KIND_WIN_BACK && k != alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY
}

// Judged reports whether a rule may read an account at all. No rule judges
// an account the scorecard does not judge yet (too little history: band
// INSUFFICIENT_DATA, or no score); no risk rule fires on a green account,
// whose score says the account is healthy, nor on a churned one, where
// there is nothing left to save (only win-back reads churned accounts),
// and a red-only rule only on a red one.
func Judged(r *alertv1.Rule, f Facts) bool {
	k, band := r.GetKind(), f.Score.GetBand()
	churned := f.Stage() == accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED || band == scoringv1.Band_BAND_CHURNED
	switch {
	case k == alertv1.RuleKind_RULE_KIND_WIN_BACK:
		return churned && f.Score != nil
	case churned, band == scoringv1.Band_BAND_UNSPECIFIED, band == scoringv1.Band_BAND_INSUFFICIENT_DATA:
		return false
	case Risk(k) && r.GetRedOnly():
		return band == scoringv1.Band_BAND_RED
	case Risk(k):
		return band != scoringv1.Band_BAND_GREEN
	}
	return true
}

// Evaluate reads an account against a rule. mem is the rule's memory for the
// account; conditions that must last keep their start in it.
func Evaluate(r *alertv1.Rule, f Facts, mem *alertv1.RuleState) Verdict {
	t, window := r.GetThreshold(), time.Duration(r.GetWindowDays())*day
	if !Judged(r, f) {
		mem.ConditionTime = nil
		return Verdict{}
	}
	switch r.GetKind() {
	case alertv1.RuleKind_RULE_KIND_RED_BAND:
		return Verdict{
			Firing: f.Score.GetBand() == scoringv1.Band_BAND_RED,
			Reason: fmt.Sprintf("In the red band at %.0f (%+.0f)", f.Score.GetScore(), f.Score.GetDelta()),
		}

	case alertv1.RuleKind_RULE_KIND_SCORE_DROP:
		score := f.Score.GetScore()
		peak := score
		for _, p := range f.History {
			if !p.GetTime().AsTime().Before(f.At.Add(-window)) {
				peak = max(peak, p.GetScore())
			}
		}
		drop := peak - score
		return Verdict{
			Firing: drop >= t,
			Reason: fmt.Sprintf("Score fell %.0f points within %d days (%.0f → %.0f)", drop, r.GetWindowDays(), peak, score),
		}

	case alertv1.RuleKind_RULE_KIND_USAGE_DROP:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND)
		if m == nil {
			return Verdict{}
		}
		pct := m.GetRawValue() * 100
		return Verdict{
			Firing: pct < t,
			Reason: fmt.Sprintf("Usage at %.0f%% of its own baseline: %s", pct, m.GetDetail()),
		}

	case alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY)
		if m == nil {
			return Verdict{}
		}
		return Verdict{
			Firing: m.GetRawValue() >= t,
			Reason: fmt.Sprintf("Silent for %.0f days: %s", m.GetRawValue(), m.GetDetail()),
		}

	case alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK:
		renewal := f.Renewal()
		until := renewal.Sub(f.At)
		return Verdict{
			Firing: !renewal.IsZero() && until > 0 && until <= window,
			Reason: fmt.Sprintf("Renews on %s (in %d days) while %s at %.0f", renewal.Format(time.DateOnly),
				int(until/day), bandName(f.Score.GetBand()), f.Score.GetScore()),
		}

	case alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT)
		if m == nil || m.GetRawValue() > 0 {
			mem.ConditionTime = nil
			return Verdict{}
		}
		if mem.ConditionTime == nil {
			mem.ConditionTime = timestamppb.New(f.At)
		}
		return Verdict{
			Firing: f.At.Sub(mem.GetConditionTime().AsTime()) >= time.Duration(t*float64(day)),
			Reason: "No S/A stakeholder active: " + m.GetDetail(),
		}

	case alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED:
		start := asTime(f.Account.GetContractStartTime())
		if start.IsZero() || f.Stage() != accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING {
			return Verdict{}
		}
		share, detail := 0.0, "no milestone measure"
		if m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES); m != nil {
			share, detail = m.GetRawValue(), m.GetDetail()
		}
		days := int(f.At.Sub(start) / day)
		return Verdict{
			Firing: days >= int(r.GetWindowDays()) && share < t,
			Reason: fmt.Sprintf("Day %d of onboarding without first value: %.0f%% of milestones reached (%s)", days, share*100, detail),
		}

	case alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO)
		if m == nil {
			return Verdict{}
		}
		return Verdict{
			Firing: m.GetRawValue() >= t,
			Reason: fmt.Sprintf("%.0f%% of purchased seats active: %s", m.GetRawValue()*100, m.GetDetail()),
		}

	case alertv1.RuleKind_RULE_KIND_WIN_BACK:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY)
		if m == nil {
			return Verdict{}
		}
		lastCore := f.Score.GetScoreTime().AsTime().Add(-time.Duration(m.GetRawValue() * float64(day)))
		churned := churnTime(f.Account)
		return Verdict{
			Firing: m.GetRawValue() <= t && (churned.IsZero() || lastCore.After(churned)),
			Reason: fmt.Sprintf("Churned on %s and active again: %s", churned.Format(time.DateOnly), m.GetDetail()),
		}
	}
	return Verdict{}
}

// churnTime is when the account last churned, zero when no churn is recorded.
func churnTime(a *accountv1.Account) time.Time {
	var t time.Time
	for _, o := range a.GetOutcomes() {
		if o.GetType() == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED && o.GetOutcomeTime().AsTime().After(t) {
			t = o.GetOutcomeTime().AsTime()
		}
	}
	return t
}

func bandName(b scoringv1.Band) string {
	switch b {
	case scoringv1.Band_BAND_RED:
		return "red"
	case scoringv1.Band_BAND_YELLOW:
		return "yellow"
	case scoringv1.Band_BAND_GREEN:
		return "green"
	case scoringv1.Band_BAND_INSUFFICIENT_DATA:
		return "not judged yet"
	case scoringv1.Band_BAND_CHURNED:
		return "churned"
	}
	return "unscored"
}

// MaxDropWindow is the longest SCORE_DROP window among rules: how much score
// history an account must keep.
func MaxDropWindow(rs []*alertv1.Rule) time.Duration {
	var w int32
	for _, r := range rs {
		if r.GetKind() == alertv1.RuleKind_RULE_KIND_SCORE_DROP && !r.GetDisabled() {
			w = max(w, r.GetWindowDays())
		}
	}
	return time.Duration(w) * day
}
