package api

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/model"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/portfolio"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/retention"
)

// GetPortfolioForecast forecasts one period of the tenant's book.
func (s *Server) GetPortfolioForecast(ctx context.Context, req *forecastv1.GetPortfolioForecastRequest) (*forecastv1.GetPortfolioForecastResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	bad.unit(req.GetUnit())
	bad.timestamp("time", req.GetTime())
	bad.currency(req.GetCurrencyCode())
	if n := req.GetSimulations(); n < 0 || n > maxSimulations {
		bad.add("simulations", "must be 0 to %d", maxSimulations)
	}
	if err := bad.err("invalid portfolio forecast request"); err != nil {
		return nil, err
	}
	now := s.now()
	unit, at := req.GetUnit(), now
	if unit == forecastv1.PeriodUnit_PERIOD_UNIT_UNSPECIFIED {
		unit = forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER
	}
	if req.GetTime() != nil {
		at = req.GetTime().AsTime()
	}
	p := retention.PeriodOf(unit, at)
	sims, seed := int(req.GetSimulations()), req.GetSeed()
	if sims == 0 {
		sims = s.cfg.Simulations
	}
	if seed == 0 {
		seed = s.cfg.Seed
	}

	v := s.store.View(tenant)
	currency := req.GetCurrencyCode()
	if currency == "" {
		currency = retention.MainCurrency(v.Accounts)
	}
	accounts, excluded := inCurrency(v.Accounts, currency)
	m, rates := s.modelFor(tenant, v)
	cfg := portfolio.Config{
		Rates:       rates,
		Simulations: sims,
		Seed:        [2]uint64{seed, streamOf(tenant, p)},
		AtRiskBelow: s.cfg.AtRiskBelow,
		Months:      p.Months(),
	}
	var book []portfolio.Account
	var pending []model.Inputs
	for _, acc := range accounts {
		known, st := retention.Actual(acc, p, now)
		scores := v.Scores(acc.GetAccountId())
		latest, _ := scores.Latest()
		keys := retention.KeysOf(acc, bandName(latest.Band))
		switch st {
		case retention.New:
			cfg.New = append(cfg.New, keys)
			continue
		case retention.Absent:
			continue
		}
		// A forecast tells pending renewals apart from known outcomes itself.
		known.Pending = 0
		a := portfolio.Account{Keys: keys, Known: known}
		if f := s.forecastOf(acc, scores, m, rates, now); !known.Lost && f.hasRenewal && !f.renewal.Before(p.Start) && f.renewal.Before(p.End) {
			a.Pending, a.ARR, a.P, a.Signal = true, known.End, f.GetRenewalProbability(), f.GetExpansionSignal()
			pending = append(pending, f.inputs)
		}
		book = append(book, a)
	}
	cfg.LevelSD = m.LevelSD(pending)
	total, breakdown := portfolio.Forecast(book, cfg)
	return &forecastv1.GetPortfolioForecastResponse{
		Period:           p.Proto(),
		CurrencyCode:     currency,
		Total:            total,
		Breakdown:        breakdown,
		Model:            m.Proto(),
		Simulations:      int32(sims),
		Seed:             seed,
		ExcludedAccounts: int32(excluded),
	}, nil
}

// streamOf is the second word of a forecast's seed: the same seed gives a
// tenant's period the same draws, and other tenants and periods other ones.
func streamOf(tenant string, p retention.Period) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d\x00%d", tenant, p.Unit, p.Start.Unix())
	return h.Sum64()
}

// GetRetentionMetrics reports the retention realised per period.
func (s *Server) GetRetentionMetrics(ctx context.Context, req *forecastv1.GetRetentionMetricsRequest) (*forecastv1.GetRetentionMetricsResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var bad violations
	bad.unit(req.GetUnit())
	bad.window(req.GetStartTime(), req.GetEndTime())
	bad.currency(req.GetCurrencyCode())
	unit := req.GetUnit()
	if unit == forecastv1.PeriodUnit_PERIOD_UNIT_UNSPECIFIED {
		unit = forecastv1.PeriodUnit_PERIOD_UNIT_MONTH
	}
	now := s.now()
	end := now
	if req.GetEndTime() != nil {
		end = req.GetEndTime().AsTime()
	}
	start := retention.PeriodOf(unit, end).Start.AddDate(0, -11*retention.Months(unit), 0)
	if req.GetStartTime() != nil {
		start = req.GetStartTime().AsTime()
	}
	var periods []retention.Period
	for p := retention.PeriodOf(unit, start); p.Start.Before(end) && len(periods) <= maxPeriods; p = p.Next() {
		periods = append(periods, p)
	}
	if len(periods) > maxPeriods {
		bad.add("start_time", "the window spans more than %d periods", maxPeriods)
	}
	if err := bad.err("invalid retention request"); err != nil {
		return nil, err
	}

	v := s.store.View(tenant)
	currency := req.GetCurrencyCode()
	if currency == "" {
		currency = retention.MainCurrency(v.Accounts)
	}
	accounts, excluded := inCurrency(v.Accounts, currency)
	resp := &forecastv1.GetRetentionMetricsResponse{CurrencyCode: currency, ExcludedAccounts: int32(excluded)}
	for _, p := range periods {
		r := actuals(v, accounts, p, now)
		resp.Periods = append(resp.Periods, &forecastv1.PeriodRetention{
			Period:    p.Proto(),
			Total:     r.Total.Metrics(p.Months()),
			Breakdown: r.Breakdown(p.Months()),
		})
	}
	return resp, nil
}

// actuals is the realised retention of one period, broken down by the band
// each account had at the period start.
func actuals(v history.Source, accounts []*accountv1.Account, p retention.Period, now time.Time) *retention.Report {
	r := retention.NewReport()
	for _, acc := range accounts {
		c, st := retention.Actual(acc, p, now)
		if st == retention.Absent {
			continue
		}
		at, _ := v.Scores(acc.GetAccountId()).At(p.Start)
		keys := retention.KeysOf(acc, bandName(at.Band))
		if st == retention.New {
			r.AddNew(keys)
			continue
		}
		r.Add(keys, c, 1)
	}
	return r
}
