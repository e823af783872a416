package retention

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	forecastv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/forecast/v1"
)

// Period is a calendar month, quarter or year in UTC, [Start, End).
type Period struct {
	Unit       forecastv1.PeriodUnit
	Start, End time.Time
}

// PeriodOf returns the period of unit containing t.
func PeriodOf(unit forecastv1.PeriodUnit, t time.Time) Period {
	t = t.UTC()
	y, m := t.Year(), t.Month()
	switch unit {
	case forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER:
		m = (m-1)/3*3 + 1
	case forecastv1.PeriodUnit_PERIOD_UNIT_YEAR:
		m = time.January
	}
	start := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return Period{Unit: unit, Start: start, End: start.AddDate(0, Months(unit), 0)}
}

// Months is the length of a period unit in months.
func Months(unit forecastv1.PeriodUnit) int {
	switch unit {
	case forecastv1.PeriodUnit_PERIOD_UNIT_QUARTER:
		return 3
	case forecastv1.PeriodUnit_PERIOD_UNIT_YEAR:
		return 12
	}
	return 1
}

// Months is the period's length in months.
func (p Period) Months() int { return Months(p.Unit) }

// Next is the period after p.
func (p Period) Next() Period { return PeriodOf(p.Unit, p.End) }

// Proto is the period as the API reports it.
func (p Period) Proto() *forecastv1.Period {
	return &forecastv1.Period{Unit: p.Unit, StartTime: timestamppb.New(p.Start), EndTime: timestamppb.New(p.End)}
}
