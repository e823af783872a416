package main

import (
	"fmt"
	"math"
	"slices"

	"github.com/lodestar-cs/lodestar/internal/scorecore/fit"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/tools/predict/internal/roc"
)

// account is one account of a data set: its outcome, its single signals and
// its score.
type account struct {
	ID string
	// Positive is the outcome to rank first: churned, or a bad fate.
	Positive bool
	// DaysSinceLast is whole days from the day of its last event to the
	// last day of history; Events its number of events.
	DaysSinceLast, Events float64
	// Score is its score of the last day of history; nil when it has none.
	Score *scoringv1.HealthScore
}

// scoreSignal is a risk read from an account's score: higher ranks first.
type scoreSignal struct {
	Name string
	Risk func(*scoringv1.HealthScore) float64
}

// defaultScore is the score itself, a lower score riskier.
var defaultScore = scoreSignal{Name: "default scorecard", Risk: func(s *scoringv1.HealthScore) float64 { return -s.GetScore() }}

// Populations of the rows.
const (
	popAll           = "all accounts"
	popScored        = "scored accounts"
	popUnscoredFirst = "all, unscored ranked riskiest"
	popUnscoredLast  = "all, unscored ranked safest"
)

// Row is one signal's ranking quality on one population.
type Row struct {
	Signal     string   `json:"signal"`
	Population string   `json:"population"`
	AUC        *float64 `json:"auc"` // null when a class is missing
	N          int      `json:"n"`
	Positives  int      `json:"positives"`
}

// baselineNames name a data set's single signals.
type baselineNames struct{ days, events string }

// evaluate ranks the accounts by each baseline and signal: the baselines over
// all accounts and the scored ones, the signals over the scored ones and,
// when some accounts have no score, over all with the unscored ranked first
// and last.
func evaluate(accts []account, names baselineNames, signals ...scoreSignal) []Row {
	days := func(a account) float64 { return a.DaysSinceLast }
	fewer := func(a account) float64 { return -a.Events }
	var scored []account
	for _, a := range accts {
		if a.Score != nil {
			scored = append(scored, a)
		}
	}
	rows := []Row{
		row(names.days, popAll, accts, days),
		row(names.events, popAll, accts, fewer),
	}
	if len(scored) == len(accts) {
		for _, s := range signals {
			rows = append(rows, row(s.Name, popAll, accts, func(a account) float64 { return s.Risk(a.Score) }))
		}
		return rows
	}
	rows = append(rows, row(names.days, popScored, scored, days), row(names.events, popScored, scored, fewer))
	for _, s := range signals {
		rows = append(rows, row(s.Name, popScored, scored, func(a account) float64 { return s.Risk(a.Score) }))
	}
	for _, s := range signals {
		for _, pop := range []struct {
			name     string
			unscored float64
		}{{popUnscoredFirst, math.Inf(1)}, {popUnscoredLast, math.Inf(-1)}} {
			rows = append(rows, row(s.Name, pop.name, accts, func(a account) float64 {
				if a.Score == nil {
					return pop.unscored
				}
				return s.Risk(a.Score)
			}))
		}
	}
	return rows
}

func row(name, population string, accts []account, risk func(account) float64) Row {
	r := Row{Signal: name, Population: population, N: len(accts)}
	risks := make([]float64, len(accts))
	positive := make([]bool, len(accts))
	for i, a := range accts {
		risks[i], positive[i] = risk(a), a.Positive
		if a.Positive {
			r.Positives++
		}
	}
	if v := roc.AUC(risks, positive); !math.IsNaN(v) {
		r.AUC = &v
	}
	return r
}

// Distribution describes the scores of the scored accounts.
type Distribution struct {
	Scored int `json:"scored"`
	// Distinct counts the different score values.
	Distinct int `json:"distinct"`
	// Red, Yellow and Green are the shares of the scored accounts in each band.
	Red    float64 `json:"red"`
	Yellow float64 `json:"yellow"`
	Green  float64 `json:"green"`
	// Quantiles of the score (nearest rank): min, p10, median, p90, max.
	Quantiles [5]float64 `json:"quantiles"`
}

func distribution(accts []account) Distribution {
	var d Distribution
	var scores []float64
	for _, a := range accts {
		if a.Score == nil {
			continue
		}
		scores = append(scores, a.Score.GetScore())
		switch a.Score.GetBand() {
		case scoringv1.Band_BAND_RED:
			d.Red++
		case scoringv1.Band_BAND_YELLOW:
			d.Yellow++
		case scoringv1.Band_BAND_GREEN:
			d.Green++
		}
	}
	d.Scored = len(scores)
	if d.Scored == 0 {
		return d
	}
	d.Red, d.Yellow, d.Green = d.Red/float64(d.Scored), d.Yellow/float64(d.Scored), d.Green/float64(d.Scored)
	slices.Sort(scores)
	d.Distinct = len(slices.Compact(slices.Clone(scores)))
	for i, q := range []float64{0, 0.1, 0.5, 0.9, 1} {
		d.Quantiles[i] = scores[int(math.Round(q*float64(len(scores)-1)))]
	}
	return d
}

