// Package humanize formats numbers, dates and times for people: the
// console's pages and lodestarctl's tables print the same text for the
// same value.
//
// Every function returns "-" for a value it cannot show (NaN, infinity, a
// zero time), so a missing figure never reads as a real one.
package humanize

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Missing is what every function returns for a value it cannot show.
const Missing = "-"

// symbols are the currency signs shown before an amount; other ISO 4217
// codes are shown as "CHF 1,200".
var symbols = map[string]string{"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

func prefix(currency string) string {
	if s, ok := symbols[strings.ToUpper(currency)]; ok {
		return s
	}
	if currency == "" {
		return ""
	}
	return strings.ToUpper(currency) + " "
}

// Int formats a whole number with thousands separators: "2,319,120".
func Int(n int64) string {
	digits := strconv.FormatInt(n, 10)
	sign := ""
	if n < 0 {
		sign, digits = "-", digits[1:]
	}
	for i := len(digits) - 3; i > 0; i -= 3 {
		digits = digits[:i] + "," + digits[i:]
	}
	return sign + digits
}

// Money formats an amount in whole units of an ISO 4217 currency, rounded,
// with thousands separators: Money(2319120.0000001, "USD") is "$2,319,120",
// Money(1200, "CHF") "CHF 1,200"; an empty currency shows no sign.
func Money(amount float64, currency string) string {
	if bad(amount) || math.Abs(amount) >= 1e18 {
		return Missing
	}
	n := int64(math.Round(amount))
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	return sign + prefix(currency) + Int(n)
}

// MoneyCompact formats an amount in a few characters, for tiles and chart
// axes: "$950", "$48K", "$48.5K", "$2.3M", "$1.2B". Scaled values below 100
// keep one decimal (dropped when it is 0).
func MoneyCompact(amount float64, currency string) string {
	if bad(amount) {
		return Missing
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	return sign + prefix(currency) + compact(amount)
}

// compact scales a non-negative value to K, M, B or T.
func compact(v float64) string {
	for _, unit := range []string{"", "K", "M", "B", "T"} {
		// Rounding may reach the next unit: 999,960 is "1M", not "1000K".
		if r := roundCompact(v, unit == ""); r < 1000 || unit == "T" {
			return strconv.FormatFloat(r, 'f', -1, 64) + unit
		}
		v /= 1000
	}
	panic("unreachable")
}

// roundCompact rounds a scaled value to one decimal below 100, else to a
// whole number; unscaled amounts are always whole.
func roundCompact(v float64, whole bool) float64 {
	if whole || v >= 100 {
		return math.Round(v)
	}
	return math.Round(v*10) / 10
}

// Percent formats a ratio as a percentage with one decimal, dropped when it
// is 0: Percent(0.953) is "95.3%", Percent(1.2) "120%".
func Percent(ratio float64) string {
	if bad(ratio) {
		return Missing
	}
	v := math.Round(ratio*1000) / 10
	if v == 0 {
		v = 0 // no "-0%"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "%"
}

// Score formats a health score (0-100) with one decimal: "62.4".
func Score(v float64) string {
	if bad(v) {
		return Missing
	}
	if r := strconv.FormatFloat(v, 'f', 1, 64); r != "-0.0" {
		return r
	}
	return "0.0"
}

// ScoreDelta formats a change of score with its sign and one decimal:
// "+3.1", "-12.0", and "0.0" for no change.
func ScoreDelta(d float64) string {
	if bad(d) {
		return Missing
	}
	switch r := strconv.FormatFloat(d, 'f', 1, 64); {
	case r == "0.0" || r == "-0.0":
		return "0.0"
	case d > 0:
		return "+" + r
	default:
		return r
	}
}

// Date formats the calendar day of t in the tenant's time zone:
// "6 Dec 2026". A nil loc means UTC.
func Date(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return Missing
	}
	return t.In(orUTC(loc)).Format("2 Jan 2006")
}

// DateTime formats t to the minute in the tenant's time zone, with the
// zone's abbreviation: "6 Dec 2026 14:05 CET". A nil loc means UTC.
func DateTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return Missing
	}
	return t.In(orUTC(loc)).Format("2 Jan 2006 15:04 MST")
}

// Relative says when t is from now: "just now", "5 minutes ago",
// "in 3 hours", "yesterday", "tomorrow", "in 76 days", "12 days ago",
// "in 5 months", "2 years ago". Beyond a day it counts calendar days in the
// tenant's time zone (a nil loc means UTC), so a renewal on the 9th is "in
// 3 days" all through the 6th.
func Relative(t, now time.Time, loc *time.Location) string {
	if t.IsZero() || now.IsZero() {
		return Missing
	}
	loc = orUTC(loc)
	days := calendarDays(now.In(loc), t.In(loc))
	d := t.Sub(now)
	switch {
	case d > -time.Minute && d < time.Minute:
		return "just now"
	case days == 0 || (d > -6*time.Hour && d < 6*time.Hour):
		// Within the same day, or close to midnight: hours read better.
		if d < 0 {
			return Duration(-d) + " ago"
		}
		return "in " + Duration(d)
	case days == 1:
		return "tomorrow"
	case days == -1:
		return "yesterday"
	}
	span := spanOfDays(abs(days))
	if days < 0 {
		return span + " ago"
	}
	return "in " + span
}

// Duration formats a length of time in its largest whole unit, rounded
// down: "45 seconds", "1 minute", "3 hours", "76 days". Negative durations
// are shown by their length.
func Duration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return plural(int64(d/time.Second), "second")
	case d < time.Hour:
		return plural(int64(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int64(d/time.Hour), "hour")
	}
	return spanOfDays(int64(d / (24 * time.Hour)))
}

// spanOfDays shows up to 99 days as days, then months up to 2 years, then
// years: "in 400 days" is harder to read than "in 13 months".
func spanOfDays(days int64) string {
	switch {
	case days < 100:
		return plural(days, "day")
	case days < 730:
		return plural(int64(float64(days)/30.44), "month")
	}
	return plural(int64(float64(days)/365.25), "year")
}

// calendarDays counts the midnights between from and to, both in the same
// location; negative when to is earlier. Dates are compared in UTC so that
// a daylight saving change does not make a day 23 or 25 hours long.
func calendarDays(from, to time.Time) int64 {
	y1, m1, d1 := from.Date()
	y2, m2, d2 := to.Date()
	a := time.Date(y1, m1, d1, 0, 0, 0, 0, time.UTC)
	b := time.Date(y2, m2, d2, 0, 0, 0, 0, time.UTC)
	return int64(b.Sub(a) / (24 * time.Hour))
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return Int(n) + " " + unit + "s"
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func orUTC(loc *time.Location) *time.Location {
	if loc == nil {
		return time.UTC
	}
	return loc
}

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
