package scorecard

import (
	"fmt"
	"math"
	"slices"
	"strings"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Limits of a scorecard. They keep evaluation cheap and per-account state bounded.
const (
	// MaxWindowDays is the longest measure window: the engine keeps no older
	// counts (a year and a week of weekly counts, see LongWeeks).
	MaxWindowDays = 365
	// DailyDays is how far back the engine keeps daily counts and per-user
	// activity; windows beyond it are read from weekly counts, in whole weeks.
	DailyDays = 90
	// LongWeeks is how many weekly counts the engine keeps per event set.
	LongWeeks = 53
	// TrendRecentDays is the recent span of USAGE_TREND, compared with the mean week
	// of its window_days before.
	TrendRecentDays = 7
	// DefaultMinHistoryDays is how long an account is watched before it is judged.
	DefaultMinHistoryDays = 14
	// MaxMeasures bounds the measures of a scorecard, overrides included.
	MaxMeasures = 32
	// MaxEventsPerMeasure bounds the events one measure names.
	MaxEventsPerMeasure = 32
	// MaxGroups bounds the distinct event sets the engine tracks per account.
	MaxGroups = 64
	// MaxOnboardingDays bounds onboarding_days.
	MaxOnboardingDays = 365
)

// ProblemsError is the error of an invalid scorecard: every problem found.
type ProblemsError []*scoringv1.ScorecardProblem

func (p ProblemsError) Error() string {
	parts := make([]string, len(p))
	for i, pr := range p {
		parts[i] = pr.GetField() + ": " + pr.GetDescription()
	}
	return fmt.Sprintf("invalid scorecard (%d problems): %s", len(p), strings.Join(parts, "; "))
}

// Validate lists every problem of a scorecard, each with the path of its field in
// proto names (for example measures[2].points); none means the scorecard compiles.
func Validate(sc *scoringv1.Scorecard) []*scoringv1.ScorecardProblem {
	v := &validator{names: map[string]string{}}
	if sc == nil {
		v.add("", "the scorecard is missing")
		return v.problems
	}
	if sc.GetVersion() < 0 {
		v.add("version", "version %d is negative", sc.GetVersion())
	}
	if len(sc.GetMeasures()) == 0 {
		v.add("measures", "a scorecard needs at least one measure")
	}
	v.eventList("core_events", sc.GetCoreEvents())
	v.eventList("active_events", sc.GetActiveEvents())
	hasCore := len(sc.GetCoreEvents()) > 0
	total := len(sc.GetMeasures())
	for i, m := range sc.GetMeasures() {
		v.measure(fmt.Sprintf("measures[%d]", i), m, hasCore)
	}
	v.bands(sc.GetBands())
	stages := map[accountv1.LifecycleStage]int{}
	for i, o := range sc.GetStageOverrides() {
		total += len(o.GetMeasures())
		v.override(fmt.Sprintf("stage_overrides[%d]", i), o, sc, hasCore, stages, i)
	}
	if total > MaxMeasures {
		v.add("measures", "%d measures, overrides included, exceed the limit of %d", total, MaxMeasures)
	}
	for _, role := range sortedKeys(sc.GetRoleLevels()) {
		path := fmt.Sprintf("role_levels[%q]", role)
		if strings.TrimSpace(role) == "" {
			v.add(path, "empty role")
		}
		if _, ok := ParseLevel(sc.GetRoleLevels()[role]); !ok {
			v.add(path, "level %q is not S, A or B", sc.GetRoleLevels()[role])
		}
	}
	if d := sc.GetOnboardingDays(); d < 0 || d > MaxOnboardingDays {
		v.add("onboarding_days", "%d is outside 0-%d", d, MaxOnboardingDays)
	}
	if d := sc.GetMinHistoryDays(); d < 0 || d > MaxWindowDays {
		v.add("min_history_days", "%d is outside 0-%d (0 for the default of %d)", d, MaxWindowDays, DefaultMinHistoryDays)
	}
	if n := len(eventGroups(sc)); n > MaxGroups {
		v.add("measures", "the measures name %d distinct event sets, more than %d", n, MaxGroups)
	}
	return v.problems
}

type validator struct {
	problems []*scoringv1.ScorecardProblem
	// names maps each measure name seen to its path, to report duplicates.
	names map[string]string
}

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, &scoringv1.ScorecardProblem{
		Field:       field,
		Description: fmt.Sprintf(format, args...),
	})
}

