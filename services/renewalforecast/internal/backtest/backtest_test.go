package backtest

import (
	"math"
	"testing"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

const (
	red    = scoringv1.Band_BAND_RED
	yellow = scoringv1.Band_BAND_YELLOW
	green  = scoringv1.Band_BAND_GREEN
)

// TestEvaluate checks a hand-computed backtest. Churned scored 10, 30, 35;
// renewed 30, 50, 80. AUC by pairs (churned below renewed 1, tie 0.5):
// 10 → 3, 30 → 0.5+1+1, 35 → 0+1+1: 7.5 of 9. Red (below 40) holds four
// renewals, three churned: precision 3/4, recall 3/3, lift 0.75/0.5.
// Leads 40 and 10 days (35 never turned red): median 25.
func TestEvaluate(t *testing.T) {
	samples := []Sample{
		{Score: 10, Band: red, Churned: true, FlaggedRed: true, LeadDays: 40},
		{Score: 30, Band: red, Churned: true, FlaggedRed: true, LeadDays: 10},
		{Score: 35, Band: red, Churned: true},
		{Score: 30, Band: red},
		{Score: 50, Band: yellow},
		{Score: 80, Band: green},
	}
	ev := Evaluate(samples, 2)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"renewals", float64(ev.GetRenewals()), 6},
		{"churned", float64(ev.GetChurned()), 3},
		{"unscored", float64(ev.GetUnscored()), 2},
		{"AUC", ev.GetRocAuc(), 7.5 / 9},
		{"red precision", ev.GetRedPrecision(), 0.75},
		{"red recall", ev.GetRedRecall(), 1},
		{"median lead", ev.GetMedianLeadTimeDays(), 25},
		{"flagged", float64(ev.GetChurnedFlaggedRed()), 2},
		{"never red", float64(ev.GetChurnedNeverRed()), 1},
	} {
		if math.Abs(tc.got-tc.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	wantLift := map[scoringv1.Band][2]float64{red: {0.75, 1.5}, yellow: {0, 0}, green: {0, 0}}
	if len(ev.GetBandLift()) != 3 {
		t.Fatalf("band lift %v", ev.GetBandLift())
	}
	for _, l := range ev.GetBandLift() {
		if w := wantLift[l.GetBand()]; l.GetChurnRate() != w[0] || l.GetLift() != w[1] {
			t.Errorf("%v: churn rate %v lift %v, want %v", l.GetBand(), l.GetChurnRate(), l.GetLift(), w)
		}
	}
}

func TestEvaluateDegenerate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []Sample
		auc     float64
	}{
		{"none", nil, 0},
		{"no churn", []Sample{{Score: 20, Band: red}, {Score: 90, Band: green}}, 0},
		{"perfect", []Sample{{Score: 20, Band: red, Churned: true}, {Score: 90, Band: green}}, 1},
		{"inverted", []Sample{{Score: 90, Band: green, Churned: true}, {Score: 20, Band: red}}, 0},
		{"all tied", []Sample{{Score: 50, Band: yellow, Churned: true}, {Score: 50, Band: yellow}}, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Evaluate(tc.samples, 0).GetRocAuc(); got != tc.auc {
				t.Errorf("AUC %v, want %v", got, tc.auc)
			}
		})
	}
}
