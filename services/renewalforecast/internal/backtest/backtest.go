// Package backtest measures how well health scores predicted renewals: for
// each recorded renewal, the score the account had some days before it
// against whether it churned.
//
//   - ROC AUC of the score as a churn predictor (a lower score, more risk):
//     the chance that a random churned account scored below a random renewed
//     one, ties counting half.
//   - Precision and recall of "red at the horizon" as the prediction
//     "will churn".
//   - Lift by band: each band's churn rate over the overall churn rate.
//   - Lead time: days from an account's first red score in the term to its
//     churn, the warning a CSM had; median over the churned accounts that
//     turned red, with a count of those that never did.
package backtest

import (
	"slices"

	"gonum.org/v1/gonum/integrate"
	"gonum.org/v1/gonum/stat"

	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Sample is one recorded renewal with the account's score at the horizon.
type Sample struct {
	Score   float64
	Band    scoringv1.Band
	Churned bool
	// FlaggedRed is set for a churned account that turned red before its
	// churn; LeadDays is then the days from its first red score to the churn.
	FlaggedRed bool
	LeadDays   float64
}

// Evaluate computes the evaluation of samples; unscored is the number of
// renewals left out for want of a score at the horizon.
func Evaluate(samples []Sample, unscored int) *forecastv1.ScorecardEvaluation {
	ev := &forecastv1.ScorecardEvaluation{Renewals: int32(len(samples)), Unscored: int32(unscored)}
	var red, redChurned int
	var leads []float64
	lift := map[scoringv1.Band]*forecastv1.BandLift{}
	for _, s := range samples {
		l, ok := lift[s.Band]
		if !ok {
			l = &forecastv1.BandLift{Band: s.Band}
			lift[s.Band] = l
		}
		l.Renewals++
		if s.Band == scoringv1.Band_BAND_RED {
			red++
		}
		if !s.Churned {
			continue
		}
		ev.Churned++
		l.Churned++
		if s.Band == scoringv1.Band_BAND_RED {
			redChurned++
		}
		if s.FlaggedRed {
			ev.ChurnedFlaggedRed++
			leads = append(leads, s.LeadDays)
		} else {
			ev.ChurnedNeverRed++
		}
	}
	ev.RocAuc = auc(samples)
	ev.RedPrecision = ratio(redChurned, red)
	ev.RedRecall = ratio(redChurned, int(ev.Churned))
	overall := ratio(int(ev.Churned), len(samples))
	for _, b := range []scoringv1.Band{scoringv1.Band_BAND_RED, scoringv1.Band_BAND_YELLOW, scoringv1.Band_BAND_GREEN} {
		if l, ok := lift[b]; ok {
			l.ChurnRate = ratio(int(l.Churned), int(l.Renewals))
			if overall > 0 {
				l.Lift = l.ChurnRate / overall
			}
			ev.BandLift = append(ev.BandLift, l)
		}
	}
	if n := len(leads); n > 0 {
		// The conventional median: gonum's quantiles pick or weight sample
		// points differently.
		slices.Sort(leads)
		ev.MedianLeadTimeDays = (leads[(n-1)/2] + leads[n/2]) / 2
	}
	return ev
}

// auc is the area under the ROC curve of risk (100 - score) against churn;
// 0 when either class is missing.
func auc(samples []Sample) float64 {
	risk := make([]float64, len(samples))
	churned := make([]bool, len(samples))
	var pos int
	for i, s := range samples {
		risk[i], churned[i] = 100-s.Score, s.Churned
		if s.Churned {
			pos++
		}
	}
	if pos == 0 || pos == len(samples) {
		return 0
	}
	stat.SortWeightedLabeled(risk, churned, nil)
	tpr, fpr, _ := stat.ROC(nil, risk, churned, nil)
	return integrate.Trapezoidal(fpr, tpr)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