func (v *validator) eventList(path string, events []string) {
	seen := map[string]bool{}
	for i, e := range events {
		switch {
		case strings.TrimSpace(e) == "":
			v.add(fmt.Sprintf("%s[%d]", path, i), "empty event name")
		case seen[e]:
			v.add(fmt.Sprintf("%s[%d]", path, i), "duplicate event %q", e)
		}
		seen[e] = true
	}
}

func (v *validator) measure(path string, m *scoringv1.Measure, hasCore bool) {
	switch name := m.GetName(); {
	case strings.TrimSpace(name) == "":
		v.add(path+".name", "empty name")
	case v.names[name] != "":
		v.add(path+".name", "duplicate name %q (also %s)", name, v.names[name])
	default:
		v.names[name] = path
	}

	kind := m.GetKind()
	switch _, known := scoringv1.MeasureKind_name[int32(kind)]; {
	case kind == scoringv1.MeasureKind_MEASURE_KIND_UNSPECIFIED:
		v.add(path+".kind", "kind is unspecified")
	case !known:
		v.add(path+".kind", "unknown kind %d", kind)
	}

	if w := m.GetWeight(); !(w > 0) || math.IsInf(w, 0) {
		v.add(path+".weight", "weight must be a positive number, got %v", w)
	}

	switch d := m.GetWindowDays(); {
	case kind == scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND && d != 0 &&
		(d < TrendRecentDays || d > DailyDays-TrendRecentDays):
		v.add(path+".window_days", "the trend baseline must be %d-%d days, got %d",
			TrendRecentDays, DailyDays-TrendRecentDays, d)
	case d < 0 || d > MaxWindowDays:
		v.add(path+".window_days", "%d is outside 1-%d (0 for the default)", d, MaxWindowDays)
	}

	events := m.GetEvents()
	v.eventList(path+".events", events)
	switch {
	case len(events) > MaxEventsPerMeasure:
		v.add(path+".events", "%d events exceed the limit of %d", len(events), MaxEventsPerMeasure)
	case kind == scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES && len(events) == 0 && !hasCore:
		// Other kinds read every product event as core use when no core events
		// are named; milestones need names.
		v.add(path+".events", "%s needs milestone events: neither the measure nor core_events name any", kind)
	case !countsEvents(kind) && kind != scoringv1.MeasureKind_MEASURE_KIND_BILLING && len(events) > 0:
		v.add(path+".events", "%s does not use events", kind)
	}

	if kind == scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT {
		for i, l := range m.GetLevels() {
			if _, ok := ParseLevel(l); !ok {
				v.add(fmt.Sprintf("%s.levels[%d]", path, i), "level %q is not S, A or B", l)
			}
		}
	} else if len(m.GetLevels()) > 0 {
		v.add(path+".levels", "levels apply only to MEASURE_KIND_STAKEHOLDER_ENGAGEMENT")
	}

	points := m.GetPoints()
	switch scale := m.GetScale(); {
	case scoringv1.Scale_name[int32(scale)] == "":
		v.add(path+".scale", "unknown scale %d", scale)
	case scale == scoringv1.Scale_SCALE_TENANT_RANK:
		if _, ok := Direction(kind); !ok {
			v.add(path+".scale", "%s cannot take the tenant's scale: it has no better direction", kind)
		}
		if len(points) > 0 {
			v.add(path+".points", "points do not apply with %s", scale)
		}
	case len(points) < 2:
		v.add(path+".points", "at least 2 points are needed, got %d", len(points))
	}
	for i, p := range points {
		pp := fmt.Sprintf("%s.points[%d]", path, i)
		if val := p.GetValue(); math.IsNaN(val) || math.IsInf(val, 0) {
			v.add(pp+".value", "value must be a finite number, got %v", val)
		} else if i > 0 && !(val > points[i-1].GetValue()) {
			v.add(pp+".value", "values must strictly increase: %v after %v", val, points[i-1].GetValue())
		}
		if s := p.GetScore(); !(s >= 0 && s <= 100) {
			v.add(pp+".score", "score must be within 0-100, got %v", s)
		}
	}
}

