// Package model is the renewal model: the probability that an account renews
// (does not churn) at its next renewal, from its health score, the score's
// trend, stakeholder engagement, lifecycle stage, tier and days to renewal.
//
// It is a logistic regression on a handful of scaled inputs. A default model
// ships with coefficients set by reasoning (see Default), its level taken
// from the tenant's own renewals as soon as there are any (DefaultFor).
// Once a tenant has recorded enough outcomes, Fit learns the tenant's own
// coefficients by maximum a posteriori estimation with a Gaussian prior
// centred on the default ones (L2 regularisation towards them, so that a
// small history moves the model only as far as it has evidence for; tier
// held tightest, around no effect), and calibrates the result with Platt
// scaling fitted on cross-validated, held-out predictions.
//
// Either carries its own uncertainty (Cov, LevelSD), which portfolio ranges
// add to the randomness of outcomes.
//
// A probability is explained like a health score: each input's part in the
// log-odds against its reference value, and the percentage points the
// probability would move were the input at its reference.
package model

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Inputs are what the model reads of an account at one time.
type Inputs struct {
	// HasScore is false for an account with no health score yet: the score
	// and its trend then count as neutral.
	HasScore bool
	// Score is the health score, 0-100, and Band its band.
	Score float64
	Band  scoringv1.Band
	// Trend is the score's change over the last 30 days, in points.
	Trend float64
	// Stakeholders is the share of S / A level stakeholders active (0-1),
	// when known.
	HasStakeholders bool
	Stakeholders    float64
	Stage           accountv1.LifecycleStage
	Tier            accountv1.Tier
	// DaysToRenewal may be negative: the date passed, no outcome yet.
	DaysToRenewal float64
}

// The model's features, in coefficient order. Each is scaled so that one
// unit is a large but ordinary difference between accounts.
const (
	fIntercept = iota
	// (score - 50) / 25: one unit is the width of the yellow band.
	fHealth
	// 30-day score change / 10 points, clamped to ±3.
	fTrend
	// (stakeholder share - 0.5) * 2, in [-1, 1]; 0 when unknown.
	fStakeholders
	// 1 while onboarding: first value not reached yet.
	fOnboarding
	fBenchmark
	fGrowth
	// Closeness of the renewal: 1 - days/365, in [0, 1].
	fNear
	// fHealth x fNear: the score says more the closer the decision is.
	fHealthNear
	numFeatures
)

// featureName names a feature, as the API lists coefficients.
func featureName(i int) string {
	return [numFeatures]string{
		"intercept", "health_score", "score_trend", "stakeholders", "onboarding",
		"benchmark_tier", "growth_tier", "renewal_near", "health_near_renewal",
	}[i]
}

// features turns inputs into the model's feature vector.
func features(in Inputs) [numFeatures]float64 {
	var x [numFeatures]float64
	x[fIntercept] = 1
	if in.HasScore {
		x[fHealth] = (in.Score - 50) / 25
		x[fTrend] = math.Max(-3, math.Min(3, in.Trend/10))
	}
	if in.HasStakeholders {
		x[fStakeholders] = (in.Stakeholders - 0.5) * 2
	}
	if in.Stage == accountv1.LifecycleStage_LIFECYCLE_STAGE_ONBOARDING {
		x[fOnboarding] = 1
	}
	switch in.Tier {
	case accountv1.Tier_TIER_BENCHMARK:
		x[fBenchmark] = 1
	case accountv1.Tier_TIER_GROWTH:
		x[fGrowth] = 1
	}
	x[fNear] = math.Max(0, math.Min(1, 1-in.DaysToRenewal/365))
	x[fHealthNear] = x[fHealth] * x[fNear]
	return x
}

// Model is a renewal model.
type Model struct {
	Kind forecastv1.ModelKind
	// Coef are the coefficients on the log-odds scale, by feature.
	Coef [numFeatures]float64
	// Slope and Intercept are the Platt calibration of the log-odds.
	Slope, Intercept float64
	// Outcomes and Churned count the renewals a fitted model learnt from.
	Outcomes, Churned int
	// Brier is the out-of-fold Brier score of a fitted model.
	Brier float64
	// Cov is the approximate posterior covariance of Coef on the calibrated
	// log-odds scale (Laplace: the inverse of the fit's information). The
	// default model is uncertain in its level only.
	Cov [numFeatures][numFeatures]float64
}

