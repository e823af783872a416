package scorecard

import (
	"math"
	"slices"
)

// A tenant's scale (SCALE_TENANT_RANK) reads a raw value against the tenant's
// own accounts: the sub-score is the share of the tenant's accounts that the
// account does better than, ties counted half (a mid-rank percentile), and an
// account tied with the best any account does scores 100. What is a long
// silence or a busy account differs by orders of magnitude between a
// daily-use SaaS and a wholesaler ordering every few months; a rank needs no
// day counts, spreads every product over the whole range, and keeps 25 and
// 250 silent days apart wherever accounts lie between them.
//
// The values are binned on a logarithmic scale (log(1+raw), bins 2% wide), so
// fitting a scale over a million accounts takes one pass and no sort, and a
// scale's size does not grow with the accounts; values within a bin count
// as tied.

// Scale is a measure's scale for one tenant on one day: the non-empty bins of
// the values it was fitted on, ascending, and the count of values at or below
// each. The zero Scale (no values yet) scores every value 50.
type Scale struct {
	Bins []uint16
	Cum  []uint32
}

const (
	scaleBins = 1024
	// scaleMax is log(1+raw) at the top bin: raw values up to ~10^9.
	scaleMax = 21.0
)

func bin(raw float64) uint16 {
	i := int(math.Log1p(max(raw, 0)) / scaleMax * scaleBins)
	return uint16(min(i, scaleBins-1))
}

// N is how many values the scale was fitted on.
func (s Scale) N() uint32 {
	if len(s.Cum) == 0 {
		return 0
	}
	return s.Cum[len(s.Cum)-1]
}

// Normalise maps a raw value to a 0-100 sub-score.
func (s Scale) Normalise(raw float64, higherBetter bool) float64 {
	n := s.N()
	if n == 0 || math.IsNaN(raw) {
		return 50 // nothing to compare against yet
	}
	b := bin(raw)
	i, found := slices.BinarySearch(s.Bins, b)
	var below, tied uint32
	if i > 0 {
		below = s.Cum[i-1]
	}
	if found {
		tied = s.Cum[i] - below
	}
	above := n - below - tied
	better, best := below, above == 0
	if !higherBetter {
		better, best = above, below == 0
	}
	if best {
		return 100 // nobody does better
	}
	return 100 * (float64(better) + float64(tied)/2) / float64(n)
}

// ScaleBuilder gathers a tenant's raw values of one measure.
type ScaleBuilder struct {
	counts [scaleBins]uint32
}

// Add counts one raw value; NaN is left out.
func (b *ScaleBuilder) Add(raw float64) {
	if !math.IsNaN(raw) {
		b.counts[bin(raw)]++
	}
}

// Scale returns the scale of the values added.
func (b *ScaleBuilder) Scale() Scale {
	var s Scale
	var cum uint32
	for i, c := range b.counts {
		if c > 0 {
			cum += c
			s.Bins = append(s.Bins, uint16(i))
			s.Cum = append(s.Cum, cum)
		}
	}
	return s
}