func (v *validator) bands(b *scoringv1.Bands) {
	if b == nil {
		v.add("bands", "bands are missing")
		return
	}
	red, green := b.GetRedBelow(), b.GetGreenFrom()
	if !(red >= 0 && red <= 100) {
		v.add("bands.red_below", "must be within 0-100, got %v", red)
	}
	if !(green >= 0 && green <= 100) {
		v.add("bands.green_from", "must be within 0-100, got %v", green)
	}
	if red > green {
		v.add("bands", "red_below %v is above green_from %v", red, green)
	}
}

func (v *validator) override(path string, o *scoringv1.StageOverride, sc *scoringv1.Scorecard,
	hasCore bool, stages map[accountv1.LifecycleStage]int, index int) {
	stage := o.GetStage()
	_, known := accountv1.LifecycleStage_name[int32(stage)]
	switch {
	case stage == accountv1.LifecycleStage_LIFECYCLE_STAGE_UNSPECIFIED:
		v.add(path+".stage", "stage is unspecified")
	case !known:
		v.add(path+".stage", "unknown stage %d", stage)
	default:
		if first, dup := stages[stage]; dup {
			v.add(path+".stage", "duplicate stage %s (also stage_overrides[%d])", stage, first)
		} else {
			stages[stage] = index
		}
	}
	for i, m := range o.GetMeasures() {
		v.measure(fmt.Sprintf("%s.measures[%d]", path, i), m, hasCore)
	}

	// The weights may name the base measures and this override's own.
	local := map[string]bool{}
	for _, m := range slices.Concat(sc.GetMeasures(), o.GetMeasures()) {
		local[m.GetName()] = true
	}
	for _, name := range sortedKeys(o.GetWeights()) {
		wp := fmt.Sprintf("%s.weights[%q]", path, name)
		if !local[name] {
			v.add(wp, "no measure named %q", name)
		}
		if w := o.GetWeights()[name]; !(w >= 0) || math.IsInf(w, 0) {
			v.add(wp, "weight must be a number >= 0, got %v", w)
		}
	}
	if len(sc.GetMeasures()) > 0 && len(stageMeasures(sc, o)) == 0 {
		v.add(path, "no measure keeps a positive weight in this stage")
	}
}

// Direction says whether more of a kind's raw value is better (true) or worse;
// false ok for kinds that have no direction fit for the tenant's scale.
func Direction(k scoringv1.MeasureKind) (higherBetter, ok bool) {
	switch k {
	case scoringv1.MeasureKind_MEASURE_KIND_RECENCY:
		return false, true
	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY,
		scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS,
		scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND,
		scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO,
		scoringv1.MeasureKind_MEASURE_KIND_STAKEHOLDER_ENGAGEMENT,
		scoringv1.MeasureKind_MEASURE_KIND_BREADTH:
		return true, true
	}
	return false, false
}

// countsEvents reports whether a kind counts the measure's events (the scorecard's
// core events when the measure names none).
func countsEvents(k scoringv1.MeasureKind) bool {
	switch k {
	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY,
		scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS,
		scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND,
		scoringv1.MeasureKind_MEASURE_KIND_RECENCY,
		scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		return true
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
