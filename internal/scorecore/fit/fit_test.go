package fit

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// synthetic draws n rows of features with the given means and deviations and
// outcomes from the true raw-scale model.
func synthetic(n int, mean, sd, coef []float64, intercept float64) ([][]float64, []bool) {
	r := rand.New(rand.NewPCG(1, 2))
	x, y := make([][]float64, n), make([]bool, n)
	for i := range x {
		x[i] = make([]float64, len(mean))
		t := intercept
		for j := range mean {
			x[i][j] = mean[j] + sd[j]*r.NormFloat64()
			t += coef[j] * x[i][j]
		}
		y[i] = r.Float64() < sigmoid(t)
	}
	return x, y
}

func TestLogisticRecoversCoefficients(t *testing.T) {
	want := []float64{0.04, -0.5, 0}
	const wantIntercept = -1.0
	x, y := synthetic(20000, []float64{50, 2, 10}, []float64{20, 1, 3}, want, wantIntercept)
	m, err := Logistic(x, y, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	coef, intercept := m.Raw()
	for j := range want {
		// Tolerance: a few standard errors of each coefficient at this n.
		if tol := 0.1 / []float64{20, 1, 3}[j]; math.Abs(coef[j]-want[j]) > tol {
			t.Errorf("coefficient %d = %.4f, want %.4f ± %.4f", j, coef[j], want[j], tol)
		}
	}
	if math.Abs(intercept-wantIntercept) > 0.25 {
		t.Errorf("intercept = %.3f, want %.3f ± 0.25", intercept, wantIntercept)
	}
	// Raw and standardised forms predict alike.
	row := []float64{40, 3, 9}
	if got, want := m.Logit(row), intercept+coef[0]*40+coef[1]*3+coef[2]*9; math.Abs(got-want) > 1e-9 {
		t.Errorf("Logit = %v, raw form gives %v", got, want)
	}
}

func TestLogisticDeterministic(t *testing.T) {
	x, y := synthetic(500, []float64{0, 0}, []float64{1, 1}, []float64{1, -1}, 0)
	a, err := Logistic(x, y, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Logistic(x, y, 0.01)
	if a.Intercept != b.Intercept || a.Coef[0] != b.Coef[0] || a.Coef[1] != b.Coef[1] {
		t.Errorf("two fits differ: %+v, %+v", a, b)
	}
}

func TestLogisticShrinks(t *testing.T) {
	x, y := synthetic(2000, []float64{0}, []float64{1}, []float64{1.5}, 0)
	var last float64 = math.Inf(1)
	for _, lambda := range []float64{1e-4, 0.1, 1, 10} {
		m, err := Logistic(x, y, lambda)
		if err != nil {
			t.Fatal(err)
		}
		if c := math.Abs(m.Coef[0]); c >= last {
			t.Errorf("lambda %g: |coef| %.4f, not below %.4f of a smaller lambda", lambda, c, last)
		} else {
			last = c
		}
	}
}

// TestLogisticSeparable: a penalty keeps perfectly separated data finite.
func TestLogisticSeparable(t *testing.T) {
	x := [][]float64{{1}, {2}, {3}, {4}}
	y := []bool{false, false, true, true}
	m, err := Logistic(x, y, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	if !(m.Prob([]float64{4}) > 0.9 && m.Prob([]float64{1}) < 0.1) {
		t.Errorf("P(4) = %.3f, P(1) = %.3f: want the classes told apart", m.Prob([]float64{4}), m.Prob([]float64{1}))
	}
}

func TestLogisticMissingAndConstant(t *testing.T) {
	nan := math.NaN()
	x := [][]float64{{1, 5, nan}, {2, 5, nan}, {nan, 5, nan}, {4, 5, nan}, {5, 5, nan}, {6, 5, nan}}
	y := []bool{false, false, true, true, false, true}
	m, err := Logistic(x, y, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mean[0] != 3.6 || m.Scale[1] != 1 || m.Coef[1] != 0 || m.Coef[2] != 0 {
		t.Errorf("mean %v, scale %v, coef %v: want mean 3.6 of the known values, constant and missing features without weight", m.Mean, m.Scale, m.Coef)
	}
	if got, want := m.Logit([]float64{nan, 0, 0}), m.Logit([]float64{3.6, 0, 0}); got != want {
		t.Errorf("a missing value scores %v, the mean %v", got, want)
	}
}

func TestLogisticErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		x      [][]float64
		y      []bool
		lambda float64
		want   string
	}{
		{"no rows", nil, nil, 1, "no rows"},
		{"outcomes", [][]float64{{1}}, []bool{true, false}, 1, "1 rows and 2 outcomes"},
		{"ragged", [][]float64{{1}, {1, 2}}, []bool{true, false}, 1, "row 1 has 2 features"},
		{"one class", [][]float64{{1}, {2}}, []bool{true, true}, 1, "want both outcomes"},
		{"no penalty", [][]float64{{1}, {2}}, []bool{true, false}, 0, "lambda 0"},
		{"NaN penalty", [][]float64{{1}, {2}}, []bool{true, false}, math.NaN(), "lambda NaN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Logistic(tt.x, tt.y, tt.lambda)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
