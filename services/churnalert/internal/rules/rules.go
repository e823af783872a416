// Package rules holds the alert conditions as data: the shipped defaults,
// validation that lists every problem, the evaluation of a rule against an
// account's facts, and severity raised by tier and ARR.
package rules

import (
	"fmt"
	"math"
	"regexp"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

const day = 24 * time.Hour

// Bounds of rule fields.
const (
	maxDropWindowDays = 30
	maxWindowDays     = 365
	maxCooldown       = 90 * day
	maxEscalateAfter  = 30 * day
	maxRecencyDays    = 90
)

// idPattern is the form of rule, schedule and channel ids: safe as KV key
// and subject tokens.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidID reports a problem with an id, or nil.
func ValidID(field, id string) *errdetails.BadRequest_FieldViolation {
	if !idPattern.MatchString(id) {
		return &errdetails.BadRequest_FieldViolation{Field: field, Description: "want 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit"}
	}
	return nil
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// Defaults returns the shipped rules, sorted by id. Risk rules raise their
// severity one level for benchmark accounts and one for 100k ARR or more.
//
// Two principles shape the risk rules; no threshold was fitted:
//
//  1. The scorecard decides whether an account is at risk; a risk rule says
//     why, and when to act. So risk rules fire only on red accounts
//     (red_only; the red-band rule needs no flag), except
//     onboarding-stalled, which judges accounts whose score means little
//     yet.
//  2. A CSM acts on an account within a month: a risk rule does not page
//     about an account again within 30 days (a recurrence within the
//     cooldown reopens the alert quietly).
//
// Measured with `go run ./tools/alertcheck` (two simulated worlds, 90-day
// lead window, against the rules before these principles): recall stays
// 1.00, alerts per CSM per week fall from 11.5/11.4 to 7.4/7.7, and the
// lift over the base churn rate rises from 2.20/2.29 to 2.93/2.87, the
// red band's; docs/alert-quality.md has the figures per rule. A first
// candidate made only the gradual and calendar rules (usage drop, renewal
// near) red-only, keeping sudden changes on yellow accounts; its alerts
// flagged contracting accounts too, and their lift stayed under the red
// band's.
func Defaults() []*alertv1.Rule {
	raise := func() *alertv1.SeverityRaise {
		return &alertv1.SeverityRaise{Tiers: []accountv1.Tier{accountv1.Tier_TIER_BENCHMARK}, ArrUnitsAtLeast: 100_000}
	}
	rs := []*alertv1.Rule{
		{RuleId: "expansion-opportunity", DisplayName: "Expansion opportunity: seats nearly all used", Kind: alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY,
			Threshold: 0.9, Severity: alertv1.Severity_SEVERITY_INFO, Cooldown: dur(30 * day)},
		{RuleId: "onboarding-stalled", DisplayName: "Onboarding stalled: no first value by day 30", Kind: alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED,
			Threshold: 1, WindowDays: 30, Severity: alertv1.Severity_SEVERITY_MEDIUM, SeverityRaise: raise(), Cooldown: dur(30 * day),
			EscalateAfter: dur(24 * time.Hour)},
		{RuleId: "red-band", DisplayName: "Entered the red band", Kind: alertv1.RuleKind_RULE_KIND_RED_BAND,
			Severity: alertv1.Severity_SEVERITY_HIGH, SeverityRaise: raise(), Cooldown: dur(30 * day), EscalateAfter: dur(4 * time.Hour)},
		{RuleId: "renewal-at-risk", DisplayName: "Renewal within 90 days while red", Kind: alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK,
			WindowDays: 90, Severity: alertv1.Severity_SEVERITY_HIGH, SeverityRaise: raise(), RedOnly: true, Cooldown: dur(30 * day), EscalateAfter: dur(8 * time.Hour)},
		{RuleId: "score-drop", DisplayName: "Score dropped 20 points within 7 days", Kind: alertv1.RuleKind_RULE_KIND_SCORE_DROP,
			Threshold: 20, WindowDays: 7, Severity: alertv1.Severity_SEVERITY_MEDIUM, SeverityRaise: raise(), RedOnly: true, Cooldown: dur(30 * day), EscalateAfter: dur(24 * time.Hour)},
		{RuleId: "silent-account", DisplayName: "Silent: no core event for 14 days", Kind: alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT,
			Threshold: 14, Severity: alertv1.Severity_SEVERITY_HIGH, SeverityRaise: raise(), RedOnly: true, Cooldown: dur(30 * day), EscalateAfter: dur(8 * time.Hour)},
		{RuleId: "stakeholders-disengaged", DisplayName: "Stakeholders disengaged: no S/A level activity", Kind: alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED,
			Threshold: 0, Severity: alertv1.Severity_SEVERITY_MEDIUM, SeverityRaise: raise(), RedOnly: true, Cooldown: dur(30 * day), EscalateAfter: dur(24 * time.Hour)},
		{RuleId: "usage-drop", DisplayName: "Usage below 50% of the account's own baseline", Kind: alertv1.RuleKind_RULE_KIND_USAGE_DROP,
			Threshold: 50, Severity: alertv1.Severity_SEVERITY_MEDIUM, SeverityRaise: raise(), RedOnly: true, Cooldown: dur(30 * day), EscalateAfter: dur(24 * time.Hour)},
		{RuleId: "win-back", DisplayName: "Win-back: churned account active again", Kind: alertv1.RuleKind_RULE_KIND_WIN_BACK,
			Threshold: 14, Severity: alertv1.Severity_SEVERITY_LOW, Cooldown: dur(30 * day)},
	}
	for _, r := range rs {
		r.Shipped = true
	}
	return rs
}

// kindSpec says what a kind's threshold and window mean and bound.
type kindSpec struct {
	threshold  string // "" when the kind takes none
	tMin, tMax float64
	window     bool
}

var specs = map[alertv1.RuleKind]kindSpec{
	alertv1.RuleKind_RULE_KIND_RED_BAND:                {},
	alertv1.RuleKind_RULE_KIND_SCORE_DROP:              {threshold: "points", tMin: 1, tMax: 100, window: true},
	alertv1.RuleKind_RULE_KIND_USAGE_DROP:              {threshold: "percent", tMin: 1, tMax: 99},
	alertv1.RuleKind_RULE_KIND_SILENT_ACCOUNT:          {threshold: "days", tMin: 1, tMax: maxRecencyDays},
	alertv1.RuleKind_RULE_KIND_RENEWAL_AT_RISK:         {window: true},
	alertv1.RuleKind_RULE_KIND_STAKEHOLDERS_DISENGAGED: {threshold: "days", tMin: 0, tMax: maxWindowDays},
	alertv1.RuleKind_RULE_KIND_ONBOARDING_STALLED:      {threshold: "share", tMin: 0.01, tMax: 1, window: true},
	alertv1.RuleKind_RULE_KIND_EXPANSION_OPPORTUNITY:   {threshold: "ratio", tMin: 0.1, tMax: 2},
	alertv1.RuleKind_RULE_KIND_WIN_BACK:                {threshold: "days", tMin: 1, tMax: maxRecencyDays},
}

// Validate lists every problem of a rule. scheduleExists reports whether the
// tenant has a schedule.
func Validate(r *alertv1.Rule, scheduleExists func(id string) bool) []*errdetails.BadRequest_FieldViolation {
	var out []*errdetails.BadRequest_FieldViolation
	bad := func(field, format string, args ...any) {
		out = append(out, &errdetails.BadRequest_FieldViolation{Field: "rule." + field, Description: fmt.Sprintf(format, args...)})
	}
	if r == nil {
		return []*errdetails.BadRequest_FieldViolation{{Field: "rule", Description: "required"}}
	}
	if v := ValidID("rule.rule_id", r.GetRuleId()); v != nil {
		out = append(out, v)
	}
	if len(r.GetDisplayName()) > 200 {
		bad("display_name", "at most 200 characters")
	}
	spec, ok := specs[r.GetKind()]
	if !ok {
		bad("kind", "unknown or unspecified rule kind")
	}
	t := r.GetThreshold()
	switch {
	case !ok:
	case spec.threshold == "" && t != 0:
		bad("threshold", "%s takes no threshold", r.GetKind())
	case spec.threshold != "" && (t < spec.tMin || t > spec.tMax || math.IsNaN(t)):
		bad("threshold", "%s threshold is in %s: want %g to %g", r.GetKind(), spec.threshold, spec.tMin, spec.tMax)
	}
	w := r.GetWindowDays()
	switch {
	case !ok:
	case !spec.window && w != 0:
		bad("window_days", "%s takes no window", r.GetKind())
	case r.GetKind() == alertv1.RuleKind_RULE_KIND_SCORE_DROP && (w < 1 || w > maxDropWindowDays):
		bad("window_days", "want 1 to %d days", maxDropWindowDays)
	case spec.window && (w < 1 || w > maxWindowDays):
		bad("window_days", "want 1 to %d days", maxWindowDays)
	}
	if _, known := alertv1.Severity_name[int32(r.GetSeverity())]; !known || r.GetSeverity() == alertv1.Severity_SEVERITY_UNSPECIFIED {
		bad("severity", "required: INFO to CRITICAL")
	}
	for i, tier := range r.GetSeverityRaise().GetTiers() {
		if _, known := accountv1.Tier_name[int32(tier)]; !known || tier == accountv1.Tier_TIER_UNSPECIFIED {
			bad(fmt.Sprintf("severity_raise.tiers[%d]", i), "unknown or unspecified tier")
		}
	}
	if r.GetSeverityRaise().GetArrUnitsAtLeast() < 0 {
		bad("severity_raise.arr_units_at_least", "must not be negative")
	}
	checkDuration := func(field string, d interface {
		IsValid() bool
		AsDuration() time.Duration
	}, present bool, max time.Duration) {
		if !present {
			return
		}
		if !d.IsValid() || d.AsDuration() < 0 || d.AsDuration() > max {
			bad(field, "want 0 to %s", max)
		}
	}
	checkDuration("cooldown", r.GetCooldown(), r.Cooldown != nil, maxCooldown)
	checkDuration("escalate_after", r.GetEscalateAfter(), r.EscalateAfter != nil, maxEscalateAfter)
	if r.GetRedOnly() && !Risk(r.GetKind()) {
		bad("red_only", "%s is not a risk rule", r.GetKind())
	}
	if id := r.GetEscalationScheduleId(); id != "" && !scheduleExists(id) {
		bad("escalation_schedule_id", "no schedule %q", id)
	}
	return out
}

// Severity is a rule's severity for an account: the base raised one level
// per condition of the rule's SeverityRaise the account meets.
func Severity(r *alertv1.Rule, tier accountv1.Tier, arr *accountv1.Money) alertv1.Severity {
	s := r.GetSeverity()
	raise := r.GetSeverityRaise()
	for _, t := range raise.GetTiers() {
		if t == tier {
			s++
			break
		}
	}
	if floor := raise.GetArrUnitsAtLeast(); floor > 0 && arr.GetUnits() >= floor {
		s++
	}
	return min(s, alertv1.Severity_SEVERITY_CRITICAL)
}

// Value is what an alert's account puts at stake, to rank a recipient's
// alerts: ARR x risk x renewal urgency. Risk is the share of health the
// score lacks ((100 - score) / 100, at least 0.05); urgency is one over the
// months left to the renewal (1 within a month or past, 1/12 unknown).
// ARR counts at least 1, so accounts without one still rank by risk.
func Value(a *alertv1.Alert, now time.Time) (value, risk, urgency float64) {
	risk = max(0.05, min(1, (100-a.GetScore())/100))
	urgency = 1.0 / 12
	if r := a.GetRenewalTime(); r != nil {
		months := math.Ceil(r.AsTime().Sub(now).Hours() / 24 / 30)
		urgency = 1 / max(1, months)
	}
	arr := max(1, float64(a.GetArr().GetUnits()))
	return arr * risk * urgency, risk, urgency
}
