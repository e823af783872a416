package portfolio

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
)

func flat(arr float64) retention.Change { return retention.Change{Start: arr, End: arr} }

// TestExpectedValues checks the expectation by hand: one pending renewal of
// 100 at p = 0.8 (default rates, no signal) beside a steady account of 200.
//
//	churn       (1-0.8) x 100                 = 20
//	contraction 0.8 x 0.10 x 25               = 2
//	expansion   0.8 x 0.10 x 20               = 1.6
//	renewed     0.8 x (0.1x75 + 0.8x100 + 0.1x120) = 79.6
//	GRR = (300-20-2)/300, NRR = (300-20-2+1.6)/300, logos 1.8/2
func TestExpectedValues(t *testing.T) {
	book := []Account{
		{Keys: retention.Keys{"green", "standard", "csm-1", "smb"}, Known: flat(200)},
		{Keys: retention.Keys{"red", "standard", "csm-2", "smb"}, Known: flat(100), Pending: true, ARR: 100, P: 0.8},
	}
	total, slices := Forecast(book, Config{Rates: DefaultRates(), Simulations: 500, Seed: [2]uint64{1, 2}, AtRiskBelow: 0.9, Months: 3})
	e := total.GetExpected()
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"churned ARR", e.GetChurnedArr(), 20},
		{"contraction", e.GetContractionArr(), 2},
		{"expansion", e.GetExpansionArr(), 1.6},
		{"renewed ARR", e.GetRenewedArr(), 79.6},
		{"renewals ARR", e.GetRenewalsArr(), 100},
		{"GRR", e.GetGrr(), 278.0 / 300},
		{"NRR", e.GetNrr(), 279.6 / 300},
		{"logo retention", e.GetLogoRetention(), 0.9},
		{"churned accounts", e.GetChurnedAccounts(), 0.2},
		{"pending ARR", total.GetPendingArr(), 100},
		{"at-risk ARR", total.GetAtRiskArr(), 100},
	} {
		if math.Abs(tc.got-tc.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// A single renewal churns 100 with probability 0.2, else nothing: 0 at
	// the 10th percentile, 100 at the 90th.
	if r := total.GetRanges().GetChurnedArr(); r.GetP10() != 0 || r.GetP90() != 100 {
		t.Errorf("churned ARR range %v, want [0, 100]", r)
	}
	for _, s := range slices {
		if s.GetDimension() == forecastv1.Dimension_DIMENSION_BAND && s.GetKey() == "green" {
			if r := s.GetForecast().GetRanges().GetGrr(); r.GetP10() != 1 || r.GetP90() != 1 {
				t.Errorf("green slice, nothing pending: GRR range %v, want exactly 1", r)
			}
		}
	}
}

func TestSimulationIsSeeded(t *testing.T) {
	book := book(rand.New(rand.NewPCG(9, 9)), 50)
	cfg := Config{Rates: DefaultRates(), Simulations: 300, Seed: [2]uint64{4, 2}, Months: 3}
	a, _ := Forecast(book, cfg)
	b, _ := Forecast(book, cfg)
	if !proto.Equal(a, b) {
		t.Fatal("same seed, different forecasts")
	}
	cfg.Seed[1]++
	c, _ := Forecast(book, cfg)
	if proto.Equal(a.GetRanges(), c.GetRanges()) {
		t.Fatal("another seed gave the very same ranges")
	}
}

// book generates n accounts due to renew, with known renewal probabilities.
func book(r *rand.Rand, n int) []Account {
	out := make([]Account, n)
	tiers := []string{"benchmark", "growth", "standard"}
	for i := range out {
		arr := math.Round(math.Exp(9 + r.NormFloat64()))
		out[i] = Account{
			Keys:    retention.Keys{"green", tiers[r.IntN(3)], "csm", "smb"},
			Known:   flat(arr),
			Pending: r.Float64() < 0.8,
			ARR:     arr,
			P:       0.5 + 0.49*r.Float64(),
			Signal:  r.Float64() < 0.2,
		}
	}
	return out
}

// realise draws what actually happens to the book under the true
// probabilities and rates, as retention totals.
func realise(r *rand.Rand, book []Account, rates Rates) retention.Totals {
	var t retention.Totals
	for _, a := range book {
		c := a.Known
		if a.Pending {
			o := pick(rates.Outcomes(a.ARR, a.P, a.Signal), r.Float64())
			c = c.Renew(a.ARR, o.After, o.Churned)
		}
		t.Add(c, 1)
	}
	return t
}

// TestIntervalCoverage checks the stated 10th-90th percentile range: over
// repeated independent realisations of a generated book with known renewal
// probabilities, the realised GRR, NRR, logo retention and churned ARR fall
// in their forecast range 80% of the time. Each realisation is an
// independent Bernoulli trial, so the count inside is binomial: the
// tolerance is three of its standard deviations.
func TestIntervalCoverage(t *testing.T) {
	const reps, want = 400, 0.8
	rates := DefaultRates()
	b := book(rand.New(rand.NewPCG(11, 12)), 300)
	total, _ := Forecast(b, Config{Rates: rates, Simulations: 4000, Seed: [2]uint64{5, 6}, Months: 3})
	rg := total.GetRanges()
	checks := []struct {
		name string
		r    *forecastv1.Range
		get  func(*retention.Totals) float64
		in   int
	}{
		{"GRR", rg.GetGrr(), (*retention.Totals).GRR, 0},
		{"NRR", rg.GetNrr(), (*retention.Totals).NRR, 0},
		{"logo retention", rg.GetLogoRetention(), (*retention.Totals).LogoRetention, 0},
		{"churned ARR", rg.GetChurnedArr(), func(t *retention.Totals) float64 { return t.Churned }, 0},
	}
	r := rand.New(rand.NewPCG(13, 14))
	for range reps {
		real := realise(r, b, rates)
		for i := range checks {
			if v := checks[i].get(&real); v >= checks[i].r.GetP10() && v <= checks[i].r.GetP90() {
				checks[i].in++
			}
		}
	}
	tol := 3 * math.Sqrt(want*(1-want)/reps)
	for _, c := range checks {
		cov := float64(c.in) / reps
		t.Logf("%-15s range [%.4g, %.4g]: covered %d of %d draws (%.1f%%; stated 80%% ± %.1f%%)",
			c.name, c.r.GetP10(), c.r.GetP90(), c.in, reps, 100*cov, 100*tol)
		if math.Abs(cov-want) > tol {
			t.Errorf("%s: coverage %.3f, want %.2f ± %.3f", c.name, cov, want, tol)
		}
	}
}

func TestEstimateRates(t *testing.T) {
	d := DefaultRates()
	for _, tc := range []struct {
		name   string
		obs    []Observed
		check  func(Rates) bool
		expect string
	}{
		{"none: the defaults", nil, func(r Rates) bool { return r == d }, "defaults"},
		{
			name: "many contractions pull the rate up",
			obs: repeat(200, Observed{Type: accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED, Before: 100, After: 50},
				Observed{Type: accountv1.OutcomeType_OUTCOME_TYPE_RENEWED, Before: 100, After: 100}),
			// 200 contracted of 400 renewed, with 20 pseudo-renewals at 0.10:
			// (200 + 2) / 420; shares 0.5 pooled with 5 at 0.25.
			check: func(r Rates) bool {
				return math.Abs(r.Contraction-202.0/420) < 1e-12 && math.Abs(r.ContractionShare-(100+1.25)/205) < 1e-12
			},
			expect: "contraction 202/420, share 101.25/205",
		},
		{
			name: "signals that expand",
			obs: repeat(30, Observed{Type: accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED, Before: 100, After: 150, Signal: true},
				Observed{Type: accountv1.OutcomeType_OUTCOME_TYPE_CHURNED, Before: 100}),
			check: func(r Rates) bool {
				return math.Abs(r.ExpansionSignal-(30+8)/50.0) < 1e-12 && r.Expansion == d.Expansion
			},
			expect: "expansion with signal 38/50, without unchanged",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := EstimateRates(tc.obs); !tc.check(r) {
				t.Errorf("EstimateRates = %+v, want %s", r, tc.expect)
			}
		})
	}
}

