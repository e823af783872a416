package scorecard

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

func TestDefaultLoadsAndValidates(t *testing.T) {
	sc, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if problems := Validate(sc); len(problems) > 0 {
		t.Fatalf("default scorecard: %v", ProblemsError(problems))
	}
	c, err := Compile(sc)
	if err != nil {
		t.Fatal(err)
	}
	// It must work on any product's events: no event names of its own, scales
	// from the tenant's data, and horizons long enough for monthly use.
	if got := sc.GetCoreEvents(); len(got) > 0 {
		t.Errorf("the default names core events %v: they are one product's", got)
	}
	if c.AnyGroups == 0 {
		t.Error("no measure reads core use as every product event")
	}
	long := false
	for _, m := range c.Measures {
		if len(m.Events) > 0 && m.Kind != scoringv1.MeasureKind_MEASURE_KIND_BILLING {
			t.Errorf("%s names events %v", m.Name, m.Events)
		}
		if len(m.Points) > 0 && (m.Kind == scoringv1.MeasureKind_MEASURE_KIND_RECENCY || m.Kind == scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS) {
			t.Errorf("%s has fixed points: its scale must come from the tenant", m.Name)
		}
		long = long || m.WindowDays > DailyDays
	}
	if !long {
		t.Error("no measure looks further back than the daily window")
	}
	adoption := weights(c, accountv1.LifecycleStage_LIFECYCLE_STAGE_ADOPTION)
	if adoption["recency"] <= adoption["nps"] || adoption["regularity"] <= adoption["nps"] {
		t.Errorf("surveys weigh as much as behaviour: %v", adoption)
	}
}

// demo is the simulated product's scorecard, which uses every feature.
func demo(t *testing.T) *scoringv1.Scorecard {
	t.Helper()
	sc, err := Parse(sim.ScorecardYAML)
	if err != nil {
		t.Fatal(err)
	}
	if problems := Validate(sc); len(problems) > 0 {
		t.Fatalf("demo scorecard: %v", ProblemsError(problems))
	}
	return sc
}

func weights(c *Compiled, stage accountv1.LifecycleStage) map[string]float64 {
	out := map[string]float64{}
	for _, w := range c.StageMeasures(stage) {
		out[c.Measures[w.Measure].Name] = w.Weight
	}
	return out
}

func TestValidateListsEveryProblem(t *testing.T) {
	tests := []struct {
		file   string
		fields []string
	}{
		{"bad.yaml", []string{
			"version",
			"core_events[0]",
			"core_events[2]",
			"measures[0].weight",
			"measures[0].points",
			"measures[1].name",
			"measures[1].kind",
			"measures[1].weight",
			"measures[1].window_days",
			"measures[1].points[1].value",
			"measures[1].points[1].score",
			"measures[2].name",
			"measures[2].kind",
			"measures[2].events",
			"measures[2].levels",
			"measures[3].levels[1]",
			"measures[3].points[1].value",
			"measures[4].window_days",
			"measures[5].scale",
			"measures[5].points",
			"bands.red_below",
			"bands",
			`stage_overrides[0].weights["nope"]`,
			`stage_overrides[0].weights["seats"]`,
			"stage_overrides[1].stage",
			"stage_overrides[1].measures[0].name",
			"stage_overrides[2].stage",
			`role_levels["CEO"]`,
			"onboarding_days",
			"min_history_days",
		}},
		{"nocore.yaml", []string{"stage_overrides[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("LoadFile accepted an invalid scorecard")
			}
			sc, err := Parse(mustRead(t, path))
			if err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, p := range Validate(sc) {
				fields = append(fields, p.GetField())
				t.Logf("%s: %s", p.GetField(), p.GetDescription())
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("problem fields:\n got %q\nwant %q", fields, tt.fields)
			}
		})
	}
}

