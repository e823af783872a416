package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Fate is what becomes of an account over the simulated story.
type Fate uint8

// The fates. Each is told against Config.Now; see newAccount for the numbers.
const (
	// Healthy accounts use the product steadily, with the occasional ticket
	// or failed payment that is soon put right.
	Healthy Fate = iota
	// Expanding accounts keep adding users, beyond the seats they bought.
	Expanding
	// Onboarding accounts signed in the last four weeks and reach their
	// first-value milestones fast, slowly, or stall after the first.
	Onboarding
	// Declining accounts lose their users one by one over weeks, the
	// executives and directors first; their NPS answers sour.
	Declining
	// Silent accounts were healthy until they stopped all use at once, about
	// two weeks before Now.
	Silent
	// Churning accounts fall away within days, with a severe ticket left
	// open, detractor answers, a failed payment and a downgrade.
	Churning

	numFates
)

var fateNames = [numFates]string{"healthy", "expanding", "onboarding", "declining", "silent", "churning"}

// Fates lists every fate, in order.
func Fates() []Fate {
	out := make([]Fate, numFates)
	for i := range out {
		out[i] = Fate(i)
	}
	return out
}

// String returns the fate's lower-case name.
func (f Fate) String() string {
	if f < numFates {
		return fateNames[f]
	}
	return "Fate(" + strconv.Itoa(int(f)) + ")"
}

// Mix is the share of accounts of each fate, as relative weights.
type Mix [numFates]float64

// DefaultMix has every fate often enough that a few hundred accounts spread
// over the red, yellow and green bands, with most accounts healthy.
func DefaultMix() Mix {
	return Mix{Healthy: 40, Expanding: 12, Onboarding: 13, Declining: 17, Silent: 10, Churning: 8}
}

// String formats the mix as Set reads it.
func (m Mix) String() string {
	parts := make([]string, 0, numFates)
	for f, w := range m {
		parts = append(parts, fateNames[f]+"="+strconv.FormatFloat(w, 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

// Set reads a mix such as "healthy=50,declining=20,silent=30" (fates left
// out get no accounts), so that *Mix is a flag.Value.
func (m *Mix) Set(s string) error {
	var out Mix
	for part := range strings.SplitSeq(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%q: want fate=weight", part)
		}
		f := Fate(0)
		for f < numFates && fateNames[f] != name {
			f++
		}
		if f == numFates {
			return fmt.Errorf("unknown fate %q (want one of %s)", name, strings.Join(fateNames[:], ", "))
		}
		w, err := strconv.ParseFloat(value, 64)
		if err != nil || w < 0 || math.IsInf(w, 0) {
			return fmt.Errorf("%s=%s: want a weight >= 0", name, value)
		}
		out[f] = w
	}
	*m = out
	return nil
}

// assign gives n accounts their fates: exactly the mix's share of each
// (largest remainders), in a random order.
func (m Mix) assign(n int, r *rand.Rand) ([]Fate, error) {
	var total float64
	for _, w := range m {
		total += w
	}
	if total <= 0 {
		return nil, fmt.Errorf("mix %s: no fate has a weight", m)
	}
	out := make([]Fate, 0, n)
	var rem [numFates]float64
	for f, w := range m {
		exact := w / total * float64(n)
		for range int(exact) {
			out = append(out, Fate(f))
		}
		rem[f] = exact - math.Floor(exact)
	}
	for len(out) < n {
		best := 0
		for f := range rem {
			if rem[f] > rem[best] {
				best = f
			}
		}
		out = append(out, Fate(best))
		rem[best] = -1
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}