// Default is the model of a tenant with too few recorded outcomes. Its
// coefficients, and why:
//
//   - intercept 1.7: an account scoring 50, steady, far from renewal renews
//     with p ≈ 0.85, about the logo retention of a typical B2B SaaS book
//     (10-15% annual logo churn).
//   - health_score 1.0 per 25 points: the score is built to predict renewal;
//     a green 90 (p ≈ 0.96) against a red 20 (p ≈ 0.62) far from renewal.
//   - health_near_renewal 0.5: at the renewal date the score weighs 1.5 per
//     25 points, so a red 20 at the decision renews about half the time;
//     further out there is time to recover.
//   - score_trend 0.3 per 10 points over 30 days: a falling score is the
//     classic early warning, worth on top of the level.
//   - stakeholders 0.5 at all (or none) of S / A stakeholders active:
//     usage without decision makers overstates health.
//   - onboarding -0.5: an account that has not reached first value has not
//     yet shown the product works for it.
//   - benchmark_tier 0, growth_tier 0: a tier is a label; whether its
//     accounts renew more is for the tenant's outcomes to show (the fit's
//     prior holds it near 0 until they do).
//   - renewal_near 0: the date alone says nothing; it acts through the score.
func Default() *Model {
	return &Model{
		Kind:  forecastv1.ModelKind_MODEL_KIND_DEFAULT,
		Coef:  [numFeatures]float64{1.7, 1.0, 0.3, 0.5, -0.5, 0, 0, 0, 0.5},
		Slope: 1,
		Cov:   levelOnly(priorSDLevel * priorSDLevel),
	}
}

// priorSDLevel is how far, in log-odds, a tenant's level may lie from the
// default's before any of its outcomes are seen: one standard deviation
// spans base renewal rates of about 0.68 to 0.94 around the default's 0.85,
// the spread of B2B books. Near p = 0.85 the prior weighs as much as
// 1/(sd² p(1-p)) ≈ 8 recorded renewals: a handful of outcomes moves the
// level part of the way, a few dozen decide it.
const priorSDLevel = 1.0

func levelOnly(v float64) [numFeatures][numFeatures]float64 {
	var c [numFeatures][numFeatures]float64
	c[fIntercept][fIntercept] = v
	return c
}

// DefaultFor is the default model with its level taken from a tenant's
// recorded outcomes, for a tenant with too few of them to fit: an empirical
// Bayes estimate of a shift of the default's intercept, under the prior
// N(0, priorSDLevel²), from the outcomes' examples scored by the default
// (maximum a posteriori by Newton's method; the shift's posterior variance
// is the inverse of its information). The slopes stay the default's. With
// no examples it is Default.
func DefaultFor(examples []Example) *Model {
	m := Default()
	outcomes, churned := map[uint64]bool{}, map[uint64]bool{}
	z := make([]float64, len(examples))
	for i, e := range examples {
		z[i] = m.raw(features(e.Inputs))
		outcomes[e.Outcome] = true
		if !e.Renewed {
			churned[e.Outcome] = true
		}
	}
	prec := 1 / (priorSDLevel * priorSDLevel)
	var shift, info float64
	// The log posterior is concave in the shift: Newton's method converges
	// from 0 in a few steps; each step is capped so that a lopsided start
	// (every outcome the same) cannot overshoot.
	for range 100 {
		g, h := -shift*prec, prec
		for i, e := range examples {
			q := sigmoid(z[i] + shift)
			g += e.Weight * (b2f(e.Renewed) - q)
			h += e.Weight * q * (1 - q)
		}
		step := max(-1, min(1, g/h))
		shift, info = shift+step, h
		if math.Abs(step) < 1e-10 {
			break
		}
	}
	m.Coef[fIntercept] += shift
	m.Cov = levelOnly(1 / info)
	m.Outcomes, m.Churned = len(outcomes), len(churned)
	return m
}

