package scorecard

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Event and property names of the conventions described in the package comment.
const (
	EventNPSSubmitted          = "NPS Submitted"
	EventTicketOpened          = "Ticket Opened"
	EventTicketClosed          = "Ticket Closed"
	EventPaymentFailed         = "Payment Failed"
	EventPaymentSucceeded      = "Payment Succeeded"
	EventSubscriptionDowngrade = "Subscription Downgraded"

	PropertyScore    = "score"
	PropertyTicketID = "ticket_id"
	PropertySeverity = "severity"

	// DefaultLevelTrait is the identify trait holding a stakeholder level.
	DefaultLevelTrait = "stakeholder_level"
	// DefaultOnboardingDays is how long after contract start an account onboards.
	DefaultOnboardingDays = 30
)

// Level is a set of stakeholder levels, as bits.
type Level uint8

// The stakeholder levels: executives and decision makers (S), directors (A), staff (B).
const (
	LevelS Level = 1 << iota
	LevelA
	LevelB
)

// ParseLevel reads "S", "A" or "B", in either case.
func ParseLevel(s string) (Level, bool) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "S":
		return LevelS, true
	case "A":
		return LevelA, true
	case "B":
		return LevelB, true
	}
	return 0, false
}

// Compiled is a validated scorecard in the form the engine evaluates: defaults applied,
// event names resolved, measures per lifecycle stage listed with their weights.
type Compiled struct {
	// Scorecard is the source, not to be modified.
	Scorecard *scoringv1.Scorecard
	// Measures are the base measures followed by each override's own.
	Measures []Measure
	// Groups are the distinct event sets whose last day (and, when Counts, daily
	// counts) the engine keeps per account.
	Groups []Group
	// EventGroups maps an event name to the bit set of the groups it belongs to.
	EventGroups map[string]uint64
	// ActiveEvents are the events that make a user active; nil means any track,
	// page or screen call.
	ActiveEvents map[string]bool
	// BillingEvents are the trouble events of the BILLING measures.
	BillingEvents map[string]bool
	// AnyGroups are the groups of measures that count core events when the
	// scorecard names none: every product (track) event but the conventions'.
	AnyGroups uint64
	// OnboardingDays is how long after contract start an account onboards.
	OnboardingDays int
	// MinHistoryDays is how long an account is watched before it is judged.
	MinHistoryDays int
	// RedBelow and GreenFrom are the band cut points.
	RedBelow, GreenFrom float64

	base       []Weighted
	stages     map[accountv1.LifecycleStage][]Weighted
	levelTrait string
	roleLevels map[string]Level
}

// Measure is one compiled measure.
type Measure struct {
	Name string
	Kind scoringv1.MeasureKind
	// WindowDays is the window, the kind's default applied; for USAGE_TREND the
	// baseline before the last TrendRecentDays.
	WindowDays int
	// Events are the events the measure reads, the scorecard's core events when the
	// measure names none (for the kinds that count events).
	Events []string
	// CoreEvents says Events are the scorecard's core events.
	CoreEvents bool
	// Levels are the stakeholder levels that count (STAKEHOLDER_ENGAGEMENT).
	Levels Level
	// Points is the normalisation, values strictly increasing; none with the
	// tenant's scale.
	Points []Point
	// TenantScale says the sub-score comes from the tenant's distribution of
	// the raw value (SCALE_TENANT_RANK); HigherBetter is its direction.
	TenantScale, HigherBetter bool
	// Group is the index in Compiled.Groups of the measure's event set, -1 if none.
	Group int
	// Milestones are the groups of the ONBOARDING_MILESTONES events, one each.
	Milestones []int
}

// Point is one point of a measure's normalisation.
type Point struct{ Value, Score float64 }

// Group is an event set tracked per account.
type Group struct {
	// Events are the set; none means every product event (AnyGroups).
	Events []string
	// Counts says a measure needs the group's daily counts, not only its last day;
	// Weeks that one needs its weekly counts.
	Counts, Weeks bool
	// Key identifies the event set across scorecard versions.
	Key string
}

// Weighted is a measure in effect in a lifecycle stage.
type Weighted struct {
	// Measure indexes Compiled.Measures.
	Measure int
	Weight  float64
}

