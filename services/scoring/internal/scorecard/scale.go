package scorecard

import "math"

// A tenant's scale (SCALE_TENANT_LOG) reads a raw value against the tenant's
// own accounts, on a logarithmic scale: what is a long silence or a busy
// account differs by orders of magnitude between a daily-use SaaS and a
// wholesaler ordering every few months, so no fixed day count serves both.
// The tenant's median account scores 50 and its quartiles about 25 and 75
// (exactly, where the log values spread evenly about the median). The curve
// is an arctangent (a Cauchy distribution's), whose tails fall off slowly: it
// never saturates, so 25 and 250 silent days stay apart even on a product
// whose accounts are rarely silent for more than a day or two.

// Scale is a measure's scale for one tenant on one day.
type Scale struct {
	// Center is the median of log(1+raw) over the tenant's accounts, Spread
	// half their interquartile range: a quartile is one unit from the median.
	Center, Spread float64
	// N counts the values it was fitted on; 0 means no scale yet.
	N int
}

// minLogIQR is the narrowest spread read as spread: quartiles closer than a
// factor of two apart are not told apart more finely than that.
var minLogIQR = math.Log(2)

// Normalise maps a raw value to a 0-100 sub-score. Without a scale (no
// account had data yet) every value scores 50: nothing to compare against.
func (s Scale) Normalise(raw float64, higherBetter bool) float64 {
	if s.N == 0 {
		return 50
	}
	z := (math.Log1p(max(raw, 0)) - s.Center) / s.Spread
	if !higherBetter {
		z = -z
	}
	return 50 + 100/math.Pi*math.Atan(z)
}

// ScaleBuilder gathers a tenant's raw values of one measure into a histogram
// of log(1+raw), so that fitting a scale over a million accounts costs one
// pass and no sort.
type ScaleBuilder struct {
	bins [scaleBins]uint32
	n    int
}

const (
	scaleBins = 1024
	// scaleMax is log(1+raw) at the top bin: raw values up to ~10^9.
	scaleMax = 21.0
)

// Add counts one raw value.
func (b *ScaleBuilder) Add(raw float64) {
	if math.IsNaN(raw) {
		return
	}
	i := int(math.Log1p(max(raw, 0)) / scaleMax * scaleBins)
	b.bins[min(i, scaleBins-1)]++
	b.n++
}

// Scale returns the scale of the values added; N is 0 when there were none.
func (b *ScaleBuilder) Scale() Scale {
	if b.n == 0 {
		return Scale{}
	}
	q1, med, q3 := b.quantile(0.25), b.quantile(0.5), b.quantile(0.75)
	return Scale{Center: med, Spread: max(q3-q1, minLogIQR) / 2, N: b.n}
}

// quantile reads the q-quantile of log(1+raw), interpolated within its bin.
func (b *ScaleBuilder) quantile(q float64) float64 {
	target := q * float64(b.n)
	var seen float64
	const width = scaleMax / scaleBins
	for i, c := range b.bins {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= target {
			return (float64(i) + (target-seen)/float64(c)) * width
		}
		seen += float64(c)
	}
	return scaleMax
}

// Reset empties the builder for reuse.
func (b *ScaleBuilder) Reset() { *b = ScaleBuilder{} }
