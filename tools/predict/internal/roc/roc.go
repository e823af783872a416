// Package roc measures how well a signal ranks positives (churners) first.
package roc

import (
	"cmp"
	"math"
	"slices"
)

// AUC is the area under the ROC curve of risk against positive: the chance that
// a random positive has a higher risk than a random negative, a tie counting
// half (the Mann-Whitney U statistic over P·N). A NaN risk (unknown) ranks
// below every number, as cmp.Compare orders it. NaN when either class is
// empty or the lengths differ.
func AUC(risk []float64, positive []bool) float64 {
	if len(risk) != len(positive) {
		return math.NaN()
	}
	idx := make([]int, len(risk))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(risk[a], risk[b]) })
	// Walk up the risks a group of ties at a time: each positive of a group
	// beats the negatives below it and ties with those in the group.
	var pos, neg, u float64
	for start := 0; start < len(idx); {
		end := start
		var p, n float64
		for ; end < len(idx) && cmp.Compare(risk[idx[end]], risk[idx[start]]) == 0; end++ {
			if positive[idx[end]] {
				p++
			} else {
				n++
			}
		}
		u += p*neg + p*n/2
		pos, neg = pos+p, neg+n
		start = end
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return u / (pos * neg)
}