// Compile validates a scorecard and compiles it; the error of an invalid scorecard is
// a ProblemsError. The result keeps a copy of sc.
func Compile(sc *scoringv1.Scorecard) (*Compiled, error) {
	if problems := Validate(sc); len(problems) > 0 {
		return nil, ProblemsError(problems)
	}
	sc = proto.Clone(sc).(*scoringv1.Scorecard)
	c := &Compiled{
		Scorecard:      sc,
		EventGroups:    map[string]uint64{},
		BillingEvents:  map[string]bool{},
		OnboardingDays: int(sc.GetOnboardingDays()),
		RedBelow:       sc.GetBands().GetRedBelow(),
		GreenFrom:      sc.GetBands().GetGreenFrom(),
		stages:         map[accountv1.LifecycleStage][]Weighted{},
		levelTrait:     sc.GetLevelTrait(),
		roleLevels:     map[string]Level{},
	}
	if c.OnboardingDays == 0 {
		c.OnboardingDays = DefaultOnboardingDays
	}
	if c.MinHistoryDays = int(sc.GetMinHistoryDays()); c.MinHistoryDays == 0 {
		c.MinHistoryDays = DefaultMinHistoryDays
	}
	if c.levelTrait == "" {
		c.levelTrait = DefaultLevelTrait
	}
	for role, level := range sc.GetRoleLevels() {
		c.roleLevels[strings.ToLower(strings.TrimSpace(role))], _ = ParseLevel(level)
	}
	if len(sc.GetActiveEvents()) > 0 {
		c.ActiveEvents = map[string]bool{}
		for _, e := range sc.GetActiveEvents() {
			c.ActiveEvents[e] = true
		}
	}

	groups := groupIndex{}
	for _, m := range allMeasures(sc) {
		c.Measures = append(c.Measures, compileMeasure(sc, m, &groups))
	}
	c.Groups = groups.groups
	for i, g := range c.Groups {
		if len(g.Events) == 0 {
			c.AnyGroups |= 1 << i
		}
		for _, e := range g.Events {
			c.EventGroups[e] |= 1 << i
		}
	}
	for _, m := range c.Measures {
		if m.Kind == scoringv1.MeasureKind_MEASURE_KIND_BILLING {
			for _, e := range m.Events {
				c.BillingEvents[e] = true
			}
		}
	}
	c.base = stageMeasures(sc, nil)
	for _, o := range sc.GetStageOverrides() {
		c.stages[o.GetStage()] = stageMeasures(sc, o)
	}
	return c, nil
}

// StageMeasures lists the measures in effect in a lifecycle stage with their weights,
// in scorecard order.
func (c *Compiled) StageMeasures(stage accountv1.LifecycleStage) []Weighted {
	if ms, ok := c.stages[stage]; ok {
		return ms
	}
	return c.base
}

// Band reads a score against the bands.
func (c *Compiled) Band(score float64) scoringv1.Band {
	switch {
	case score < c.RedBelow:
		return scoringv1.Band_BAND_RED
	case score >= c.GreenFrom:
		return scoringv1.Band_BAND_GREEN
	}
	return scoringv1.Band_BAND_YELLOW
}

// UserLevel reads a user's stakeholder level from identify traits: the level trait,
// else the role or title mapped by role_levels; 0 when none applies.
func (c *Compiled) UserLevel(traits *structpb.Struct) Level {
	fields := traits.GetFields()
	if l, ok := ParseLevel(fields[c.levelTrait].GetStringValue()); ok {
		return l
	}
	for _, key := range []string{"role", "title"} {
		if s := fields[key].GetStringValue(); s != "" {
			if l, ok := c.roleLevels[strings.ToLower(strings.TrimSpace(s))]; ok {
				return l
			}
		}
	}
	return 0
}

// Normalise maps a raw value to a 0-100 sub-score along the points, linearly between
// them and clamped beyond the ends.
func (m *Measure) Normalise(raw float64) float64 {
	p := m.Points
	if raw <= p[0].Value {
		return p[0].Score
	}
	for i := 1; i < len(p); i++ {
		if raw <= p[i].Value {
			f := (raw - p[i-1].Value) / (p[i].Value - p[i-1].Value)
			return p[i-1].Score + f*(p[i].Score-p[i-1].Score)
		}
	}
	return p[len(p)-1].Score
}

