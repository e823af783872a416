// Package suggest learns a scorecard's measure weights from recorded renewal
// outcomes, pure: given each fitted renewal's measure sub-scores some days
// before it and whether it churned, it fits churn to the sub-scores
// (internal/scorecore/fit) and turns the coefficients into weights.
//
// A score is Σ sub-score × weight / Σ weight over the measures with data, so
// a weight is the points of score per sub-score point, up to a common
// factor. The fitted model's log-odds of churn are, up to a constant,
// Σ coef × sub-score: a measure whose higher sub-score lowers the churn
// log-odds by twice as much deserves twice the weight. Hence
// weight = max(0, −coef per sub-score point), normalised to sum 100. A
// measure whose higher sub-score went with more churn gets 0 (a scorecard
// cannot weigh a measure negatively) and is dropped, with a note saying so.
// The cut points are moved so that the candidate flags the same share of the
// fitted renewals red, and the same share green, as the base did: new
// weights change who is red, not how many, so the tenant's alert volume
// stays what it chose. (Keeping the base's cut points could flag no one: new
// weights move every score.)
package suggest

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/scorecore/fit"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Lambda is the L2 penalty of the fit on standardised sub-scores: a few
// dozen renewals cannot support large coefficients, so they are shrunk
// toward "this measure says nothing".
const Lambda = 0.1

// totalWeight is the sum of the candidate's weights.
const totalWeight = 100

// ErrNoSignal means no measure's higher sub-score went with less churn: no
// scorecard of these measures ranks churn.
var ErrNoSignal = errors.New("no measure's higher sub-score went with less churn on the fitted renewals")

// Sample is one fitted renewal: the sub-score of each measure of the base
// scorecard, in its order (NaN where the account had no data for it), and
// whether the account churned.
type Sample struct {
	SubScores []float64
	Churned   bool
}

// Result is a fitted candidate.
type Result struct {
	Scorecard *scoringv1.Scorecard
	Measures  []*forecastv1.MeasureFit
	Notes     []string
}

// Weights turns coefficients per sub-score point into weights: max(0, −c)
// normalised to sum 100, rounded to 0.1 (a weight that rounds to 0 is 0).
// All zero is ErrNoSignal.
func Weights(coef []float64) ([]float64, error) {
	var sum float64
	for _, c := range coef {
		sum += max(0, -c)
	}
	if !(sum > 0) {
		return nil, ErrNoSignal
	}
	w := make([]float64, len(coef))
	for j, c := range coef {
		w[j] = math.Round(max(0, -c)/sum*totalWeight*10) / 10
	}
	return w, nil
}