func TestValidateEmpty(t *testing.T) {
	tests := []struct {
		name   string
		sc     *scoringv1.Scorecard
		fields []string
	}{
		{"nil", nil, []string{""}},
		{"empty", &scoringv1.Scorecard{}, []string{"measures", "bands"}},
		{"nan weight", &scoringv1.Scorecard{
			Measures: []*scoringv1.Measure{{
				Name: "b", Kind: scoringv1.MeasureKind_MEASURE_KIND_BREADTH, Weight: math.NaN(),
				Points: []*scoringv1.Point{{Value: 0, Score: 0}, {Value: 1, Score: 100}},
			}},
			Bands: &scoringv1.Bands{RedBelow: 40, GreenFrom: 70},
		}, []string{"measures[0].weight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fields []string
			for _, p := range Validate(tt.sc) {
				fields = append(fields, p.GetField())
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("got %q, want %q", fields, tt.fields)
			}
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	sc, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("parse marshalled scorecard: %v\n%s", err, out)
	}
	if !proto.Equal(sc, back) {
		t.Fatalf("round trip changed the scorecard:\n%s", out)
	}
	again, err := Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, again) {
		t.Errorf("Marshal is not stable:\n%s\n---\n%s", out, again)
	}
}

func TestParseNamesAndEnums(t *testing.T) {
	yaml := `
coreEvents: [Order Taken]
measures:
  - {name: a, kind: Core-Event-Frequency, weight: 1, points: [{value: 0, score: 0}, {value: 1, score: 100}]}
  - {name: b, kind: MEASURE_KIND_RECENCY, weight: 1, windowDays: 7, points: [{value: 0, score: 100}, {value: 7, score: 0}]}
bands: {redBelow: 40, green_from: 70}
stage_overrides: [{stage: pre-renewal, weights: {a: 2}}]
roleLevels: {1: S}
`
	sc, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	want := &scoringv1.Scorecard{
		CoreEvents: []string{"Order Taken"},
		Measures: []*scoringv1.Measure{
			{Name: "a", Kind: scoringv1.MeasureKind_MEASURE_KIND_CORE_EVENT_FREQUENCY, Weight: 1,
				Points: []*scoringv1.Point{{Value: 0, Score: 0}, {Value: 1, Score: 100}}},
			{Name: "b", Kind: scoringv1.MeasureKind_MEASURE_KIND_RECENCY, Weight: 1, WindowDays: 7,
				Points: []*scoringv1.Point{{Value: 0, Score: 100}, {Value: 7, Score: 0}}},
		},
		Bands: &scoringv1.Bands{RedBelow: 40, GreenFrom: 70},
		StageOverrides: []*scoringv1.StageOverride{{
			Stage: accountv1.LifecycleStage_LIFECYCLE_STAGE_PRE_RENEWAL, Weights: map[string]float64{"a": 2},
		}},
		RoleLevels: map[string]string{"1": "S"},
	}
	if !proto.Equal(sc, want) {
		t.Errorf("got %v\nwant %v", sc, want)
	}
	if _, err := Parse([]byte("measures: [{name: a, wieght: 1}]")); err == nil {
		t.Error("an unknown field was accepted")
	}
}

func TestCompileGroups(t *testing.T) {
	c, err := Compile(demo(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Measure{}
	for _, m := range c.Measures {
		byName[m.Name] = m
	}
	// Frequency, trend and recency read the core events: one group with counts.
	core := byName["core_usage"].Group
	if core < 0 || byName["usage_trend"].Group != core || byName["recency"].Group != core || !c.Groups[core].Counts {
		t.Errorf("core group: %+v", c.Groups)
	}
	if got := c.EventGroups["Report Created"]; got != 1<<core {
		t.Errorf("Report Created groups = %b", got)
	}
	ms := byName["milestones"].Milestones
	if len(ms) != 3 || c.Groups[ms[0]].Counts {
		t.Errorf("milestone groups: %v", ms)
	}
	if !c.BillingEvents[EventPaymentFailed] || byName["billing"].WindowDays != 60 {
		t.Errorf("billing: %v %+v", c.BillingEvents, byName["billing"])
	}
	if c.Band(39.99) != scoringv1.Band_BAND_RED || c.Band(40) != scoringv1.Band_BAND_YELLOW || c.Band(70) != scoringv1.Band_BAND_GREEN {
		t.Error("bands misread")
	}
}

func TestNormalise(t *testing.T) {
	m := Measure{Points: []Point{{0, 0}, {10, 50}, {20, 100}}}
	down := Measure{Points: []Point{{0, 100}, {10, 0}}}
	tests := []struct {
		m    Measure
		raw  float64
		want float64
	}{
		{m, -5, 0}, {m, 0, 0}, {m, 5, 25}, {m, 10, 50}, {m, 15, 75}, {m, 20, 100}, {m, 99, 100},
		{down, 2.5, 75}, {down, 12, 0},
	}
	for _, tt := range tests {
		if got := tt.m.Normalise(tt.raw); got != tt.want {
			t.Errorf("Normalise(%v) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestUserLevel(t *testing.T) {
	c, err := Compile(demo(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		traits map[string]any
		want   Level
	}{
		{map[string]any{"stakeholder_level": "a", "role": "CEO"}, LevelA},
		{map[string]any{"role": "ceo"}, LevelS},
		{map[string]any{"title": " Director "}, LevelA},
		{map[string]any{"role": "Intern"}, 0},
		{nil, 0},
	}
	for _, tt := range tests {
		traits, err := structpb.NewStruct(tt.traits)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.UserLevel(traits); got != tt.want {
			t.Errorf("UserLevel(%v) = %v, want %v", tt.traits, got, tt.want)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