func compileMeasure(sc *scoringv1.Scorecard, m *scoringv1.Measure, groups *groupIndex) Measure {
	kind := m.GetKind()
	cm := Measure{
		Name:       m.GetName(),
		Kind:       kind,
		WindowDays: int(m.GetWindowDays()),
		Events:     slices.Clone(m.GetEvents()),
		Group:      -1,
	}
	if cm.WindowDays == 0 {
		cm.WindowDays = defaultWindow(kind)
	}
	if len(cm.Events) == 0 {
		switch {
		case countsEvents(kind):
			cm.Events, cm.CoreEvents = slices.Clone(sc.GetCoreEvents()), true
		case kind == scoringv1.MeasureKind_MEASURE_KIND_BILLING:
			cm.Events = []string{EventPaymentFailed, EventSubscriptionDowngrade}
		}
	}
	for _, l := range m.GetLevels() {
		level, _ := ParseLevel(l)
		cm.Levels |= level
	}
	if cm.Levels == 0 {
		cm.Levels = LevelS | LevelA
	}
	for _, p := range m.GetPoints() {
		cm.Points = append(cm.Points, Point{Value: p.GetValue(), Score: p.GetScore()})
	}
	if m.GetScale() == scoringv1.Scale_SCALE_TENANT_RANK {
		cm.TenantScale = true
		cm.HigherBetter, _ = Direction(kind)
	}
	long := cm.WindowDays > DailyDays
	switch kind {
	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY:
		cm.Group = groups.add(cm.Events, !long, long)
	case scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		cm.Group = groups.add(cm.Events, true, false)
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS:
		cm.Group = groups.add(cm.Events, false, true)
	case scoringv1.MeasureKind_MEASURE_KIND_RECENCY:
		cm.Group = groups.add(cm.Events, false, false)
	case scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		for _, e := range cm.Events {
			cm.Milestones = append(cm.Milestones, groups.add([]string{e}, false, false))
		}
	}
	return cm
}

func defaultWindow(k scoringv1.MeasureKind) int {
	switch k {
	case scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS:
		return 364
	case scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY, scoringv1.MeasureKind_MEASURE_KIND_USAGE_TREND:
		return 28
	case scoringv1.MeasureKind_MEASURE_KIND_SURVEY, scoringv1.MeasureKind_MEASURE_KIND_SUPPORT_LOAD,
		scoringv1.MeasureKind_MEASURE_KIND_BILLING, scoringv1.MeasureKind_MEASURE_KIND_ONBOARDING_MILESTONES:
		return DailyDays
	}
	return 30
}

// groupIndex dedupes event sets into groups.
type groupIndex struct {
	groups []Group
}

func (g *groupIndex) add(events []string, counts, weeks bool) int {
	key := groupKey(events)
	for i := range g.groups {
		if g.groups[i].Key == key {
			g.groups[i].Counts = g.groups[i].Counts || counts
			g.groups[i].Weeks = g.groups[i].Weeks || weeks
			return i
		}
	}
	g.groups = append(g.groups, Group{Events: events, Counts: counts, Weeks: weeks, Key: key})
	return len(g.groups) - 1
}

func groupKey(events []string) string {
	sorted := slices.Clone(events)
	slices.Sort(sorted)
	return strings.Join(slices.Compact(sorted), "\x1f")
}

// eventGroups lists the groups a scorecard needs, valid or not, so that Validate can
// count them.
func eventGroups(sc *scoringv1.Scorecard) []Group {
	groups := groupIndex{}
	for _, m := range allMeasures(sc) {
		compileMeasure(sc, m, &groups)
	}
	return groups.groups
}

// allMeasures lists the base measures followed by each override's own.
func allMeasures(sc *scoringv1.Scorecard) []*scoringv1.Measure {
	all := slices.Clone(sc.GetMeasures())
	for _, o := range sc.GetStageOverrides() {
		all = append(all, o.GetMeasures()...)
	}
	return all
}

// stageMeasures lists the measures in effect under an override (the base measures
// when o is nil) with a positive weight.
func stageMeasures(sc *scoringv1.Scorecard, o *scoringv1.StageOverride) []Weighted {
	var out []Weighted
	add := func(index int, m *scoringv1.Measure) {
		w := m.GetWeight()
		if ow, ok := o.GetWeights()[m.GetName()]; ok {
			w = ow
		}
		if w > 0 {
			out = append(out, Weighted{Measure: index, Weight: w})
		}
	}
	for i, m := range sc.GetMeasures() {
		add(i, m)
	}
	index := len(sc.GetMeasures())
	for _, other := range sc.GetStageOverrides() {
		for _, m := range other.GetMeasures() {
			if other == o {
				add(index, m)
			}
			index++
		}
	}
	return out
}
