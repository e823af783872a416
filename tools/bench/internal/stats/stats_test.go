package stats

import (
	"math"
	"strings"
	"testing"
	"time"
)

func ms(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, c := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of 100", hundred, 0.5, 50 * time.Millisecond},
		{"p99 of 100", hundred, 0.99, 99 * time.Millisecond},
		{"p99.9 of 100 is the max", hundred, 0.999, 100 * time.Millisecond},
		{"max", hundred, 1, 100 * time.Millisecond},
		{"tiny q is the min", hundred, 0.0001, 1 * time.Millisecond},
	} {
		if got := Percentile(c.sorted, c.q); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSummarizeSorts(t *testing.T) {
	s := Summarize(ms(5, 1, 4, 2, 3))
	want := Summary{N: 5, P50: 3 * time.Millisecond, P99: 5 * time.Millisecond, P999: 5 * time.Millisecond, Max: 5 * time.Millisecond}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("empty input: want the zero summary")
	}
}

// run drives a search against a system that passes every rate up to limit.
func run(t *testing.T, s *Search, pass func(float64) bool) []float64 {
	t.Helper()
	var tried []float64
	for {
		r, ok := s.Next()
		if !ok {
			return tried
		}
		tried = append(tried, r)
		s.Record(pass(r))
		if len(tried) > 100 {
			t.Fatal("search does not end")
		}
	}
}

func TestSearchGrowsThenBisects(t *testing.T) {
	s, err := NewSearch(10_000, 2, 0.05, 20)
	if err != nil {
		t.Fatal(err)
	}
	tried := run(t, s, func(r float64) bool { return r <= 55_000 })
	if tried[0] != 10_000 || tried[1] != 20_000 || tried[2] != 40_000 || tried[3] != 80_000 {
		t.Errorf("want doubling from 10000 until a failure, tried %v", tried)
	}
	lo, hi := s.Bracket()
	if lo > 55_000 || hi <= 55_000 || hi > lo*1.05 {
		t.Errorf("bracket [%g, %g] should hold 55000 within 5%%", lo, hi)
	}
	if s.Best() != lo {
		t.Errorf("best %g, want the highest pass %g", s.Best(), lo)
	}
}

func TestSearchShrinksWhenStartFails(t *testing.T) {
	s, _ := NewSearch(10_000, 2, 0.1, 20)
	tried := run(t, s, func(r float64) bool { return r <= 3_000 })
	if tried[1] != 5_000 || tried[2] != 2_500 {
		t.Errorf("want halving until a pass, tried %v", tried)
	}
	if b := s.Best(); b > 3_000 || b < 3_000/1.1 {
		t.Errorf("best %g, want within 10%% below 3000", b)
	}
}

func TestSearchIsBounded(t *testing.T) {
	s, _ := NewSearch(1, 1.01, 1e-9, 4)
	if tried := run(t, s, func(float64) bool { return true }); len(tried) != 4 {
		t.Errorf("tried %d rates, want MaxSteps = 4", len(tried))
	}
	none, _ := NewSearch(100, 2, 0.1, 3)
	run(t, none, func(float64) bool { return false })
	if none.Best() != 0 {
		t.Errorf("nothing passed: best %g, want 0", none.Best())
	}
}

func TestSearchRecoversFromNoise(t *testing.T) {
	s, _ := NewSearch(100, 2, 0.1, 30)
	// 400 fails once by noise, then passes: the search looks above again.
	failed := false
	run(t, s, func(r float64) bool {
		if r == 400 && !failed {
			failed = true
			return false
		}
		return r <= 1000
	})
	if b := s.Best(); b < 1000/1.1 || b > 1000 {
		t.Errorf("best %g, want within 10%% below 1000", b)
	}
}

func TestSearchConfirmsItsBest(t *testing.T) {
	s, _ := NewSearch(100, 2, 0.1, 30)
	// 800 passes once by luck; the true limit is 500.
	lucky := false
	tried := run(t, s, func(r float64) bool {
		if r == 800 && !lucky {
			lucky = true
			return true
		}
		return r <= 500
	})
	if b := s.Best(); b > 500 || b < 500/1.1 {
		t.Errorf("best %g after trying %v, want within 10%% below 500: a lucky pass must not stand", b, tried)
	}
	lo, hi := s.Bracket()
	if !s.confirmed(lo) || !s.confirmed(hi) {
		t.Errorf("bracket [%g, %g] not confirmed", lo, hi)
	}
}

func TestNewSearchRejectsBadSettings(t *testing.T) {
	for _, c := range [][4]float64{{0, 2, 0.1, 5}, {10, 1, 0.1, 5}, {10, 2, 0, 5}, {10, 2, 0.1, 0}} {
		if _, err := NewSearch(c[0], c[1], c[2], int(c[3])); err == nil {
			t.Errorf("NewSearch%v: want an error", c)
		}
	}
}

// samples makes one sample a second: produced at rate, consumed at rate
// minus deficit, and a sawtooth of amplitude saw on the backlog.
func samples(n int, rate, deficit, saw float64) []Sample {
	out := make([]Sample, n)
	for i := range out {
		x := float64(i)
		out[i] = Sample{At: time.Duration(i) * time.Second, Produced: rate * x, Consumed: (rate-deficit)*x - saw*float64(i%2)}
	}
	return out
}

func TestKeepUp(t *testing.T) {
	k := DefaultKeepUp
	for _, c := range []struct {
		name    string
		samples []Sample
		offered float64
		ok      bool
		why     string
	}{
		{"steady", samples(10, 1000, 0, 0), 1000, true, ""},
		{"sawtooth of a periodic flush", samples(10, 1000, 0, 400), 1000, true, ""},
		{"small shortfall", samples(10, 1000, 20, 0), 1000, true, ""},
		{"consumer behind", samples(10, 1000, 100, 0), 1000, false, "backlog grew"},
		{"producer behind", samples(10, 900, 0, 0), 1000, false, "producer stored"},
		{"too few samples", samples(2, 1000, 0, 0), 1000, false, "too few"},
	} {
		ok, why := k.Check(c.samples, c.offered)
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ok, why, c.ok, c.why)
		}
	}
	// A large backlog that does not grow: the consumer is a full second
	// behind, which a latency target cannot allow.
	behind := samples(10, 1000, 0, 0)
	for i := range behind {
		behind[i].Consumed -= 1500
	}
	if ok, why := k.Check(behind, 1000); ok || !strings.Contains(why, "at the end") {
		t.Errorf("constant lag of 1.5 s: got %v %q, want a failure for the lag", ok, why)
	}
}

func TestSlope(t *testing.T) {
	s := samples(5, 100, 10, 0)
	if got := slope(s); math.Abs(got-10) > 1e-9 {
		t.Errorf("slope %g, want 10", got)
	}
}
