// Package portfolio forecasts a period's renewals for a book of accounts:
// the expected values of the retention numbers and their 10th-90th
// percentile range, by Monte Carlo simulation over account outcomes.
//
// Each pending renewal ends in one of four outcomes: churn (1 - p, p the
// renewal model's probability), or a renewal that contracts, stays flat or
// expands, by the tenant's rates (Rates). Outcomes already recorded in the
// period are facts, not draws. Expectations and draws both add up through
// retention.Totals, so the forecast's GRR, NRR and logo retention are the
// actuals' formulas applied to expected and simulated outcomes.
//
// The ranges carry the model's own uncertainty as well as the randomness of
// outcomes: each draw first shifts every pending renewal's log-odds by one
// common amount, drawn from N(0, LevelSD²) (the model's uncertainty about
// the book, model.LevelSD), then draws the accounts' outcomes independently
// at the shifted probabilities. Without the shift a model whose level is off
// by two points states ranges that cover the outcome far less often than
// they claim. The expected values are at the model's probabilities.
//
// The simulation is seeded: the same book, configuration and seed give the
// same ranges.
package portfolio

import (
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/stat"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
)

// Rates are how renewals that do not churn turn out.
type Rates struct {
	// Contraction is the probability that a renewal contracts, and
	// ContractionShare the share of ARR it loses then.
	Contraction, ContractionShare float64
	// Expansion is the probability that a renewal expands without an
	// expansion signal, ExpansionSignal with one; ExpansionUplift the share
	// of ARR it gains then.
	Expansion, ExpansionSignal, ExpansionUplift float64
}

// DefaultRates are typical B2B SaaS figures, used until a tenant's outcomes
// say otherwise: one renewal in ten contracts, by a quarter; one in ten
// expands, four in ten when seats are nearly all used, by a fifth.
func DefaultRates() Rates {
	return Rates{Contraction: 0.10, ContractionShare: 0.25, Expansion: 0.10, ExpansionSignal: 0.40, ExpansionUplift: 0.20}
}

// Observed is one recorded renewal, for estimating rates.
type Observed struct {
	Type          accountv1.OutcomeType
	Before, After float64
	// Signal: the account showed an expansion signal before the renewal.
	Signal bool
}

// Pseudo-observations of the default rates that a tenant's own outcomes are
// pooled with: a rate moves halfway to the tenant's after priorRenewals
// renewals, an amount after priorAmounts.
const (
	priorRenewals = 20
	priorAmounts  = 5
)

// EstimateRates pools a tenant's recorded renewals with the default rates
// (a Beta prior on each rate, a normal one on each amount share), so that a
// few outcomes nudge them and many decide them.
func EstimateRates(obs []Observed) Rates {
	d := DefaultRates()
	var renewed, contracted, signal, expandedSignal, plain, expandedPlain float64
	var shares, uplifts []float64
	for _, o := range obs {
		if o.Type == accountv1.OutcomeType_OUTCOME_TYPE_CHURNED || o.Before <= 0 {
			continue
		}
		renewed++
		switch {
		case o.After < o.Before:
			contracted++
			shares = append(shares, (o.Before-o.After)/o.Before)
		case o.After > o.Before:
			uplifts = append(uplifts, (o.After-o.Before)/o.Before)
		}
		expanded := 0.0
		if o.After > o.Before {
			expanded = 1
		}
		if o.Signal {
			signal, expandedSignal = signal+1, expandedSignal+expanded
		} else {
			plain, expandedPlain = plain+1, expandedPlain+expanded
		}
	}
	pool := func(k, n, prior, m float64) float64 { return (k + prior*m) / (n + m) }
	sum := floats.Sum
	return Rates{
		Contraction:      pool(contracted, renewed, d.Contraction, priorRenewals),
		ContractionShare: pool(sum(shares), float64(len(shares)), d.ContractionShare, priorAmounts),
		Expansion:        pool(expandedPlain, plain, d.Expansion, priorRenewals),
		ExpansionSignal:  pool(expandedSignal, signal, d.ExpansionSignal, priorRenewals),
		ExpansionUplift:  pool(sum(uplifts), float64(len(uplifts)), d.ExpansionUplift, priorAmounts),
	}
}

