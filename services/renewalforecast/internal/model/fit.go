package model

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"

	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
)

// Example is one training example: an account's inputs some days before a
// recorded renewal, and whether it renewed.
type Example struct {
	Inputs  Inputs
	Renewed bool
	// Weight of the example. An outcome seen at several horizons splits a
	// weight of 1 over them, so that every outcome counts once.
	Weight float64
	// Outcome identifies the renewal (a hash); its examples share a fold.
	Outcome uint64
}

// ErrTooFew means the examples cannot support a fit: the default model stands.
var ErrTooFew = errors.New("too few recorded outcomes to fit")

// Fitting constants.
const (
	// MinPerClass is the least number of churned and of renewed outcomes a
	// fit needs: fewer churns than this cannot place the slope of anything.
	MinPerClass = 10
	// folds of the cross-fitting that feeds the calibration.
	folds = 5
	// Prior standard deviations, in log-odds per feature unit. The intercept
	// is loose, as tenants' base churn rates differ widely; the slopes are
	// held within about one unit of the default's reasoning until the data
	// says otherwise. Tier is held tighter, around no effect (the default's
	// 0): a tier is a label, not a behaviour, and a few accounts of a tier
	// that happened to renew must not become a rule. At 0.25 a tier moving
	// the odds of renewal by more than a factor of 1.65 (2 sd) needs strong
	// evidence: on 300 outcomes a benchmark tier (30 accounts, a standard
	// error near 0.5) keeps about a fifth of its raw estimate.
	priorSDIntercept = 2.5
	priorSDSlope     = 1.0
	priorSDTier      = 0.25
	// The Platt calibration's prior is weak: centred on no correction.
	priorSDCalibration = 10.0
)

