// Package stats holds the bench's arithmetic, kept free of I/O and clocks so
// that it is tested exactly: latency percentiles, the search for the highest
// sustained rate, and the test of whether a consumer keeps up with a
// producer.
package stats

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary describes a set of latencies.
type Summary struct {
	N    int
	P50  time.Duration
	P99  time.Duration
	P999 time.Duration
	Max  time.Duration
}

// Summarize sorts d in place and returns its percentiles; the zero Summary
// when d is empty.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	return Summary{
		N:    len(d),
		P50:  Percentile(d, 0.50),
		P99:  Percentile(d, 0.99),
		P999: Percentile(d, 0.999),
		Max:  d[len(d)-1],
	}
}

// Percentile returns the q-quantile (0 < q <= 1) of sorted latencies by the
// nearest-rank method: the smallest value at or above which a share q of
// the values lie. It never interpolates, so a reported p99 is a latency that
// was observed.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// Search finds the highest rate that passes a test: it multiplies the rate
// by Factor while steps pass, divides it while they fail, and once it has a
// passing rate below a failing one it bisects them until they are within
// Precision of each other. On a noisy machine a step's outcome need not
// repeat, so before it ends it tries both ends of the bracket once more:
// a rate counts by its latest outcome, and a pass that does not hold up
// reopens the search below it. It never takes more than MaxSteps steps, so
// a run stays bounded.
type Search struct {
	factor    float64
	precision float64
	maxSteps  int

	start    float64
	next     float64
	outcomes map[float64][]bool // each rate's outcomes, in order
	steps    int
}

// NewSearch starts a search at rate start.
func NewSearch(start, factor, precision float64, maxSteps int) (*Search, error) {
	if start <= 0 || factor <= 1 || precision <= 0 || maxSteps < 1 {
		return nil, fmt.Errorf("search: want start > 0, factor > 1, precision > 0 and steps >= 1; got %g, %g, %g, %d",
			start, factor, precision, maxSteps)
	}
	s := &Search{factor: factor, precision: precision, maxSteps: maxSteps, start: start, outcomes: map[float64][]bool{}}
	s.next = s.plan()
	return s, nil
}

// Next returns the rate to try next, or false when the search is over.
func (s *Search) Next() (float64, bool) {
	if s.steps >= s.maxSteps || s.next == 0 {
		return 0, false
	}
	return s.next, true
}

// Record records the outcome of the rate Next returned.
func (s *Search) Record(passed bool) {
	s.outcomes[s.next] = append(s.outcomes[s.next], passed)
	s.steps++
	s.next = s.plan()
}

// plan picks the next rate, 0 when the bracket is found and confirmed.
func (s *Search) plan() float64 {
	lo, hi := s.Bracket()
	switch {
	case lo == 0 && hi == 0:
		return s.start
	case hi == 0:
		return lo * s.factor
	case lo == 0:
		return hi / s.factor
	case hi > lo*(1+s.precision):
		return (lo + hi) / 2
	case !s.confirmed(hi):
		return hi
	case !s.confirmed(lo):
		return lo
	}
	return 0
}

// confirmed reports whether a rate's last two outcomes agree.
func (s *Search) confirmed(rate float64) bool {
	o := s.outcomes[rate]
	return len(o) >= 2 && o[len(o)-1] == o[len(o)-2]
}

// Best returns the highest rate whose latest outcome passed; 0 when none.
func (s *Search) Best() float64 {
	lo, _ := s.Bracket()
	return lo
}

// Bracket returns the highest rate whose latest outcome passed and the
// lowest above it whose latest outcome failed; a zero means none.
func (s *Search) Bracket() (passed, failed float64) {
	for r, o := range s.outcomes {
		if o[len(o)-1] && r > passed {
			passed = r
		}
	}
	for r, o := range s.outcomes {
		if !o[len(o)-1] && r > passed && (failed == 0 || r < failed) {
			failed = r
		}
	}
	return passed, failed
}

// Sample is a producer's and a consumer's counts at one moment of a run.
type Sample struct {
	At       time.Duration // since the window began
	Produced float64       // stored by the producer, cumulative
	Consumed float64       // processed by the consumer, cumulative
}

// Backlog is what the consumer still has to process.
func (s Sample) Backlog() float64 { return s.Produced - s.Consumed }

// KeepUp is the test of a sustained rate.
type KeepUp struct {
	// MinProduced is the least share of the offered rate the producer must
	// achieve: below it, the producer side (ingest, the server) fell behind.
	MinProduced float64
	// MaxGrowth bounds the backlog's growth, as a share of the offered rate
	// per second (the least-squares slope of the backlog over the window).
	MaxGrowth float64
	// MaxLag bounds the backlog at the window's end, in seconds of the
	// offered rate: a consumer that batches work (a periodic flush) has a
	// backlog that saws up and down without growing.
	MaxLag float64
}

// DefaultKeepUp allows 3% shortfall and growth and one second of lag.
var DefaultKeepUp = KeepUp{MinProduced: 0.97, MaxGrowth: 0.03, MaxLag: 1}

// Check reports whether the consumer kept up with a producer offered rate
// per second over samples, in time order, and if not why.
func (k KeepUp) Check(samples []Sample, offered float64) (bool, string) {
	if len(samples) < 3 {
		return false, fmt.Sprintf("%d samples: too few to judge", len(samples))
	}
	first, last := samples[0], samples[len(samples)-1]
	span := (last.At - first.At).Seconds()
	if span <= 0 {
		return false, "samples span no time"
	}
	if produced := (last.Produced - first.Produced) / span; produced < k.MinProduced*offered {
		return false, fmt.Sprintf("producer stored %.0f/s of %.0f/s offered", produced, offered)
	}
	if growth := slope(samples); growth > k.MaxGrowth*offered {
		return false, fmt.Sprintf("backlog grew by %.0f/s (%.1f%% of the offered rate)", growth, 100*growth/offered)
	}
	if lag := last.Backlog(); lag > k.MaxLag*offered {
		return false, fmt.Sprintf("backlog %.0f at the end, over %.1f s of the offered rate", lag, k.MaxLag)
	}
	return true, ""
}

// slope is the least-squares slope of the backlog over time, per second.
func slope(samples []Sample) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := s.At.Seconds(), s.Backlog()
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
