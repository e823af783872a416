// Package oncall answers who is on call: weekly rotations handing over at a
// local weekday and time of day, with overrides.
package oncall

import (
	"fmt"
	"net/mail"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

const week = 7 * 24 * time.Hour

// Limits of a schedule: a rotation of people, not a directory, and times
// within a span a schedule can mean.
const (
	MaxParticipants = 1000
	MaxOverrides    = 1000
	// MaxYearsAhead bounds how far in the future a time may lie.
	MaxYearsAhead = 10
)

// earliest is the earliest time a schedule may name.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// OnCall returns who is on call on a schedule at t, or nil when nobody is.
func OnCall(s *alertv1.OnCallSchedule, t time.Time) *alertv1.Person {
	var best *alertv1.ScheduleOverride
	for _, o := range s.GetOverrides() {
		if !t.Before(o.GetStartTime().AsTime()) && t.Before(o.GetEndTime().AsTime()) &&
			(best == nil || o.GetStartTime().AsTime().After(best.GetStartTime().AsTime())) {
			best = o
		}
	}
	if best != nil {
		return best.GetPerson()
	}
	ps := s.GetParticipants()
	start := s.GetRotationStartTime().AsTime()
	if len(ps) == 0 || t.Before(start) {
		return nil
	}
	return ps[handovers(start.In(location(s)), t)%len(ps)]
}

// handovers counts the weekly hand-overs after start up to t. They happen at
// start's local weekday and clock time, so a DST change moves them by an hour
// in UTC rather than shifting the local hand-over.
func handovers(start, t time.Time) int {
	k := int(t.Sub(start) / week)
	at := func(k int) time.Time {
		return time.Date(start.Year(), start.Month(), start.Day()+7*k, start.Hour(), start.Minute(), start.Second(), 0, start.Location())
	}
	for k > 0 && at(k).After(t) {
		k--
	}
	for !at(k + 1).After(t) {
		k++
	}
	return k
}

func location(s *alertv1.OnCallSchedule) *time.Location {
	if loc, err := time.LoadLocation(s.GetTimeZone()); err == nil {
		return loc
	}
	return time.UTC // validated on write; a zone database lost later falls back
}

// Validate lists every problem of a schedule; now bounds its times.
func Validate(s *alertv1.OnCallSchedule, now time.Time) []*errdetails.BadRequest_FieldViolation {
	if s == nil {
		return []*errdetails.BadRequest_FieldViolation{{Field: "schedule", Description: "required"}}
	}
	var out []*errdetails.BadRequest_FieldViolation
	bad := func(field, format string, args ...any) {
		out = append(out, &errdetails.BadRequest_FieldViolation{Field: "schedule." + field, Description: fmt.Sprintf(format, args...)})
	}
	if v := rules.ValidID("schedule.schedule_id", s.GetScheduleId()); v != nil {
		out = append(out, v)
	}
	if _, err := time.LoadLocation(s.GetTimeZone()); err != nil {
		bad("time_zone", "unknown IANA time zone: %v", err)
	}
	latest := now.AddDate(MaxYearsAhead, 0, 0)
	inSpan := func(field string, t time.Time) {
		if t.Before(earliest) || t.After(latest) {
			bad(field, "must lie between %s and %d years from now", earliest.Format(time.DateOnly), MaxYearsAhead)
		}
	}
	if s.RotationStartTime == nil || !s.GetRotationStartTime().IsValid() {
		bad("rotation_start_time", "required")
	} else {
		inSpan("rotation_start_time", s.GetRotationStartTime().AsTime())
	}
	switch n := len(s.GetParticipants()); {
	case n == 0:
		bad("participants", "at least one participant")
	case n > MaxParticipants:
		bad("participants", "%d participants: at most %d", n, MaxParticipants)
		return out // not worth checking each
	}
	if n := len(s.GetOverrides()); n > MaxOverrides {
		bad("overrides", "%d overrides: at most %d", n, MaxOverrides)
		return out
	}
	for i, p := range s.GetParticipants() {
		out = append(out, ValidatePerson(fmt.Sprintf("schedule.participants[%d]", i), p)...)
	}
	for i, o := range s.GetOverrides() {
		f := fmt.Sprintf("overrides[%d]", i)
		if o.GetPerson() == nil {
			bad(f+".person", "required")
		} else {
			out = append(out, ValidatePerson("schedule."+f+".person", o.GetPerson())...)
		}
		if o.StartTime == nil || o.EndTime == nil || !o.GetEndTime().AsTime().After(o.GetStartTime().AsTime()) {
			bad(f, "start_time and end_time required, end after start")
		} else {
			inSpan(f+".start_time", o.GetStartTime().AsTime())
			inSpan(f+".end_time", o.GetEndTime().AsTime())
		}
	}
	return out
}

// ValidatePerson lists the problems of someone alerts can be routed to.
func ValidatePerson(field string, p *alertv1.Person) []*errdetails.BadRequest_FieldViolation {
	var out []*errdetails.BadRequest_FieldViolation
	if p.GetPersonId() == "" {
		out = append(out, &errdetails.BadRequest_FieldViolation{Field: field + ".person_id", Description: "required"})
	}
	if p.GetEmail() == "" && p.GetChatHandle() == "" {
		out = append(out, &errdetails.BadRequest_FieldViolation{Field: field, Description: "an email or a chat_handle is required to reach them"})
	}
	if e := p.GetEmail(); e != "" {
		if _, err := mail.ParseAddress(e); err != nil {
			out = append(out, &errdetails.BadRequest_FieldViolation{Field: field + ".email", Description: err.Error()})
		}
	}
	return out
}