// Outcome is one way a pending renewal can end.
type Outcome struct {
	Prob, After float64
	Churned     bool
}

// Outcomes are the four ways a renewal of arr with renewal probability p
// can end: churn, contraction, flat, expansion.
func (r Rates) Outcomes(arr, p float64, signal bool) [4]Outcome {
	expand := r.Expansion
	if signal {
		expand = r.ExpansionSignal
	}
	contract := min(r.Contraction, 1-expand)
	return [4]Outcome{
		{Prob: 1 - p, After: 0, Churned: true},
		{Prob: p * contract, After: arr * (1 - r.ContractionShare)},
		{Prob: p * (1 - contract - expand), After: arr},
		{Prob: p * expand, After: arr * (1 + r.ExpansionUplift)},
	}
}

// Account is one account of the book in the period.
type Account struct {
	Keys retention.Keys
	// Known is what recorded outcomes say of the period so far.
	Known retention.Change
	// Pending is set when a renewal in the period has no outcome yet; it is
	// of ARR, renews with probability P and may show an expansion signal.
	Pending bool
	ARR, P  float64
	Signal  bool
}

// Config tunes a forecast.
type Config struct {
	Rates Rates
	// Simulations is the number of Monte Carlo draws, Seed their seed.
	Simulations int
	Seed        [2]uint64
	// AtRiskBelow is the renewal probability below which a pending renewal's
	// ARR is at risk.
	AtRiskBelow float64
	// LevelSD is the standard deviation, in log-odds, of the model's
	// uncertainty about the book's level (model.LevelSD); 0 draws outcomes
	// at the model's probabilities as if they were known.
	LevelSD float64
	// Months is the period's length in months.
	Months int
	// New counts the accounts excluded for starting within the period, by keys.
	New []retention.Keys
}

// The quantiles of a range.
const (
	lowQuantile  = 0.1
	highQuantile = 0.9
)

// Forecast forecasts the period for the book: the total and every
// breakdown slice.
func Forecast(book []Account, cfg Config) (*forecastv1.PortfolioForecast, []*forecastv1.PortfolioSlice) {
	expected, known := retention.NewReport(), retention.NewReport()
	for _, k := range cfg.New {
		expected.AddNew(k)
	}
	pending := map[retention.Key]*pendingTotals{}
	addPending := func(keys retention.Keys, a Account) {
		all := keys.Slices()
		for _, k := range append(all[:], retention.Key{}) {
			pt, ok := pending[k]
			if !ok {
				pt = &pendingTotals{}
				pending[k] = pt
			}
			pt.n++
			pt.arr += a.ARR
			if a.P < cfg.AtRiskBelow {
				pt.atRisk += a.ARR
			}
		}
	}
	var draws []Account
	for _, a := range book {
		if !a.Pending {
			expected.Add(a.Keys, a.Known, 1)
			known.Add(a.Keys, a.Known, 1)
			continue
		}
		for _, o := range cfg.Rates.Outcomes(a.ARR, a.P, a.Signal) {
			expected.Add(a.Keys, a.Known.Renew(a.ARR, o.After, o.Churned), o.Prob)
		}
		addPending(a.Keys, a)
		draws = append(draws, a)
	}
	ranges := simulate(draws, known, cfg)

	slice := func(k retention.Key, t *retention.Totals) *forecastv1.PortfolioForecast {
		f := &forecastv1.PortfolioForecast{Expected: t.Metrics(cfg.Months), Ranges: ranges[k]}
		if pt := pending[k]; pt != nil {
			f.PendingRenewals, f.PendingArr, f.AtRiskArr = int32(pt.n), pt.arr, pt.atRisk
		}
		if f.Ranges == nil { // nothing pending: the outcome is known
			f.Ranges = fixedRanges(t)
		}
		return f
	}
	total := slice(retention.Key{}, &expected.Total)
	var out []*forecastv1.PortfolioSlice
	for _, k := range expected.SortedKeys() {
		out = append(out, &forecastv1.PortfolioSlice{Dimension: k.Dim, Key: k.Value, Forecast: slice(k, expected.Slices[k])})
	}
	return total, out
}

type pendingTotals struct {
	n           int
	arr, atRisk float64
}

