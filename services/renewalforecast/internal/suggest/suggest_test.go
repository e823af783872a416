package suggest

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func TestWeights(t *testing.T) {
	for _, tc := range []struct {
		name string
		coef []float64
		want []float64
		err  error
	}{
		{"proportional to the fall in churn log-odds", []float64{-0.03, -0.01}, []float64{75, 25}, nil},
		{"more churn with a higher sub-score: 0", []float64{-0.02, 0.05, -0.02}, []float64{50, 0, 50}, nil},
		{"rounded to 0.1", []float64{-1, -1, -1}, []float64{33.3, 33.3, 33.3}, nil},
		{"a share under 0.05 rounds to 0", []float64{-1, -0.0004}, []float64{100, 0}, nil},
		{"no measure lowers churn", []float64{0.01, 0}, nil, ErrNoSignal},
		{"no measures", nil, nil, ErrNoSignal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Weights(tc.coef)
			if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
				t.Errorf("Weights(%v) = %v, %v; want %v, %v", tc.coef, got, err, tc.want, tc.err)
			}
		})
	}
}

// TestSuggest fits a world where churn falls with one measure strongly and
// with one weakly, rises with a third, and a fourth never has data: the
// weights follow the signal and the others are dropped with notes.
func TestSuggest(t *testing.T) {
	points := []*scoringv1.Point{{Value: 0, Score: 0}, {Value: 1, Score: 100}}
	measure := func(name string, w float64) *scoringv1.Measure {
		return &scoringv1.Measure{Name: name, Kind: scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_SEAT_RATIO, Points: points, Weight: w}
	}
	base := &scoringv1.Scorecard{
		Version:  7,
		Name:     "base",
		Measures: []*scoringv1.Measure{measure("strong", 10), measure("weak", 40), measure("backwards", 40), measure("empty", 10)},
		Bands:    &scoringv1.Bands{RedBelow: 30, GreenFrom: 60},
		StageOverrides: []*scoringv1.StageOverride{{
			Stage:   accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING,
			Weights: map[string]float64{"strong": 5, "backwards": 0},
		}},
	}
	r := rand.New(rand.NewPCG(1, 2))
	var samples []Sample
	for range 400 {
		strong, weak, backwards := 100*r.Float64(), 100*r.Float64(), 100*r.Float64()
		// Churn log-odds fall 0.08 per strong point and 0.02 per weak one,
		// and rise 0.015 per backwards one.
		logit := 2.5 - 0.08*strong + 0.02*(50-weak) + 0.015*backwards
		samples = append(samples, Sample{
			SubScores: []float64{strong, weak, backwards, math.NaN()},
			Churned:   r.Float64() < 1/(1+math.Exp(-logit)),
		})
	}
	res, err := Suggest(base, samples)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]float64{}
	var sum float64
	for _, m := range res.Measures {
		byName[m.GetName()] = m.GetWeight()
		sum += m.GetWeight()
		t.Logf("%-9s coef %+.4f/point (%+.2f/sd), %d with data: weight %v → %v", m.GetName(), m.GetCoefficient(),
			m.GetStandardizedCoefficient(), m.GetRenewalsWithData(), m.GetBaseWeight(), m.GetWeight())
	}
	if math.Abs(sum-100) > 0.2 {
		t.Errorf("weights sum to %v, want 100", sum)
	}
	if !(byName["strong"] > 2*byName["weak"] && byName["weak"] > 0) {
		t.Errorf("weights %v: want strong > 2 × weak > 0", byName)
	}
	if byName["backwards"] != 0 || byName["empty"] != 0 {
		t.Errorf("weights %v: want backwards and empty at 0", byName)
	}
	var names []string
	for _, m := range res.Scorecard.GetMeasures() {
		names = append(names, m.GetName())
	}
	if !slices.Equal(names, []string{"strong", "weak"}) {
		t.Errorf("candidate measures %v, want the two with positive weights", names)
	}
	if w := res.Scorecard.GetStageOverrides()[0].GetWeights(); len(w) != 1 || w["strong"] != 5 {
		t.Errorf("stage override weights %v: want the dropped measure gone, the others as they were", w)
	}
	if res.Scorecard.GetVersion() != 0 || base.GetMeasures()[0].GetWeight() != 10 || base.GetBands().GetRedBelow() != 30 {
		t.Errorf("candidate version %d, base weight %v, base bands %v: want no version, the base untouched",
			res.Scorecard.GetVersion(), base.GetMeasures()[0].GetWeight(), base.GetBands())
	}
	if b := res.Scorecard.GetBands(); b.GetRedBelow() > b.GetGreenFrom() {
		t.Errorf("candidate bands %v", b)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{"backwards dropped: a higher sub-score went with more churn", "empty dropped: no fitted renewal had data", "bands moved to red below"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q: want %q", notes, want)
		}
	}
}

func TestSuggestNeedsBothOutcomes(t *testing.T) {
	base := &scoringv1.Scorecard{Measures: []*scoringv1.Measure{{Name: "m", Weight: 1}}}
	samples := []Sample{{SubScores: []float64{10}, Churned: true}, {SubScores: []float64{20}, Churned: true}}
	if _, err := Suggest(base, samples); err == nil || !strings.Contains(err.Error(), "want both outcomes") {
		t.Errorf("err %v: want both outcomes asked for", err)
	}
}

// TestBandsKeepTheShares checks the candidate's cut points: new weights move
// every score, and the candidate flags as many fitted renewals red and green
// as the base did.
func TestBandsKeepTheShares(t *testing.T) {
	base := &scoringv1.Scorecard{
		Measures: []*scoringv1.Measure{
			{Name: "a", Kind: scoringv1.MeasureKind_MEASURE_KIND_RECENCY, Weight: 50, Scale: scoringv1.Scale_SCALE_TENANT_RANK},
			{Name: "b", Kind: scoringv1.MeasureKind_MEASURE_KIND_ACTIVE_WEEKS, Weight: 50, Scale: scoringv1.Scale_SCALE_TENANT_RANK},
		},
		Bands: &scoringv1.Bands{RedBelow: 40, GreenFrom: 70},
	}
	var x [][]float64
	for i := range 100 {
		x = append(x, []float64{float64(i), float64(99 - i%10*10)})
	}
	candidate := proto.CloneOf(base)
	weights := []float64{90, 10}
	note := bands(candidate, base, x, weights)
	count := func(w []float64, b *scoringv1.Bands) (red, green int) {
		for _, row := range x {
			switch s := score(row, w); {
			case s < b.GetRedBelow():
				red++
			case s >= b.GetGreenFrom():
				green++
			}
		}
		return red, green
	}
	br, bg := count([]float64{50, 50}, base.GetBands())
	cr, cg := count(weights, candidate.GetBands())
	if br != cr || bg != cg {
		t.Fatalf("base flags %d red and %d green, the candidate %d and %d (%v): %s", br, bg, cr, cg, candidate.GetBands(), note)
	}
	if br == 0 || bg == 0 || proto.Equal(base.GetBands(), candidate.GetBands()) {
		t.Fatalf("a test that proves nothing: %d red, %d green, bands %v", br, bg, candidate.GetBands())
	}
}
