package web

import (
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Formatting for people: the templates never show a raw float or enum name.

var currencySymbols = map[string]string{"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

// amount formats an amount of a currency compactly: $2.3M, €840k, $950.
func amount(v float64, currency string) string {
	sym, ok := currencySymbols[currency]
	if !ok && currency != "" {
		sym = currency + " "
	}
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	var s string
	switch {
	case v >= 1e9:
		s = trimZero(fmt.Sprintf("%.1f", v/1e9)) + "B"
	case v >= 1e6:
		s = trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case v >= 1e4:
		s = fmt.Sprintf("%.0fk", v/1e3)
	default:
		s = thousands(int64(math.Round(v)))
	}
	return sign + sym + s
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

// thousands writes n with comma separators: 12,345.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// moneyValue is a Money as a float of whole units.
func moneyValue(m *accountv1.Money) float64 {
	return float64(m.GetUnits()) + float64(m.GetNanos())/1e9
}

func money(m *accountv1.Money) string {
	if m == nil {
		return "–"
	}
	return amount(moneyValue(m), m.GetCurrencyCode())
}

// percent formats a share (0.934) as 93.4%.
func percent(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return trimZero(fmt.Sprintf("%.1f", v*100)) + "%"
}

// score formats a 0-100 health score.
func score(v float64) string { return fmt.Sprintf("%.0f", v) }

// signed formats a change in points: +4, -12, 0.
func signed(v float64) string {
	r := math.Round(v)
	switch {
	case r > 0:
		return fmt.Sprintf("+%.0f", r)
	case r < 0:
		return fmt.Sprintf("−%.0f", -r)
	}
	return "0"
}

// number formats a measure's raw value: integers without decimals, others
// with up to two.
func number(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return thousands(int64(v))
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// dateIn formats a date in the tenant's zone: 6 Dec 2026.
func dateIn(loc *time.Location, ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "–"
	}
	return ts.AsTime().In(loc).Format("2 Jan 2006")
}

// dateTimeIn formats an instant in the tenant's zone: 6 Dec 2026 14:05 CET.
func dateTimeIn(loc *time.Location, ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "–"
	}
	return ts.AsTime().In(loc).Format("2 Jan 2006 15:04 MST")
}

// lastDayIn formats the day before an exclusive end: a period ending at
// 1 Jan 00:00 ends on 31 Dec.
func lastDayIn(loc *time.Location, end *timestamppb.Timestamp) string {
	if end == nil {
		return "–"
	}
	return dateIn(loc, timestamppb.New(end.AsTime().Add(-time.Nanosecond)))
}

// enumName turns BAND_RED, TIER_BENCHMARK or LIFECYCLE_STAGE_PRE_RENEWAL
// into "red", "benchmark" or "pre-renewal".
func enumName(full, prefix string) string {
	s := strings.TrimPrefix(full, prefix)
	if s == "UNSPECIFIED" || s == "" {
		return "–"
	}
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

func bandName(b scoringv1.Band) string            { return enumName(b.String(), "BAND_") }
func tierName(t accountv1.Tier) string            { return enumName(t.String(), "TIER_") }
func stageName(s accountv1.LifecycleStage) string { return enumName(s.String(), "LIFECYCLE_STAGE_") }
func severityName(s alertv1.Severity) string      { return enumName(s.String(), "SEVERITY_") }
func stateName(s alertv1.AlertState) string       { return enumName(s.String(), "ALERT_STATE_") }
func ruleKindName(k alertv1.RuleKind) string      { return enumName(k.String(), "RULE_KIND_") }
func measureKindName(k scoringv1.MeasureKind) string {
	return enumName(k.String(), "MEASURE_KIND_")
}
