package scorecard

import (
	"math"
	"testing"
)

func TestScaleQuartilesScore25And75(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values func(i int) float64 // i in 0..999
	}{
		{"daily product, days silent", func(i int) float64 { return float64(i % 20) }},
		{"monthly orders, days silent", func(i int) float64 { return float64(10 + i/3) }},
		{"events per week, heavy tail", func(i int) float64 { return math.Pow(1.01, float64(i)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b ScaleBuilder
			vals := make([]float64, 1000)
			for i := range vals {
				vals[i] = tc.values(i)
				b.Add(vals[i])
			}
			s := b.Scale()
			if s.N != 1000 {
				t.Fatalf("N = %d", s.N)
			}
			// The median value scores about 50, higher better or not.
			med := vals[500]
			if tc.name != "daily product, days silent" { // values sorted by i
				if got := s.Normalise(med, true); math.Abs(got-50) > 2 {
					t.Errorf("median scores %.1f, want ~50", got)
				}
				// Exactly 25 and 75 where the log values are symmetric; a
				// skewed distribution shifts them a little.
				q1, q3 := vals[250], vals[750]
				if lo, hi := s.Normalise(q1, true), s.Normalise(q3, true); lo < 15 || lo > 35 || hi < 65 || hi > 85 || hi-lo < 40 {
					t.Errorf("quartiles score %.1f and %.1f, want about 25 and 75", lo, hi)
				}
			}
			// Monotone and never saturating: far values are still apart.
			if a, b := s.Normalise(1e3, false), s.Normalise(1e4, false); !(a > b && b > 0) {
				t.Errorf("lower-better scores of 1e3 and 1e4: %v, %v", a, b)
			}
		})
	}
}

func TestScaleWithoutValuesIsNeutral(t *testing.T) {
	var b ScaleBuilder
	if got := b.Scale().Normalise(12, true); got != 50 {
		t.Fatalf("no scale scores %v, want 50", got)
	}
}

func TestScaleSpreadHasAFloor(t *testing.T) {
	var b ScaleBuilder
	for range 100 {
		b.Add(3) // every account alike
	}
	s := b.Scale()
	if s.Spread <= 0 || math.IsInf(s.Spread, 0) {
		t.Fatalf("spread %v", s.Spread)
	}
	if got := s.Normalise(3, true); math.Abs(got-50) > 2 {
		t.Errorf("the common value scores %v, want ~50", got)
	}
}
