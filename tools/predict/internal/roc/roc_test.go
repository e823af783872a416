package roc

import (
	"math"
	"testing"
)

func TestAUC(t *testing.T) {
	tests := []struct {
		name     string
		risk     []float64
		positive []bool
		want     float64
	}{
		{"perfect", []float64{1, 2, 3, 4}, []bool{false, false, true, true}, 1},
		{"inverted", []float64{1, 2, 3, 4}, []bool{true, true, false, false}, 0},
		{"all tied", []float64{5, 5, 5, 5}, []bool{true, false, true, false}, 0.5},
		// Pairs (p,n): (3,1) win, (3,3) tie, (2,1) win, (2,3) loss: 2.5 of 4.
		{"ties count half", []float64{1, 3, 3, 2}, []bool{false, false, true, true}, 0.625},
		{"unordered input", []float64{4, 1, 3, 2}, []bool{true, false, true, false}, 1},
		{"unknown risk is least", []float64{math.NaN(), 1}, []bool{false, true}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AUC(tt.risk, tt.positive); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("AUC = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAUCUndefined(t *testing.T) {
	for _, tt := range []struct {
		name     string
		risk     []float64
		positive []bool
	}{
		{"no positives", []float64{1, 2}, []bool{false, false}},
		{"no negatives", []float64{1, 2}, []bool{true, true}},
		{"empty", nil, nil},
		{"lengths differ", []float64{1, 2}, []bool{true}},
	} {
		if got := AUC(tt.risk, tt.positive); !math.IsNaN(got) {
			t.Errorf("%s: AUC = %v, want NaN", tt.name, got)
		}
	}
}

// TestAUCBruteForce checks the grouped walk against counting every pair.
func TestAUCBruteForce(t *testing.T) {
	risk := []float64{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3}
	positive := []bool{true, false, true, true, false, true, false, false, true, false, true, false, true, false, false, true}
	var u, pairs float64
	for i := range risk {
		for j := range risk {
			if !positive[i] || positive[j] {
				continue
			}
			pairs++
			switch {
			case risk[i] > risk[j]:
				u++
			case risk[i] == risk[j]:
				u += 0.5
			}
		}
	}
	if got, want := AUC(risk, positive), u/pairs; math.Abs(got-want) > 1e-12 {
		t.Errorf("AUC = %v, want %v", got, want)
	}
}