// quantities are the ranged quantities of a forecast, in ForecastRanges order.
func quantities(t *retention.Totals) [8]float64 {
	return [8]float64{t.GRR(), t.NRR(), t.LogoRetention(), t.After, t.Churned, t.Contraction, t.Expansion, t.Lost}
}

func rangesOf(lo, hi [8]float64) *forecastv1.ForecastRanges {
	r := func(i int) *forecastv1.Range { return &forecastv1.Range{P10: lo[i], P90: hi[i]} }
	return &forecastv1.ForecastRanges{
		Grr: r(0), Nrr: r(1), LogoRetention: r(2), RenewedArr: r(3),
		ChurnedArr: r(4), ContractionArr: r(5), ExpansionArr: r(6), ChurnedAccounts: r(7),
	}
}

func fixedRanges(t *retention.Totals) *forecastv1.ForecastRanges {
	q := quantities(t)
	return rangesOf(q, q)
}

// simulate draws the pending renewals' outcomes cfg.Simulations times and
// returns the ranges of every slice with a pending renewal.
func simulate(draws []Account, known *retention.Report, cfg Config) map[retention.Key]*forecastv1.ForecastRanges {
	if len(draws) == 0 || cfg.Simulations <= 0 {
		return nil
	}
	// Slices by index, so that a draw works on arrays, not maps.
	index := map[retention.Key]int{retention.Key{}: 0}
	keys := []retention.Key{retention.Key{}}
	slot := func(k retention.Key) int {
		i, ok := index[k]
		if !ok {
			i = len(keys)
			index[k] = i
			keys = append(keys, k)
		}
		return i
	}
	slots := make([][5]int, len(draws))
	outcomes := make([][4]Outcome, len(draws))
	for i, a := range draws {
		for j, k := range a.Keys.Slices() {
			slots[i][j+1] = slot(k)
		}
		outcomes[i] = cfg.Rates.Outcomes(a.ARR, a.P, a.Signal)
	}
	base := make([]retention.Totals, len(keys))
	base[0] = known.Total
	for i, k := range keys[1:] {
		if t, ok := known.Slices[k]; ok {
			base[i+1] = *t
		}
	}
	logit := make([]float64, len(draws))
	for i, a := range draws {
		logit[i] = math.Log(a.P / (1 - a.P))
	}
	rng := rand.New(rand.NewPCG(cfg.Seed[0], cfg.Seed[1]))
	// Draws are kept as float32, ample for a percentile: 32 bytes per draw
	// and slice, 64 KB per slice at 2000 draws.
	samples := make([][8][]float32, len(keys))
	totals := make([]retention.Totals, len(keys))
	for range cfg.Simulations {
		copy(totals, base)
		shift := 0.0
		if cfg.LevelSD > 0 {
			shift = cfg.LevelSD * rng.NormFloat64()
		}
		for i, a := range draws {
			ways := outcomes[i]
			if shift != 0 {
				ways = cfg.Rates.Outcomes(a.ARR, 1/(1+math.Exp(-(logit[i]+shift))), a.Signal)
			}
			o := pick(ways, rng.Float64())
			c := a.Known.Renew(a.ARR, o.After, o.Churned)
			for _, s := range slots[i] {
				totals[s].Add(c, 1)
			}
		}
		for s := range totals {
			for q, v := range quantities(&totals[s]) {
				samples[s][q] = append(samples[s][q], float32(v))
			}
		}
	}
	out := make(map[retention.Key]*forecastv1.ForecastRanges, len(keys))
	for s, k := range keys {
		var lo, hi [8]float64
		xs := make([]float64, cfg.Simulations)
		for q, draws := range samples[s] {
			for i, v := range draws {
				xs[i] = float64(v)
			}
			slices.Sort(xs)
			lo[q] = stat.Quantile(lowQuantile, stat.Empirical, xs, nil)
			hi[q] = stat.Quantile(highQuantile, stat.Empirical, xs, nil)
		}
		out[k] = rangesOf(lo, hi)
	}
	return out
}

// pick chooses the outcome a uniform draw u falls on.
func pick(os [4]Outcome, u float64) Outcome {
	for _, o := range os[:3] {
		if u < o.Prob {
			return o
		}
		u -= o.Prob
	}
	return os[3]
}