// LevelSD is the model's own uncertainty about a book of renewals, as the
// standard deviation, in log-odds, of one shift common to all of them: the
// shift that moves the book's expected renewals as much as the uncertainty
// of the coefficients does (delta method: the expected renewals' gradient
// with respect to the coefficients, g = Σ p(1-p) x, gives a variance g'Cov g,
// and a common shift s moves them by s Σ p(1-p)). A portfolio simulation
// draws it once per draw, before the outcomes.
func (m *Model) LevelSD(book []Inputs) float64 {
	var g [numFeatures]float64
	var slope float64
	for _, in := range book {
		x := features(in)
		p := m.Probability(in)
		v := p * (1 - p)
		for j := range g {
			g[j] += v * x[j]
		}
		slope += v
	}
	if slope == 0 {
		return 0
	}
	var variance float64
	for j := range g {
		for k := range g {
			variance += g[j] * m.Cov[j][k] * g[k]
		}
	}
	return math.Sqrt(max(0, variance)) / slope
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// raw is the uncalibrated log-odds of x.
func (m *Model) raw(x [numFeatures]float64) float64 {
	z := 0.0
	for i, c := range m.Coef {
		z += c * x[i]
	}
	return z
}

// Probability is the calibrated probability that an account with in renews.
func (m *Model) Probability(in Inputs) float64 {
	return sigmoid(m.Slope*m.raw(features(in)) + m.Intercept)
}

// Proto describes the model for the API.
func (m *Model) Proto() *forecastv1.Model {
	out := &forecastv1.Model{
		Kind:                 m.Kind,
		Outcomes:             int32(m.Outcomes),
		Churned:              int32(m.Churned),
		BrierScore:           m.Brier,
		CalibrationSlope:     m.Slope,
		CalibrationIntercept: m.Intercept,
	}
	for i, c := range m.Coef {
		out.Coefficients = append(out.Coefficients, &forecastv1.Coefficient{Name: featureName(i), Value: c})
	}
	return out
}

// factor groups the features one input drives.
type factor struct {
	name     string
	features []int
}

// factors are the explained inputs. The score's interaction with the
// renewal's closeness belongs to the score: it is how much the score says.
func factors() []factor {
	return []factor{
		{"health_score", []int{fHealth, fHealthNear}},
		{"score_trend", []int{fTrend}},
		{"stakeholders", []int{fStakeholders}},
		{"lifecycle_stage", []int{fOnboarding}},
		{"tier", []int{fBenchmark, fGrowth}},
		{"days_to_renewal", []int{fNear}},
	}
}

// Explain returns each input's part in the probability, largest effect
// first (inputs at their reference value are left out), and a one-line
// summary.
func (m *Model) Explain(in Inputs) ([]*forecastv1.Factor, string) {
	x := features(in)
	z := m.Slope*m.raw(x) + m.Intercept
	p := sigmoid(z)
	var out []*forecastv1.Factor
	for _, f := range factors() {
		part := 0.0
		for _, i := range f.features {
			part += m.Slope * m.Coef[i] * x[i]
		}
		if math.Abs(part) < 1e-9 {
			continue
		}
		out = append(out, &forecastv1.Factor{
			Name:    f.name,
			Detail:  detail(f.name, in),
			LogOdds: part,
			Points:  100 * (p - sigmoid(z-part)),
		})
	}
	// By log-odds, which add up, rather than points, which saturate near 0
	// and 1 where every factor's points shrink.
	slices.SortStableFunc(out, func(a, b *forecastv1.Factor) int {
		return cmp.Compare(math.Abs(b.GetLogOdds()), math.Abs(a.GetLogOdds()))
	})
	return out, summary(p, out)
}

func detail(name string, in Inputs) string {
	switch name {
	case "health_score":
		if !in.HasScore {
			return "no score yet"
		}
		return fmt.Sprintf("%.0f (%s)", in.Score, strings.ToLower(strings.TrimPrefix(in.Band.String(), "BAND_")))
	case "score_trend":
		return fmt.Sprintf("%+.1f points in 30 days", in.Trend)
	case "stakeholders":
		return fmt.Sprintf("%.0f%% of S/A stakeholders active", in.Stakeholders*100)
	case "lifecycle_stage":
		return "onboarding: first value not reached yet"
	case "tier":
		return strings.ToLower(strings.TrimPrefix(in.Tier.String(), "TIER_"))
	case "days_to_renewal":
		return fmt.Sprintf("%.0f days to renewal", in.DaysToRenewal)
	}
	return ""
}

// summary says the probability and the largest factors on each side.
func summary(p float64, fs []*forecastv1.Factor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f%% likely to renew", p*100)
	for _, side := range []struct {
		word string
		up   bool
	}{{"lowered", false}, {"raised", true}} {
		var parts []string
		for _, f := range fs {
			if (f.GetPoints() > 0) == side.up && math.Abs(f.GetPoints()) >= 0.5 && len(parts) < 2 {
				parts = append(parts, fmt.Sprintf("%s %s (%+.0f pts)", strings.ReplaceAll(f.GetName(), "_", " "), f.GetDetail(), f.GetPoints()))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "; %s by %s", side.word, strings.Join(parts, ", "))
		}
	}
	return b.String()
}
