package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// renewals lists the renewals due in the next days, riskiest first.
func renewals(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("renewals", flag.ContinueOnError)
	days := fs.Int("days", 90, "Renewals due within this many days from now.")
	atRisk := fs.Bool("at-risk", false, "Only renewals below the at-risk threshold.")
	bandName := fs.String("band", "", "Only accounts in this band: red, yellow or green.")
	tierName := fs.String("tier", "", "Only accounts of this tier: benchmark, growth or standard.")
	owner := fs.String("owner", "", "Only accounts this CSM owns.")
	segment := fs.String("segment", "", "Only accounts of this segment.")
	order := fs.String("order", "risk", "Order: risk (lowest probability first), arr (largest first) or date (soonest first).")
	n := fs.Int("n", 50, "Renewals to list.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *days < 1 || *n < 1 {
		return usagef("renewals: -days and -n: want at least 1")
	}
	now := e.now()
	req := &forecastv1.ListRenewalsRequest{
		StartTime: timestamppb.New(now), EndTime: timestamppb.New(now.AddDate(0, 0, *days)),
		OwnerCsmId: *owner, Segment: *segment, AtRiskOnly: *atRisk,
	}
	var err error
	if *bandName != "" {
		if req.Band, err = parseEnum[scoringv1.Band](scoringv1.Band_value, "BAND_", *bandName); err != nil {
			return usagef("renewals: -band: %v", err)
		}
	}
	if *tierName != "" {
		if req.Tier, err = parseEnum[accountv1.Tier](accountv1.Tier_value, "TIER_", *tierName); err != nil {
			return usagef("renewals: -tier: %v", err)
		}
	}
	orders := map[string]forecastv1.ListRenewalsOrder{
		"risk": forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_RISK,
		"arr":  forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_ARR,
		"date": forecastv1.ListRenewalsOrder_LIST_RENEWALS_ORDER_RENEWAL_TIME,
	}
	var ok bool
	if req.OrderBy, ok = orders[*order]; !ok {
		return usagef("renewals: -order %q: want risk, arr or date", *order)
	}
	var (
		all   []*forecastv1.AccountForecast
		total int32
	)
	for len(all) < *n {
		req.PageSize = int32(min(*n-len(all), maxPageSize))
		resp, err := e.forecast.ListRenewals(ctx, req)
		if err != nil {
			return failed("list renewals", err)
		}
		all, total = append(all, resp.Renewals[:min(len(resp.Renewals), *n-len(all))]...), resp.TotalSize
		if req.PageToken = resp.NextPageToken; req.PageToken == "" {
			break
		}
	}
	if e.json {
		return e.printJSON(&forecastv1.ListRenewalsResponse{Renewals: all, TotalSize: total})
	}
	if len(all) == 0 {
		_, err := fmt.Fprintf(e.out, "no renewals due within %d days\n", *days)
		return err
	}
	tw := newTable(e.out)
	fmt.Fprintln(tw, "ACCOUNT\tNAME\tRENEWAL\tWHEN\tARR\tRENEWS\tEXPECTED ARR\tSCORE\tOWNER\tSUMMARY")
	var arr, expected float64
	currency := ""
	for _, r := range all {
		health := "-"
		if r.HasScore {
			health = humanize.Score(r.HealthScore) + " " + enumName(r.Band, "BAND_")
		}
		risk := ""
		if r.AtRisk {
			risk = " at risk"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s%s\t%s\t%s\t%s\t%s\n", r.AccountId, orDash(r.AccountName), e.date(r.RenewalTime),
			e.relative(r.RenewalTime), money(r.Arr), humanize.Percent(r.RenewalProbability), risk,
			humanize.Money(r.ExpectedArrAfter, r.GetArr().GetCurrencyCode()), health, orDash(r.OwnerCsmId), r.Summary)
		if currency == "" || currency == r.GetArr().GetCurrencyCode() {
			currency = r.GetArr().GetCurrencyCode()
			arr += float64(r.GetArr().GetUnits())
			expected += r.ExpectedArrAfter
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.out, "\n%s of %s due within %d days listed: %s ARR up for renewal, %s expected after it\n",
		humanize.Int(int64(len(all))), plural(int(total), "renewal"), *days, humanize.Money(arr, currency), humanize.Money(expected, currency))
	return err
}

// forecast prints the portfolio forecast of a period, or one account's
// renewal forecast with -account.
func forecast(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("forecast", flag.ContinueOnError)
	unitName := fs.String("unit", "quarter", "Period: month, quarter or year (the one under way).")
	by := fs.String("by", "", "Break down by band, tier, owner or segment.")
	account := fs.String("account", "", "One account's renewal forecast, with the factors that move it.")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *account != "" {
		return accountForecast(ctx, e, *account)
	}
	unit, err := parseEnum[forecastv1.PeriodUnit](forecastv1.PeriodUnit_value, "PERIOD_UNIT_", *unitName)
	if err != nil {
		return usagef("forecast: -unit: %v", err)
	}
	var dim forecastv1.Dimension
	if *by != "" {
		if dim, err = parseEnum[forecastv1.Dimension](forecastv1.Dimension_value, "DIMENSION_", *by); err != nil {
			return usagef("forecast: -by: %v", err)
		}
	}
	resp, err := e.forecast.GetPortfolioForecast(ctx, &forecastv1.GetPortfolioForecastRequest{Unit: unit, Time: timestamppb.New(e.now())})
	if err != nil {
		return failed("get portfolio forecast", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	cur := resp.CurrencyCode
	p := resp.Period
	fmt.Fprintf(e.out, "Forecast for the %s %s to %s (%s), in %s; model %s, %s simulations\n\n",
		enumName(p.GetUnit(), "PERIOD_UNIT_"), e.date(p.GetStartTime()), e.date(p.GetEndTime()), e.relative(p.GetEndTime()), orDash(cur),
		modelName(resp.Model), humanize.Int(int64(resp.Simulations)))
	t := resp.Total
	x := t.GetExpected()
	r := t.GetRanges()
	tw := newTable(e.out)
	fmt.Fprintln(tw, "\tEXPECTED\tP10-P90")
	fmt.Fprintf(tw, "GRR\t%s\t%s\n", humanize.Percent(x.GetGrr()), percentRange(r.GetGrr()))
	fmt.Fprintf(tw, "NRR\t%s\t%s\n", humanize.Percent(x.GetNrr()), percentRange(r.GetNrr()))
	fmt.Fprintf(tw, "Logo retention\t%s\t%s\n", humanize.Percent(x.GetLogoRetention()), percentRange(r.GetLogoRetention()))
	fmt.Fprintf(tw, "Starting ARR\t%s\t\n", humanize.Money(x.GetStartingArr(), cur))
	fmt.Fprintf(tw, "Churned ARR\t%s\t%s\n", humanize.Money(x.GetChurnedArr(), cur), moneyRange(r.GetChurnedArr(), cur))
	fmt.Fprintf(tw, "Contraction\t%s\t%s\n", humanize.Money(x.GetContractionArr(), cur), moneyRange(r.GetContractionArr(), cur))
	fmt.Fprintf(tw, "Expansion\t%s\t%s\n", humanize.Money(x.GetExpansionArr(), cur), moneyRange(r.GetExpansionArr(), cur))
	fmt.Fprintf(tw, "Accounts\t%s (%s expected to churn)\t%s\n", humanize.Int(int64(x.GetAccounts())), number1(x.GetChurnedAccounts()), numberRange(r.GetChurnedAccounts()))
	fmt.Fprintf(tw, "Renewals pending\t%s, %s ARR, %s of it at risk\t\n", humanize.Int(int64(t.GetPendingRenewals())), humanize.Money(t.GetPendingArr(), cur), humanize.Money(t.GetAtRiskArr(), cur))
	if err := tw.Flush(); err != nil {
		return err
	}
	if resp.ExcludedAccounts > 0 {
		fmt.Fprintf(e.out, "%s left out: ARR in another currency\n", plural(int(resp.ExcludedAccounts), "account"))
	}
	if dim == 0 {
		return nil
	}
	fmt.Fprintln(e.out)
	tw = newTable(e.out)
	fmt.Fprintf(tw, "%s\tACCOUNTS\tSTARTING ARR\tGRR\tNRR\tLOGO RETENTION\tAT-RISK ARR\n", strings.ToUpper(*by))
	for _, s := range resp.Breakdown {
		if s.Dimension != dim {
			continue
		}
		f, x := s.Forecast, s.Forecast.GetExpected()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s (%s)\t%s (%s)\t%s\n", s.Key, humanize.Int(int64(x.GetAccounts())), humanize.Money(x.GetStartingArr(), cur),
			humanize.Percent(x.GetGrr()), percentRange(f.GetRanges().GetGrr()), humanize.Percent(x.GetNrr()), percentRange(f.GetRanges().GetNrr()),
			humanize.Percent(x.GetLogoRetention()), percentRange(f.GetRanges().GetLogoRetention()), humanize.Money(f.GetAtRiskArr(), cur))
	}
	return tw.Flush()
}

// accountForecast prints one account's renewal forecast and its factors.
func accountForecast(ctx context.Context, e *env, account string) error {
	resp, err := e.forecast.GetAccountForecast(ctx, &forecastv1.GetAccountForecastRequest{AccountId: account})
	if err != nil {
		return failed("get account forecast", err)
	}
	if e.json {
		return e.printJSON(resp)
	}
	f := resp.Forecast
	cur := f.GetArr().GetCurrencyCode()
	tw := newTable(e.out)
	fmt.Fprintf(tw, "Account:\t%s  %s\n", f.AccountId, f.AccountName)
	fmt.Fprintf(tw, "Renewal:\t%s\n", e.dateAndWhen(f.RenewalTime))
	fmt.Fprintf(tw, "Renews:\t%s (contracts %s, expands %s)\n", humanize.Percent(f.RenewalProbability), humanize.Percent(f.ContractionProbability), humanize.Percent(f.ExpansionProbability))
	fmt.Fprintf(tw, "ARR:\t%s now, %s expected after the renewal\n", money(f.Arr), humanize.Money(f.ExpectedArrAfter, cur))
	if f.HasScore {
		fmt.Fprintf(tw, "Health:\t%s %s (%s over 30 days)\n", humanize.Score(f.HealthScore), enumName(f.Band, "BAND_"), humanize.ScoreDelta(f.ScoreTrend_30D))
	}
	fmt.Fprintf(tw, "Summary:\t%s\n", f.Summary)
	fmt.Fprintf(tw, "Model:\t%s\n", modelName(resp.Model))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(f.Factors) == 0 {
		return nil
	}
	fmt.Fprintln(e.out)
	tw = newTable(e.out)
	fmt.Fprintln(tw, "FACTOR\tVALUE\tPOINTS")
	for _, x := range f.Factors {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", x.Name, orDash(x.Detail), humanize.ScoreDelta(x.Points))
	}
	return tw.Flush()
}

func modelName(m *forecastv1.Model) string {
	if m.GetKind() == forecastv1.ModelKind_MODEL_KIND_FITTED {
		return fmt.Sprintf("fitted to %s (%s churned)", plural(int(m.Outcomes), "renewal"), humanize.Int(int64(m.Churned)))
	}
	return enumName(m.GetKind(), "MODEL_KIND_")
}

func percentRange(r *forecastv1.Range) string {
	if r == nil {
		return "-"
	}
	return humanize.Percent(r.P10) + " to " + humanize.Percent(r.P90)
}

func moneyRange(r *forecastv1.Range, currency string) string {
	if r == nil {
		return "-"
	}
	return humanize.Money(r.P10, currency) + " to " + humanize.Money(r.P90, currency)
}

func numberRange(r *forecastv1.Range) string {
	if r == nil {
		return "-"
	}
	return number1(r.P10) + " to " + number1(r.P90)
}

// number1 prints an expected count with one decimal: "3.4".
func number1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
