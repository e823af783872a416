package retention

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func usd(units int64) *accountv1.Money { return &accountv1.Money{CurrencyCode: "USD", Units: units} }

type outcome struct {
	typ           accountv1.OutcomeType
	at            time.Time
	before, after int64
}

const (
	renewed    = accountv1.OutcomeType_OUTCOME_TYPE_RENEWED
	expanded   = accountv1.OutcomeType_OUTCOME_TYPE_EXPANDED
	contracted = accountv1.OutcomeType_OUTCOME_TYPE_CONTRACTED
	churned    = accountv1.OutcomeType_OUTCOME_TYPE_CHURNED
)

// account builds an account as AccountService leaves it after its outcomes:
// its ARR is the last outcome's ARR after.
func account(id string, since time.Time, arr int64, tier accountv1.Tier, outcomes ...outcome) *accountv1.Account {
	a := &accountv1.Account{AccountId: id, ContractStartTime: timestamppb.New(since), Arr: usd(arr), Tier: tier}
	for _, o := range outcomes {
		a.Outcomes = append(a.Outcomes, &accountv1.RenewalOutcome{
			AccountId: id, Type: o.typ, OutcomeTime: timestamppb.New(o.at),
			ArrBefore: usd(o.before), ArrAfter: usd(o.after),
		})
		a.Arr = usd(o.after)
	}
	return a
}

func report(accounts []*accountv1.Account, p Period, now time.Time) *Report {
	r := NewReport()
	for _, a := range accounts {
		c, st := Actual(a, p, now)
		keys := KeysOf(a, "")
		switch st {
		case Present:
			r.Add(keys, c, 1)
		case New:
			r.AddNew(keys)
		}
	}
	return r
}

const std, growth = accountv1.Tier_TIER_STANDARD, accountv1.Tier_TIER_GROWTH

// q1Book is the hand-computed portfolio of Q1 2025; see TestRetentionFormulas.
func q1Book() []*accountv1.Account {
	old := date(2023, 1, 1)
	j := account("J-pending", old, 30, std)
	j.RenewalTime = timestamppb.New(date(2025, 3, 1))
	return []*accountv1.Account{
		account("A-flat", old, 100, std),
		account("B-renewed", old, 50, std, outcome{renewed, date(2025, 2, 10), 50, 50}),
		account("C-expanded", date(2022, 6, 1), 0, growth, outcome{expanded, date(2025, 3, 1), 80, 120}),
		account("D-contracted", old, 0, std, outcome{contracted, date(2025, 2, 1), 60, 45}),
		account("E-churned", old, 0, std, outcome{churned, date(2025, 3, 15), 40, 0}),
		account("F-new-mid-period", date(2025, 2, 1), 70, growth),
		account("G-churned-before", old, 0, std, outcome{churned, date(2024, 12, 1), 90, 0}),
		account("H-starts-after", date(2025, 5, 1), 55, std),
		account("I-expanded-then-churned", old, 0, growth,
			outcome{expanded, date(2025, 1, 10), 100, 150}, outcome{churned, date(2025, 3, 20), 150, 0}),
		j,
	}
}

