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

// Verdict is a rule's reading of an account. Neither Firing nor Recovered
// (no data, or between the threshold and the recovery threshold) leaves an
// alert as it is: that gap is what keeps a hovering account from flapping.
type Verdict struct {
	Firing    bool
	Recovered bool
	// Reason explains a firing verdict, with the numbers.
	Reason string
}

func risk(k alertv1.RuleKind) bool {
	return k != alertv1.RuleKind_RULE_KIND_WIN_BACK
}

// Evaluate reads an account against a rule. mem is the rule's memory for the
// account; conditions that must last keep their start in it.
func Evaluate(r *alertv1.Rule, f Facts, mem *alertv1.RuleState) Verdict {
	t, window := r.GetThreshold(), time.Duration(r.GetWindowDays())*day
	resolve := resolveThreshold(r)
	if risk(r.GetKind()) && f.Stage() == accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED {
		// Nothing left to save; expansion is moot.
		return Verdict{Recovered: true}
	}
	if f.Score.GetBand() == scoringv1.Band_BAND_INSUFFICIENT_DATA &&
		r.GetKind() != alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED {
		// Not judged yet: a day of events is no reason to page anyone. Onboarding
		// is the exception, judged on milestones against contract days.
		return Verdict{}
	}
	switch r.GetKind() {
	case alertv1.RuleKind_RULE_KIND_RED_BAND:
		band := f.Score.GetBand()
		if band == scoringv1.Band_BAND_UNSPECIFIED {
			return Verdict{}
		}
		return Verdict{
			Firing:    band == scoringv1.Band_BAND_RED,
			Recovered: band != scoringv1.Band_BAND_RED && f.Score.GetScore() >= resolve,
			Reason:    fmt.Sprintf("In the red band at %.0f (%+.0f)", f.Score.GetScore(), f.Score.GetDelta()),
		}

	case alertv1.RuleKind_RULE_KIND_SCORE_DROP:
		if f.Score == nil {
			return Verdict{}
		}
		score := f.Score.GetScore()
		peak := score
		for _, p := range f.History {
			if !p.GetTime().AsTime().Before(f.At.Add(-window)) {
				peak = max(peak, p.GetScore())
			}
		}
		drop := peak - score
		return Verdict{
			Firing:    drop >= t,
			Recovered: drop < resolve,
			Reason:    fmt.Sprintf("Score fell %.0f points within %d days (%.0f → %.0f)", drop, r.GetWindowDays(), peak, score),
		}

	case alertv1.RuleKind_RULE_KIND_USAGE_DROP:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND)
		if m == nil {
			return Verdict{}
		}
		pct := m.GetRawValue() * 100
		return Verdict{
			Firing:    pct < t,
			Recovered: pct >= resolve,
			Reason:    fmt.Sprintf("Usage at %.0f%% of its own baseline: %s", pct, m.GetDetail()),
		}

	case alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_RECENCY)
		if m == nil {
			return Verdict{}
		}
		return Verdict{
			Firing:    m.GetRawValue() >= t,
			Recovered: m.GetRawValue() <= resolve,
			Reason:    fmt.Sprintf("Silent for %.0f days: %s", m.GetRawValue(), m.GetDetail()),
		}

	case alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK:
		renewal := f.Renewal()
		until := renewal.Sub(f.At)
		within := !renewal.IsZero() && until > 0 && until <= window
		band := f.Score.GetBand()
		return Verdict{
			Firing:    within && band != scoringv1.Band_BAND_GREEN && band != scoringv1.Band_BAND_UNSPECIFIED,
			Recovered: !within || band == scoringv1.Band_BAND_GREEN,
			Reason: fmt.Sprintf("Renews on %s (in %d days) while %s at %.0f", renewal.Format(time.DateOnly),
				int(until/day), bandName(band), f.Score.GetScore()),
		}

	case alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT)
		if m == nil {
			return Verdict{}
		}
		share := m.GetRawValue()
		if share > 0 {
			mem.ConditionTime = nil
		} else if mem.ConditionTime == nil {
			mem.ConditionTime = timestamppb.New(f.At)
		}
		return Verdict{
			Firing:    share == 0 && f.At.Sub(mem.GetConditionTime().AsTime()) >= time.Duration(t*float64(day)),
			Recovered: share > 0 && share >= resolve,
			Reason:    "No S/A stakeholder active: " + m.GetDetail(),
		}

	case alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED:
		start := asTime(f.Account.GetContractStartTime())
		if start.IsZero() {
			return Verdict{}
		}
		if f.Stage() != accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING {
			return Verdict{Recovered: true}
		}
		share, detail := 0.0, "no milestone measure"
		if m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES); m != nil {
			share, detail = m.GetRawValue(), m.GetDetail()
		}
		days := int(f.At.Sub(start) / day)
		return Verdict{
			Firing:    days >= int(r.GetWindowDays()) && share < t,
			Recovered: share >= t,
			Reason:    fmt.Sprintf("Day %d of onboarding without first value: %.0f%% of milestones reached (%s)", days, share*100, detail),
		}

	case alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY:
		m := f.measure(scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO)
		if m == nil {
			return Verdict{}
		}
		return Verdict{
			Firing:    m.GetRawValue() >= t,
			Recovered: m.GetRawValue() < resolve,
			Reason:    fmt.Sprintf("%.0f%% of purchased seats active: %s", m.GetRawValue()*100, m.GetDetail()),
		}

	case alertv1.RuleKind_RULE_KIND_WIN_BACK:
		if f.Stage() != accountv1.LifecycleStage_LIFECYCLE_STAGE_CHURNED {
			// Won back (or never churned): the opportunity is taken.
			return Verdict{Recovered: true}
		}
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