// measureNames lists the measures of the scores, sorted: the features of a
// learned scorecard.
func measureNames(accts []account) []string {
	var names []string
	for _, a := range accts {
		for _, m := range a.Score.GetMeasures() {
			if !slices.Contains(names, m.GetName()) {
				names = append(names, m.GetName())
			}
		}
	}
	slices.Sort(names)
	return names
}

// features are a score's measures' sub-scores in the order of names; NaN
// for a measure without data.
func features(s *scoringv1.HealthScore, names []string) []float64 {
	x := make([]float64, len(names))
	for i := range x {
		x[i] = math.NaN()
	}
	for _, m := range s.GetMeasures() {
		if i := slices.Index(names, m.GetName()); i >= 0 && m.GetHasData() {
			x[i] = m.GetSubScore()
		}
	}
	return x
}

// Coefficient is one measure's weight in a learned scorecard.
type Coefficient struct {
	Measure string `json:"measure"`
	// PerSD is the change of the log-odds of churn per standard deviation of
	// the sub-score; PerPoint per sub-score point.
	PerSD    float64 `json:"per_sd"`
	PerPoint float64 `json:"per_point"`
	// Mean is the training mean, taken for a measure without data.
	Mean float64 `json:"mean"`
}

// learned is a scorecard fitted to outcomes: a logistic regression of the
// outcome on the measures' sub-scores.
type learned struct {
	names []string
	model *fit.Model
}

// learn fits the learned scorecard to the scored accounts.
func learn(accts []account, lambda float64) (*learned, error) {
	var x [][]float64
	var y []bool
	names := measureNames(accts)
	for _, a := range accts {
		if a.Score != nil {
			x, y = append(x, features(a.Score, names)), append(y, a.Positive)
		}
	}
	m, err := fit.Logistic(x, y, lambda)
	if err != nil {
		return nil, fmt.Errorf("fit the learned scorecard on %d accounts: %w", len(x), err)
	}
	return &learned{names: names, model: m}, nil
}

func (l *learned) signal() scoreSignal {
	return scoreSignal{Name: "learned scorecard", Risk: func(s *scoringv1.HealthScore) float64 {
		return l.model.Logit(features(s, l.names))
	}}
}

func (l *learned) coefficients() []Coefficient {
	raw, _ := l.model.Raw()
	out := make([]Coefficient, len(l.names))
	for i, name := range l.names {
		out[i] = Coefficient{Measure: name, PerSD: l.model.Coef[i], PerPoint: raw[i], Mean: l.model.Mean[i]}
	}
	return out
}

// MeasureSummary describes one measure over the scored accounts: how many
// have data for it and how spread its values are.
type MeasureSummary struct {
	Measure  string  `json:"measure"`
	WithData int     `json:"with_data"`
	Distinct int     `json:"distinct_sub_scores"`
	MinRaw   float64 `json:"min_raw"`
	MaxRaw   float64 `json:"max_raw"`
	MeanSub  float64 `json:"mean_sub_score"`
}

func measureSummaries(accts []account) []MeasureSummary {
	names := measureNames(accts)
	out := make([]MeasureSummary, len(names))
	subs := make([][]float64, len(names))
	for i, name := range names {
		out[i] = MeasureSummary{Measure: name, MinRaw: math.Inf(1), MaxRaw: math.Inf(-1)}
	}
	for _, a := range accts {
		for _, m := range a.Score.GetMeasures() {
			i := slices.Index(names, m.GetName())
			if !m.GetHasData() {
				continue
			}
			s := &out[i]
			s.WithData++
			s.MinRaw, s.MaxRaw = math.Min(s.MinRaw, m.GetRawValue()), math.Max(s.MaxRaw, m.GetRawValue())
			s.MeanSub += m.GetSubScore()
			subs[i] = append(subs[i], m.GetSubScore())
		}
	}
	for i := range out {
		if out[i].WithData == 0 {
			out[i].MinRaw, out[i].MaxRaw = 0, 0
			continue
		}
		out[i].MeanSub /= float64(out[i].WithData)
		slices.Sort(subs[i])
		out[i].Distinct = len(slices.Compact(subs[i]))
	}
	return out
}
