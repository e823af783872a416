// Package fit fits an L2-regularised logistic regression, pure: a weight per
// measure fitted to recorded outcomes, for renewal-forecast's
// SuggestScorecard and the predictive benchmark (tools/predict).
package fit

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Model is a fitted logistic regression on standardised features.
type Model struct {
	// Mean and Scale standardise feature j as (x - Mean[j]) / Scale[j]; a
	// missing value (NaN) is taken as Mean[j]. They are the training data's
	// mean and standard deviation (Scale 1 for a constant feature).
	Mean, Scale []float64
	// Coef[j] is the change of the log-odds per standard deviation of feature
	// j; Intercept the log-odds at the means.
	Coef      []float64
	Intercept float64
	// Iterations is the number of Newton steps the fit took.
	Iterations int
}

// Limits of the Newton iteration: the penalised loss is strictly convex, so it
// converges in a handful of steps; a fit that has not is reported.
const (
	maxIterations = 100
	tolerance     = 1e-10
)

// Logistic fits P(y) = σ(Intercept + Σ Coef[j]·z[j]) over the standardised
// features z of the rows of x, minimising the mean log loss plus
// lambda/2·Σ Coef[j]² (the intercept is not penalised) by Newton's method from
// zero: deterministic, the same data give the same model. NaN in x marks a
// missing value. Both outcomes must occur and lambda must be positive.
func Logistic(x [][]float64, y []bool, lambda float64) (*Model, error) {
	n := len(x)
	switch {
	case n == 0:
		return nil, errors.New("no rows")
	case len(y) != n:
		return nil, fmt.Errorf("%d rows and %d outcomes", n, len(y))
	case !(lambda > 0) || math.IsInf(lambda, 0):
		return nil, fmt.Errorf("lambda %v: want a positive number", lambda)
	}
	d := len(x[0])
	var pos int
	for i, row := range x {
		if len(row) != d {
			return nil, fmt.Errorf("row %d has %d features, row 0 has %d", i, len(row), d)
		}
		if y[i] {
			pos++
		}
	}
	if pos == 0 || pos == n {
		return nil, fmt.Errorf("%d of %d outcomes positive: want both outcomes", pos, n)
	}
	m := &Model{Mean: make([]float64, d), Scale: make([]float64, d)}
	m.standardisation(x)

	// Column 0 of z is the intercept's constant 1.
	z := make([][]float64, n)
	for i, row := range x {
		z[i] = make([]float64, d+1)
		z[i][0] = 1
		for j, v := range row {
			z[i][j+1] = m.standard(j, v)
		}
	}
	beta := make([]float64, d+1)
	loss := func(b []float64) float64 {
		var f float64
		for i, row := range z {
			t := dot(row, b)
			f += softplus(t)
			if y[i] {
				f -= t
			}
		}
		f /= float64(n)
		for _, c := range b[1:] {
			f += lambda / 2 * c * c
		}
		return f
	}
	cur := loss(beta)
	for m.Iterations = 1; ; m.Iterations++ {
		if m.Iterations > maxIterations {
			return nil, fmt.Errorf("no convergence in %d Newton steps", maxIterations)
		}
		grad := make([]float64, d+1)
		hess := mat.NewSymDense(d+1, nil)
		for i, row := range z {
			p := sigmoid(dot(row, beta))
			r := p
			if y[i] {
				r--
			}
			w := p * (1 - p)
			for j := range row {
				grad[j] += r * row[j] / float64(n)
				for k := j; k < len(row); k++ {
					hess.SetSym(j, k, hess.At(j, k)+w*row[j]*row[k]/float64(n))
				}
			}
		}
		for j := 1; j <= d; j++ {
			grad[j] += lambda * beta[j]
			hess.SetSym(j, j, hess.At(j, j)+lambda)
		}
		var chol mat.Cholesky
		if !chol.Factorize(hess) {
			return nil, errors.New("the Hessian is not positive definite")
		}
		step := mat.NewVecDense(d+1, nil)
		if err := chol.SolveVecTo(step, mat.NewVecDense(d+1, grad)); err != nil {
			return nil, fmt.Errorf("newton step: %w", err)
		}
		// Halve the step until the loss does not rise: Newton's full step can
		// overshoot far from the optimum.
		next := make([]float64, d+1)
		var size float64
		for t := 1.0; ; t /= 2 {
			size = 0
			for j := range next {
				next[j] = beta[j] - t*step.AtVec(j)
				size = math.Max(size, math.Abs(t*step.AtVec(j)))
			}
			if f := loss(next); f <= cur || size < tolerance {
				cur = f
				break
			}
		}
		copy(beta, next)
		if size < tolerance {
			break
		}
	}
	m.Intercept, m.Coef = beta[0], beta[1:]
	return m, nil
}

// standardisation sets Mean and Scale from the non-missing values of x.
func (m *Model) standardisation(x [][]float64) {
	for j := range m.Mean {
		var sum, sq float64
		var k int
		for _, row := range x {
			if v := row[j]; !math.IsNaN(v) {
				sum += v
				sq += v * v
				k++
			}
		}
		m.Scale[j] = 1
		if k == 0 {
			continue
		}
		mean := sum / float64(k)
		m.Mean[j] = mean
		if v := sq/float64(k) - mean*mean; v > 1e-12*math.Max(1, mean*mean) {
			m.Scale[j] = math.Sqrt(v)
		}
	}
}

func (m *Model) standard(j int, v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return (v - m.Mean[j]) / m.Scale[j]
}

// Logit is the log-odds of a positive outcome for features x (NaN: missing).
func (m *Model) Logit(x []float64) float64 {
	t := m.Intercept
	for j, v := range x {
		t += m.Coef[j] * m.standard(j, v)
	}
	return t
}

// Prob is the probability of a positive outcome for features x.
func (m *Model) Prob(x []float64) float64 { return sigmoid(m.Logit(x)) }

// Raw returns the coefficients on the features' own scales: the change of the
// log-odds per unit of feature j, and the log-odds at all features zero.
func (m *Model) Raw() (coef []float64, intercept float64) {
	coef = make([]float64, len(m.Coef))
	intercept = m.Intercept
	for j, c := range m.Coef {
		coef[j] = c / m.Scale[j]
		intercept -= coef[j] * m.Mean[j]
	}
	return coef, intercept
}

func dot(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func sigmoid(t float64) float64 { return 1 / (1 + math.Exp(-t)) }

// softplus is log(1 + e^t) without overflow.
func softplus(t float64) float64 { return math.Max(t, 0) + math.Log1p(math.Exp(-math.Abs(t))) }