func repeat(n int, os ...Observed) []Observed {
	var out []Observed
	for range n {
		out = append(out, os...)
	}
	return out
}

// TestIntervalCoverageWithLevelUncertainty: when the true level of the book
// is itself uncertain (each realisation's probabilities shifted in log-odds
// by a draw from N(0, 0.3²), as a model's posterior would have it), ranges
// that carry LevelSD cover the realised logo retention and renewed ARR 80%
// of the time; ranges without it cover less, as they did before.
func TestIntervalCoverageWithLevelUncertainty(t *testing.T) {
	const reps, want, sd = 400, 0.8, 0.3
	rates := DefaultRates()
	b := book(rand.New(rand.NewPCG(21, 22)), 300)
	cfg := Config{Rates: rates, Simulations: 2000, Seed: [2]uint64{5, 6}, Months: 3}
	without, _ := Forecast(b, cfg)
	cfg.LevelSD = sd
	with, _ := Forecast(b, cfg)
	r := rand.New(rand.NewPCG(23, 24))
	shifted := slices.Clone(b)
	var in [2][2]int // [without, with][logo, renewed ARR]
	for range reps {
		shift := sd * r.NormFloat64()
		for i, a := range b {
			if a.Pending {
				shifted[i].P = 1 / (1 + math.Exp(-(math.Log(a.P/(1-a.P)) + shift)))
			}
		}
		real := realise(r, shifted, rates)
		for k, f := range []*forecastv1.PortfolioForecast{without, with} {
			rg := f.GetRanges()
			for q, x := range []struct {
				r *forecastv1.Range
				v float64
			}{{rg.GetLogoRetention(), real.LogoRetention()}, {rg.GetRenewedArr(), real.After}} {
				if x.v >= x.r.GetP10() && x.v <= x.r.GetP90() {
					in[k][q]++
				}
			}
		}
	}
	tol := 3 * math.Sqrt(want*(1-want)/reps)
	for q, name := range []string{"logo retention", "renewed ARR"} {
		before, after := float64(in[0][q])/reps, float64(in[1][q])/reps
		t.Logf("%-14s covered %.1f%% without the level's uncertainty, %.1f%% with it (stated 80%% ± %.1f%%)", name, 100*before, 100*after, 100*tol)
		if math.Abs(after-want) > tol {
			t.Errorf("%s: coverage %.3f with LevelSD, want %.2f ± %.3f", name, after, want, tol)
		}
		if before >= after {
			t.Errorf("%s: coverage %.3f without LevelSD, %.3f with: the level's uncertainty should widen the range", name, before, after)
		}
	}
}
