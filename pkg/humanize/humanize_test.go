package humanize

import (
	"math"
	"testing"
	"time"
)

func TestInt(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{999, "999"},
		{1000, "1,000"},
		{2319120, "2,319,120"},
		{-48000, "-48,000"},
		{math.MinInt64, "-9,223,372,036,854,775,808"},
	} {
		if got := Int(tc.in); got != tc.want {
			t.Errorf("Int(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMoney(t *testing.T) {
	for _, tc := range []struct {
		amount   float64
		currency string
		want     string
	}{
		{2.319120000000001e+06, "USD", "$2,319,120"},
		{48000, "usd", "$48,000"},
		{0, "USD", "$0"},
		{0.4, "USD", "$0"},
		{999.5, "EUR", "€1,000"},
		{-1200, "GBP", "-£1,200"},
		{1200, "CHF", "CHF 1,200"},
		{1200, "", "1,200"},
		{math.NaN(), "USD", "-"},
		{math.Inf(1), "USD", "-"},
		{1e20, "USD", "-"},
	} {
		if got := Money(tc.amount, tc.currency); got != tc.want {
			t.Errorf("Money(%v, %q) = %q, want %q", tc.amount, tc.currency, got, tc.want)
		}
	}
}

func TestMoneyCompact(t *testing.T) {
	for _, tc := range []struct {
		amount   float64
		currency string
		want     string
	}{
		{0, "USD", "$0"},
		{950, "USD", "$950"},
		{999.4, "USD", "$999"},
		{999.6, "USD", "$1K"},
		{1000, "USD", "$1K"},
		{1500, "USD", "$1.5K"},
		{48000, "USD", "$48K"},
		{48540, "USD", "$48.5K"},
		{230400, "USD", "$230K"},
		{999960, "USD", "$1M"},
		{2319120, "USD", "$2.3M"},
		{12e6, "EUR", "€12M"},
		{1.24e9, "USD", "$1.2B"},
		{5e15, "USD", "$5000T"},
		{-2319120, "USD", "-$2.3M"},
		{48000, "CHF", "CHF 48K"},
		{math.NaN(), "USD", "-"},
	} {
		if got := MoneyCompact(tc.amount, tc.currency); got != tc.want {
			t.Errorf("MoneyCompact(%v, %q) = %q, want %q", tc.amount, tc.currency, got, tc.want)
		}
	}
}

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0.953, "95.3%"},
		{0.9534, "95.3%"},
		{1.2, "120%"},
		{1, "100%"},
		{0, "0%"},
		{-0.0001, "0%"},
		{-0.052, "-5.2%"},
		{0.00049, "0%"},
		{0.0005, "0.1%"},
		{math.Inf(-1), "-"},
	} {
		if got := Percent(tc.in); got != tc.want {
			t.Errorf("Percent(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestScore(t *testing.T) {
	for _, tc := range []struct {
		in          float64
		score, diff string
	}{
		{62.44, "62.4", "+62.4"},
		{100, "100.0", "+100.0"},
		{0, "0.0", "0.0"},
		{-0.04, "0.0", "0.0"},
		{-12, "-12.0", "-12.0"},
		{3.05, "3.0", "+3.0"}, // 3.05 is 3.04999... as a float64
		{math.NaN(), "-", "-"},
	} {
		if got := Score(tc.in); got != tc.score {
			t.Errorf("Score(%v) = %q, want %q", tc.in, got, tc.score)
		}
		if got := ScoreDelta(tc.in); got != tc.diff {
			t.Errorf("ScoreDelta(%v) = %q, want %q", tc.in, got, tc.diff)
		}
	}
}

func TestDate(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	late := time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		t              time.Time
		loc            *time.Location
		date, dateTime string
	}{
		{late, nil, "6 Dec 2026", "6 Dec 2026 23:30 UTC"},
		{late, time.UTC, "6 Dec 2026", "6 Dec 2026 23:30 UTC"},
		{late, berlin, "7 Dec 2026", "7 Dec 2026 00:30 CET"},
		{late, newYork, "6 Dec 2026", "6 Dec 2026 18:30 EST"},
		{time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC), berlin, "1 Jul 2026", "1 Jul 2026 14:00 CEST"},
		{time.Time{}, berlin, "-", "-"},
	} {
		if got := Date(tc.t, tc.loc); got != tc.date {
			t.Errorf("Date(%v, %v) = %q, want %q", tc.t, tc.loc, got, tc.date)
		}
		if got := DateTime(tc.t, tc.loc); got != tc.dateTime {
			t.Errorf("DateTime(%v, %v) = %q, want %q", tc.t, tc.loc, got, tc.dateTime)
		}
	}
}