// TestRetentionFormulas checks every figure against the hand computation:
//
//	present: A 100, B 50, C 80, D 60, E 40, I 100, J 30      starting ARR 460
//	F started mid-period (excluded), G churned before, H starts after
//	churned: E 40 + I 100 (its starting ARR, not the 150 it expanded to) = 140
//	contraction: D 60→45 = 15; expansion: C 80→120 = 40
//	GRR = (460-140-15)/460 = 305/460; NRR = (305+40)/460 = 345/460
//	logos: 7 present, 2 lost: 5/7
//	renewals: B, C, D, E, I twice = 6; before 480, kept 275, after 365
//	J's renewal date passed with no outcome: 1 pending
func TestRetentionFormulas(t *testing.T) {
	p := PeriodOf(forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER, date(2025, 2, 14))
	m := report(q1Book(), p, date(2025, 4, 10)).Total.Metrics(p.Months())
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"accounts", float64(m.GetAccounts()), 7},
		{"new accounts", float64(m.GetNewAccounts()), 1},
		{"starting ARR", m.GetStartingArr(), 460},
		{"churned ARR", m.GetChurnedArr(), 140},
		{"contraction", m.GetContractionArr(), 15},
		{"expansion", m.GetExpansionArr(), 40},
		{"ending ARR", m.GetEndingArr(), 345},
		{"churned accounts", m.GetChurnedAccounts(), 2},
		{"GRR", m.GetGrr(), 305.0 / 460},
		{"NRR", m.GetNrr(), 345.0 / 460},
		{"logo retention", m.GetLogoRetention(), 5.0 / 7},
		{"monthly logo churn", m.GetMonthlyLogoChurnRate(), 1 - math.Pow(5.0/7, 1.0/3)},
		{"monthly revenue churn", m.GetMonthlyRevenueChurnRate(), 1 - math.Pow(305.0/460, 1.0/3)},
		{"renewals", float64(m.GetRenewals()), 6},
		{"renewals ARR", m.GetRenewalsArr(), 480},
		{"renewed ARR", m.GetRenewedArr(), 365},
		{"pure renewal rate", m.GetPureRenewalRate(), 275.0 / 480},
		{"renewal rate with expansion", m.GetRenewalRateWithExpansion(), 365.0 / 480},
		{"pending renewals", float64(m.GetPendingRenewals()), 1},
	} {
		if math.Abs(tc.got-tc.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestRetentionBreakdown checks a slice: the growth tier holds C (80→120)
// and I (100, churned), and F, excluded as new.
func TestRetentionBreakdown(t *testing.T) {
	p := PeriodOf(forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER, date(2025, 1, 1))
	r := report(q1Book(), p, date(2025, 4, 10))
	g := r.Slices[Key{forecastv1.Dimension_DIMENSION_TIER, "growth"}].Metrics(3)
	if g.GetAccounts() != 2 || g.GetNewAccounts() != 1 || g.GetStartingArr() != 180 || g.GetChurnedArr() != 100 ||
		g.GetExpansionArr() != 40 || math.Abs(g.GetGrr()-80.0/180) > 1e-9 || math.Abs(g.GetNrr()-120.0/180) > 1e-9 {
		t.Errorf("growth slice = %v", g)
	}
	var sum float64
	for k, s := range r.Slices {
		if k.Dim == forecastv1.Dimension_DIMENSION_TIER {
			sum += s.Start
		}
	}
	if sum != r.Total.Start {
		t.Errorf("tier slices' starting ARR %v, total %v", sum, r.Total.Start)
	}
}

func TestRetentionEdges(t *testing.T) {
	old := date(2020, 1, 1)
	p := PeriodOf(forecastv1.PeriodUnit_PERIOD_UNIT_MONTH, date(2025, 6, 10))
	now := date(2025, 8, 1)
	for _, tc := range []struct {
		name               string
		accounts           []*accountv1.Account
		grr, nrr, logo     float64
		accounts0, newAccs int32
	}{
		{
			name:     "expansion only: GRR stays at 100%",
			accounts: []*accountv1.Account{account("x", old, 0, std, outcome{expanded, date(2025, 6, 5), 100, 300})},
			grr:      1, nrr: 3, logo: 1, accounts0: 1,
		},
		{
			name: "expanded then contracted below the start: netted to a contraction",
			accounts: []*accountv1.Account{account("x", old, 0, std,
				outcome{expanded, date(2025, 6, 2), 100, 200}, outcome{contracted, date(2025, 6, 20), 200, 80})},
			grr: 0.8, nrr: 0.8, logo: 1, accounts0: 1,
		},
		{
			name: "expanded then partly contracted: still an expansion, GRR not above 100%",
			accounts: []*accountv1.Account{account("x", old, 0, std,
				outcome{expanded, date(2025, 6, 2), 100, 200}, outcome{contracted, date(2025, 6, 20), 200, 150})},
			grr: 1, nrr: 1.5, logo: 1, accounts0: 1,
		},
		{
			name:     "outcome at the period start counts in it",
			accounts: []*accountv1.Account{account("x", old, 0, std, outcome{churned, date(2025, 6, 1), 100, 0})},
			grr:      0, nrr: 0, logo: 0, accounts0: 1,
		},
		{
			name:     "outcome at the period end belongs to the next",
			accounts: []*accountv1.Account{account("x", old, 0, std, outcome{churned, date(2025, 7, 1), 100, 0})},
			grr:      1, nrr: 1, logo: 1, accounts0: 1,
		},
		{
			name: "only new accounts: nothing to retain",
			accounts: []*accountv1.Account{account("x", date(2025, 6, 3), 100, std),
				account("y", date(2025, 6, 28), 20, growth)},
			newAccs: 2,
		},
		{
			name: "contract start moved to the new term: the renewal proves the old one",
			accounts: []*accountv1.Account{account("x", date(2025, 6, 15), 0, std,
				outcome{renewed, date(2025, 6, 15), 100, 100})},
			grr: 1, nrr: 1, logo: 1, accounts0: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := report(tc.accounts, p, now).Total.Metrics(1)
			if m.GetAccounts() != tc.accounts0 || m.GetNewAccounts() != tc.newAccs ||
				math.Abs(m.GetGrr()-tc.grr) > 1e-9 || math.Abs(m.GetNrr()-tc.nrr) > 1e-9 || math.Abs(m.GetLogoRetention()-tc.logo) > 1e-9 {
				t.Errorf("got accounts %d new %d GRR %v NRR %v logo %v; want %d %d %v %v %v",
					m.GetAccounts(), m.GetNewAccounts(), m.GetGrr(), m.GetNrr(), m.GetLogoRetention(),
					tc.accounts0, tc.newAccs, tc.grr, tc.nrr, tc.logo)
			}
		})
	}
}

// TestGRRNeverAboveOne draws random outcome chains: GRR stays in [0, 1] and
// never exceeds NRR.
func TestGRRNeverAboveOne(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	p := PeriodOf(forecastv1.PeriodUnit_PERIOD_UNIT_YEAR, date(2025, 1, 1))
	types := []accountv1.OutcomeType{renewed, expanded, contracted, churned}
	for range 200 {
		var book []*accountv1.Account
		for i := range 20 {
			var os []outcome
			arr := int64(10 + r.IntN(100))
			for k := range r.IntN(4) {
				typ := types[r.IntN(4)]
				after := arr
				switch typ {
				case expanded:
					after = arr + int64(1+r.IntN(50))
				case contracted:
					after = arr * int64(1+r.IntN(9)) / 10
				case churned:
					after = 0
				}
				os = append(os, outcome{typ, date(2024, 6, 1).AddDate(0, 3*k+r.IntN(3), 0), arr, after})
				if after == 0 {
					break
				}
				arr = after
			}
			book = append(book, account(string(rune('a'+i)), date(2022, 1, 1), arr, std, os...))
		}
		m := report(book, p, date(2026, 1, 1)).Total.Metrics(12)
		if m.GetGrr() > 1 || m.GetGrr() < 0 || m.GetGrr() > m.GetNrr()+1e-12 {
			t.Fatalf("GRR %v, NRR %v", m.GetGrr(), m.GetNrr())
		}
	}
}

func TestPeriodOf(t *testing.T) {
	for _, tc := range []struct {
		unit       forecastv1.PeriodUnit
		at         time.Time
		start, end time.Time
	}{
		{forecastv1.PeriodUnit_PERIOD_UNIT_MONTH, date(2025, 2, 28), date(2025, 2, 1), date(2025, 3, 1)},
		{forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER, date(2025, 6, 30), date(2025, 4, 1), date(2025, 7, 1)},
		{forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER, date(2025, 12, 31), date(2025, 10, 1), date(2026, 1, 1)},
		{forecastv1.PeriodUnit_PERIOD_UNIT_YEAR, date(2024, 7, 4), date(2024, 1, 1), date(2025, 1, 1)},
	} {
		p := PeriodOf(tc.unit, tc.at.Add(13*time.Hour))
		if !p.Start.Equal(tc.start) || !p.End.Equal(tc.end) || !p.Next().Start.Equal(tc.end) {
			t.Errorf("PeriodOf(%v, %v) = [%v, %v)", tc.unit, tc.at, p.Start, p.End)
		}
	}
}