// Suggest fits the weights of base's measures to samples and returns base
// with them: measures weighted 0 dropped, also from the stage overrides'
// weights. Both outcomes must occur in samples.
func Suggest(base *scoringv1.Scorecard, samples []Sample) (*Result, error) {
	x := make([][]float64, len(samples))
	y := make([]bool, len(samples))
	for i, s := range samples {
		if len(s.SubScores) != len(base.GetMeasures()) {
			return nil, fmt.Errorf("sample %d has %d sub-scores, the scorecard %d measures", i, len(s.SubScores), len(base.GetMeasures()))
		}
		x[i], y[i] = s.SubScores, s.Churned
	}
	m, err := fit.Logistic(x, y, Lambda)
	if err != nil {
		return nil, fmt.Errorf("fit churn to sub-scores: %w", err)
	}
	coef, _ := m.Raw()
	weights, err := Weights(coef)
	if err != nil {
		return nil, err
	}
	res := &Result{Scorecard: proto.CloneOf(base)}
	res.Scorecard.Version, res.Scorecard.UpdateTime = 0, nil
	res.Scorecard.Measures = nil
	dropped := map[string]bool{}
	for j, meas := range base.GetMeasures() {
		withData := 0
		for _, row := range x {
			if !math.IsNaN(row[j]) {
				withData++
			}
		}
		res.Measures = append(res.Measures, &forecastv1.MeasureFit{
			Name:                    meas.GetName(),
			Coefficient:             coef[j],
			StandardizedCoefficient: m.Coef[j],
			RenewalsWithData:        int32(withData),
			BaseWeight:              meas.GetWeight(),
			Weight:                  weights[j],
		})
		switch {
		case weights[j] > 0:
			c := proto.CloneOf(meas)
			c.Weight = weights[j]
			res.Scorecard.Measures = append(res.Scorecard.Measures, c)
			continue
		case withData == 0:
			res.Notes = append(res.Notes, fmt.Sprintf("%s dropped: no fitted renewal had data for it", meas.GetName()))
		case coef[j] > 0:
			res.Notes = append(res.Notes, fmt.Sprintf("%s dropped: a higher sub-score went with more churn (%+.3f log-odds per point), the opposite of what the scorecard assumes", meas.GetName(), coef[j]))
		default:
			res.Notes = append(res.Notes, fmt.Sprintf("%s dropped: its sub-score did not tell churners apart (%+.4f log-odds per point)", meas.GetName(), coef[j]))
		}
		dropped[meas.GetName()] = true
	}
	for _, o := range res.Scorecard.GetStageOverrides() {
		for name := range o.GetWeights() {
			if dropped[name] {
				delete(o.Weights, name)
			}
		}
	}
	res.Notes = append(res.Notes, bands(res.Scorecard, base, x, weights))
	if len(res.Scorecard.GetStageOverrides()) > 0 {
		res.Notes = append(res.Notes, "stage overrides kept as they were (their weights replace the fitted ones in their stage), less the dropped measures")
	}
	if problems := scorecard.Validate(res.Scorecard); len(problems) > 0 {
		return nil, fmt.Errorf("candidate scorecard: %w", scorecard.ProblemsError(problems))
	}
	return res, nil
}

// score is a sample's score under weights: Σ sub-score × weight / Σ weight
// over the measures with data and weight; NaN when none has both.
func score(subs, weights []float64) float64 {
	var sum, total float64
	for j, v := range subs {
		if !math.IsNaN(v) && weights[j] > 0 {
			sum, total = sum+v*weights[j], total+weights[j]
		}
	}
	if total == 0 {
		return math.NaN()
	}
	return sum / total
}

// bands sets the candidate's cut points so that it flags the same shares of
// the fitted renewals red and green as base does, and says so.
func bands(candidate, base *scoringv1.Scorecard, x [][]float64, weights []float64) string {
	baseWeights := make([]float64, len(base.GetMeasures()))
	for j, m := range base.GetMeasures() {
		baseWeights[j] = m.GetWeight()
	}
	redBelow, greenFrom := base.GetBands().GetRedBelow(), base.GetBands().GetGreenFrom()
	var scores []float64
	var red, green int
	for _, row := range x {
		b, c := score(row, baseWeights), score(row, weights)
		if math.IsNaN(b) || math.IsNaN(c) {
			continue
		}
		scores = append(scores, c)
		switch {
		case b < redBelow:
			red++
		case b >= greenFrom:
			green++
		}
	}
	n := len(scores)
	if n == 0 {
		return "bands kept: no fitted renewal was scored by both scorecards"
	}
	slices.Sort(scores)
	// cut is a score with k scores below it: between the k-th and the next.
	cut := func(k int) float64 {
		switch {
		case k <= 0:
			return math.Floor(scores[0]*10) / 10
		case k >= n:
			return math.Min(100, math.Ceil(scores[n-1]*10+1)/10)
		}
		return math.Round((scores[k-1]+scores[k])/2*10) / 10
	}
	r, g := cut(red), cut(n-green)
	if r > g {
		r = g
	}
	candidate.Bands = &scoringv1.Bands{RedBelow: r, GreenFrom: g}
	return fmt.Sprintf("bands moved to red below %.1f and green from %.1f (were %.1f and %.1f): the candidate flags %d of %d fitted renewals red and %d green, as the base did",
		r, g, redBelow, greenFrom, red, n, green)
}