func TestRelative(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	// Sunday 6 December 2026, 10:00 UTC (11:00 in Berlin).
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		t    time.Time
		loc  *time.Location
		want string
	}{
		{"same instant", now, nil, "just now"},
		{"seconds ago", now.Add(-59 * time.Second), nil, "just now"},
		{"a minute ago", now.Add(-time.Minute), nil, "1 minute ago"},
		{"minutes ahead", now.Add(5*time.Minute + 30*time.Second), nil, "in 5 minutes"},
		{"hours ago", now.Add(-3 * time.Hour), nil, "3 hours ago"},
		{"later today", now.Add(13 * time.Hour), nil, "in 13 hours"},
		// 23:00 UTC is 00:00 on the 7th in Berlin: tomorrow there, tonight in UTC.
		{"tomorrow in the zone", now.Add(13 * time.Hour), berlin, "tomorrow"},
		{"just past midnight", now.Add(15 * time.Hour), nil, "tomorrow"},
		{"tomorrow", now.Add(day), nil, "tomorrow"},
		{"yesterday", now.Add(-day), nil, "yesterday"},
		{"renewal in 76 days", now.Add(76 * day), berlin, "in 76 days"},
		{"calendar days not 24h", now.Add(2*day + 13*time.Hour), nil, "in 2 days"},
		{"days ago", now.Add(-12 * day), nil, "12 days ago"},
		{"99 days", now.Add(99 * day), nil, "in 99 days"},
		{"months", now.Add(160 * day), nil, "in 5 months"},
		{"months ago", now.Add(-400 * day), nil, "13 months ago"},
		{"years", now.Add(800 * day), nil, "in 2 years"},
		{"zero time", time.Time{}, nil, "-"},
	} {
		if got := Relative(tc.t, now, tc.loc); got != tc.want {
			t.Errorf("%s: Relative(%v, %v, %v) = %q, want %q", tc.name, tc.t, now, tc.loc, got, tc.want)
		}
	}
}

func TestRelativeAcrossDaylightSaving(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	// Clocks go forward on 29 March 2026: noon to noon is 23 hours.
	now := time.Date(2026, 3, 28, 12, 0, 0, 0, berlin)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 3, 29, 12, 0, 0, 0, berlin), "tomorrow"},
		{time.Date(2026, 3, 30, 0, 30, 0, 0, berlin), "in 2 days"},
		{time.Date(2026, 4, 7, 0, 0, 0, 0, berlin), "in 10 days"},
	} {
		if got := Relative(tc.t, now, berlin); got != tc.want {
			t.Errorf("Relative(%v, %v) = %q, want %q", tc.t, now, got, tc.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0 seconds"},
		{time.Second, "1 second"},
		{45 * time.Second, "45 seconds"},
		{90 * time.Second, "1 minute"},
		{-3 * time.Hour, "3 hours"},
		{23*time.Hour + 59*time.Minute, "23 hours"},
		{76 * 24 * time.Hour, "76 days"},
		{200 * 24 * time.Hour, "6 months"},
		{3 * 365 * 24 * time.Hour, "2 years"},
	} {
		if got := Duration(tc.in); got != tc.want {
			t.Errorf("Duration(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
