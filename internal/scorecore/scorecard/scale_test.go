package scorecard

import (
	"testing"
)

func TestScaleRanks(t *testing.T) {
	fit := func(vals ...float64) Scale {
		var b ScaleBuilder
		for _, v := range vals {
			b.Add(v)
		}
		return b.Scale()
	}
	for _, tc := range []struct {
		name         string
		scale        Scale
		raw          float64
		higherBetter bool
		want         float64
	}{
		{"no values yet", Scale{}, 12, true, 50},
		{"median of four", fit(1, 2, 3, 4), 3, true, 62.5},
		{"lowest of four", fit(1, 2, 3, 4), 1, true, 12.5},
		{"best of four", fit(1, 2, 3, 4), 4, true, 100},
		{"beyond the best", fit(1, 2, 3, 4), 40, true, 100},
		{"below the worst", fit(1, 2, 3, 4), 0, true, 0},
		{"days silent: fewest is best", fit(0, 3, 30, 300), 0, false, 100},
		{"days silent: most is worst", fit(0, 3, 30, 300), 300, false, 12.5},
		{"days silent: 25 and 250 apart", fit(0, 3, 25, 100, 250), 25, false, 50},
		{"days silent: 250", fit(0, 3, 25, 100, 250), 250, false, 10},
		// A daily product: most accounts active today, tied at the best.
		{"ties at the best", fit(0, 0, 0, 0, 0, 0, 2, 9), 0, false, 100},
		{"ties elsewhere count half", fit(0, 5, 5, 9), 5, false, 50},
	} {
		if got := tc.scale.Normalise(tc.raw, tc.higherBetter); got != tc.want {
			t.Errorf("%s: %v scores %v, want %v", tc.name, tc.raw, got, tc.want)
		}
	}
}

func TestScaleOfManyValuesIsSmall(t *testing.T) {
	var b ScaleBuilder
	for i := range 1_000_000 {
		b.Add(float64(i % 400))
	}
	s := b.Scale()
	if s.N() != 1_000_000 || len(s.Bins) > scaleBins {
		t.Fatalf("N %d, %d bins", s.N(), len(s.Bins))
	}
	if got := s.Normalise(200, true); got < 45 || got > 55 {
		t.Errorf("the middle value scores %v", got)
	}
}
