package web

import (
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/humanize"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Formatting for people, as lodestarctl prints (pkg/humanize): the
// templates never show a raw float or enum name.

// moneyValue is a Money as a float of whole units.
func moneyValue(m *accountv1.Money) float64 {
	return float64(m.GetUnits()) + float64(m.GetNanos())/1e9
}

func money(m *accountv1.Money) string {
	if m == nil {
		return humanize.Missing
	}
	return humanize.MoneyCompact(moneyValue(m), m.GetCurrencyCode())
}

// number formats a measure's raw value: integers without decimals, others
// with up to two.
func number(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return humanize.Int(int64(v))
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// timeOf is a timestamp's time; unset is the zero time, which humanize
// shows as missing.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return time.Time{}
	}
	return ts.AsTime()
}

// dateIn formats a date in the tenant's zone: 6 Dec 2026.
func dateIn(loc *time.Location, ts *timestamppb.Timestamp) string {
	return humanize.Date(timeOf(ts), loc)
}

// dateTimeIn formats an instant in the tenant's zone: 6 Dec 2026 14:05 CET.
func dateTimeIn(loc *time.Location, ts *timestamppb.Timestamp) string {
	return humanize.DateTime(timeOf(ts), loc)
}

// keyEventTime formats a key event's time: an instant in the tenant's zone,
// or the UTC day of the events the scoring engine keeps by day.
func keyEventTime(loc *time.Location, k *scoringv1.KeyEvent) string {
	if k.GetDayOnly() {
		return humanize.Date(timeOf(k.GetTime()), time.UTC)
	}
	return dateTimeIn(loc, k.GetTime())
}

// lastDayIn formats the day before an exclusive end: a period ending at
// 1 Jan 00:00 ends on 31 Dec.
func lastDayIn(loc *time.Location, end *timestamppb.Timestamp) string {
	if timeOf(end).IsZero() {
		return humanize.Missing
	}
	return humanize.Date(end.AsTime().Add(-time.Nanosecond), loc)
}

// enumName turns BAND_RED, TIER_BENCHMARK or LIFECYCLE_STAGE_PRE_RENEWAL
// into "red", "benchmark" or "pre-renewal".
func enumName(full, prefix string) string {
	s := strings.TrimPrefix(full, prefix)
	if s == "UNSPECIFIED" || s == "" {
		return humanize.Missing
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