// Fit learns a tenant's model from examples: regularised logistic
// regression, calibrated by Platt scaling on out-of-fold predictions. It
// returns ErrTooFew below minOutcomes distinct outcomes or MinPerClass of
// either class.
func Fit(examples []Example, minOutcomes int) (*Model, error) {
	outcomes, churned := map[uint64]bool{}, map[uint64]bool{}
	for _, e := range examples {
		outcomes[e.Outcome] = true
		if !e.Renewed {
			churned[e.Outcome] = true
		}
	}
	if n, c := len(outcomes), len(churned); n < minOutcomes || c < MinPerClass || n-c < MinPerClass {
		return nil, fmt.Errorf("%w: %d outcomes (%d churned); need %d with at least %d of each kind",
			ErrTooFew, n, c, minOutcomes, MinPerClass)
	}
	x := make([][]float64, len(examples))
	y := make([]bool, len(examples))
	w := make([]float64, len(examples))
	for i, e := range examples {
		f := features(e.Inputs)
		x[i], y[i], w[i] = f[:], e.Renewed, e.Weight
	}
	mean := Default().Coef[:]
	sd := make([]float64, numFeatures)
	for j := range sd {
		sd[j] = priorSDSlope
	}
	sd[fIntercept] = priorSDIntercept
	sd[fBenchmark], sd[fGrowth] = priorSDTier, priorSDTier

	// Out-of-fold log-odds: each example scored by a fit that never saw its outcome.
	z := make([]float64, len(examples))
	for k := range uint64(folds) {
		var tx [][]float64
		var ty []bool
		var tw []float64
		for i, e := range examples {
			if e.Outcome%folds != k {
				tx, ty, tw = append(tx, x[i]), append(ty, y[i]), append(tw, w[i])
			}
		}
		b, err := logistic(tx, ty, tw, mean, sd)
		if err != nil {
			return nil, fmt.Errorf("fit fold %d: %w", k, err)
		}
		for i, e := range examples {
			if e.Outcome%folds == k {
				z[i] = floats.Dot(b, x[i])
			}
		}
	}
	zx := make([][]float64, len(z))
	for i := range z {
		zx[i] = []float64{z[i], 1}
	}
	platt, err := logistic(zx, y, w, []float64{1, 0}, []float64{priorSDCalibration, priorSDCalibration})
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	all, err := logistic(x, y, w, mean, sd)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	m := &Model{
		Kind:      forecastv1.ModelKind_MODEL_KIND_FITTED,
		Slope:     platt[0],
		Intercept: platt[1],
		Outcomes:  len(outcomes),
		Churned:   len(churned),
	}
	copy(m.Coef[:], all)
	cov, err := posteriorCov(x, w, all, sd)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	// The calibration scales the log-odds, and with them their uncertainty.
	for j := range numFeatures {
		for k := range numFeatures {
			m.Cov[j][k] = m.Slope * m.Slope * cov.At(j, k)
		}
	}
	var sq, sw float64
	for i := range z {
		d := sigmoid(m.Slope*z[i]+m.Intercept) - b2f(y[i])
		sq += w[i] * d * d
		sw += w[i]
	}
	m.Brier = sq / sw
	return m, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// softplus is log(1 + e^z) without overflow.
func softplus(z float64) float64 { return math.Max(z, 0) + math.Log1p(math.Exp(-math.Abs(z))) }

// logistic fits a weighted logistic regression of y on x by maximum a
// posteriori estimation under independent Gaussian priors N(mean, sd²) on
// the coefficients: minimising the penalised negative log-likelihood, a
// convex function, with Newton's method started at the prior mean.
func logistic(x [][]float64, y []bool, w, mean, sd []float64) ([]float64, error) {
	// The objective is scaled to the mean loss, so that one gradient
	// threshold suits any number of examples: at the scale of the summed
	// loss, float precision stops the line search before it.
	scale := 1 / floats.Sum(w)
	p := optimize.Problem{
		Func: func(b []float64) float64 {
			f := 0.0
			for i, xi := range x {
				z := floats.Dot(b, xi)
				f += w[i] * (softplus(z) - b2f(y[i])*z)
			}
			for j := range b {
				d := (b[j] - mean[j]) / sd[j]
				f += d * d / 2
			}
			return f * scale
		},
		Grad: func(g, b []float64) {
			for j := range g {
				g[j] = (b[j] - mean[j]) / (sd[j] * sd[j])
			}
			for i, xi := range x {
				floats.AddScaled(g, w[i]*(sigmoid(floats.Dot(b, xi))-b2f(y[i])), xi)
			}
			floats.Scale(scale, g)
		},
		Hess: func(h *mat.SymDense, b []float64) {
			d := len(b)
			for j := range d {
				for k := j; k < d; k++ {
					h.SetSym(j, k, 0)
				}
				h.SetSym(j, j, scale/(sd[j]*sd[j]))
			}
			for i, xi := range x {
				q := sigmoid(floats.Dot(b, xi))
				v := scale * w[i] * q * (1 - q)
				for j := range d {
					for k := j; k < d; k++ {
						h.SetSym(j, k, h.At(j, k)+v*xi[j]*xi[k])
					}
				}
			}
		},
	}
	res, err := optimize.Minimize(p, slices.Clone(mean), &optimize.Settings{GradientThreshold: 1e-9}, &optimize.Newton{})
	// Near the optimum of a large sample, float precision can stop the line
	// search short of the threshold: a point whose gradient is a thousand
	// times smaller than any that matters is the optimum all the same.
	if err != nil && (res == nil || res.Gradient == nil || floats.Norm(res.Gradient, math.Inf(1)) > 1e-6) {
		return nil, fmt.Errorf("minimise log loss: %w", err)
	}
	return res.X, nil
}

// posteriorCov is the Laplace approximation of the coefficients' posterior
// covariance at the estimate b: the inverse of the penalised negative
// log-likelihood's Hessian, the Fisher information of the examples plus the
// prior's precision.
func posteriorCov(x [][]float64, w, b, sd []float64) (*mat.SymDense, error) {
	d := len(b)
	h := mat.NewSymDense(d, nil)
	for j := range d {
		h.SetSym(j, j, 1/(sd[j]*sd[j]))
	}
	for i, xi := range x {
		q := sigmoid(floats.Dot(b, xi))
		h.SymRankOne(h, w[i]*q*(1-q), mat.NewVecDense(d, xi))
	}
	var ch mat.Cholesky
	if !ch.Factorize(h) {
		return nil, errors.New("posterior covariance: information matrix not positive definite")
	}
	var cov mat.SymDense
	if err := ch.InverseTo(&cov); err != nil {
		return nil, fmt.Errorf("posterior covariance: %w", err)
	}
	return &cov, nil
}
