package oncall

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

func TestOnCall(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	ann := &alertv1.Person{PersonId: "ann", Email: "ann@example.com"}
	bob := &alertv1.Person{PersonId: "bob", Email: "bob@example.com"}
	cid := &alertv1.Person{PersonId: "cid", Email: "cid@example.com"}
	// Hand-over Mondays 09:00 Berlin time; DST starts on 29 March 2026.
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, berlin)
	s := &alertv1.OnCallSchedule{
		ScheduleId: "csm", TimeZone: "Europe/Berlin", RotationStartTime: timestamppb.New(start),
		Participants: []*alertv1.Person{ann, bob},
		Overrides: []*alertv1.ScheduleOverride{
			{Person: cid, StartTime: timestamppb.New(time.Date(2026, 3, 11, 0, 0, 0, 0, berlin)), EndTime: timestamppb.New(time.Date(2026, 3, 12, 0, 0, 0, 0, berlin))},
		},
	}
	if ps := Validate(s, start); len(ps) > 0 {
		t.Fatalf("valid schedule rejected: %v", ps)
	}
	at := func(month time.Month, day, hour, minute int) time.Time {
		return time.Date(2026, month, day, hour, minute, 0, 0, berlin)
	}
	tests := []struct {
		name string
		t    time.Time
		want *alertv1.Person
	}{
		{"before the rotation", at(3, 1, 12, 0), nil},
		{"first week", at(3, 2, 9, 0), ann},
		{"second week", at(3, 9, 9, 0), bob},
		{"just before hand-over", at(3, 16, 8, 59), bob},
		{"override", at(3, 11, 15, 0), cid},
		{"third week", at(3, 16, 9, 0), ann},
		// After DST the hand-over stays at 09:00 local, 07:00 UTC.
		{"after DST, before local 9:00", at(3, 30, 8, 30), bob},
		{"after DST, at local 9:00", at(3, 30, 9, 0), ann},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := OnCall(s, tc.t); got.GetPersonId() != tc.want.GetPersonId() {
				t.Fatalf("on call at %s: %q, want %q", tc.t, got.GetPersonId(), tc.want.GetPersonId())
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := &alertv1.OnCallSchedule{
		ScheduleId:   "",
		TimeZone:     "Mars/Olympus",
		Participants: []*alertv1.Person{{Name: "no id, no contact"}, {PersonId: "x", Email: "not an address"}},
		Overrides:    []*alertv1.ScheduleOverride{{}},
	}
	got := map[string]bool{}
	for _, p := range Validate(bad, time.Now()) {
		got[p.GetField()] = true
	}
	for _, f := range []string{"schedule.schedule_id", "schedule.time_zone", "schedule.rotation_start_time", "schedule.participants[0].person_id",
		"schedule.participants[0]", "schedule.participants[1].email", "schedule.overrides[0].person", "schedule.overrides[0]"} {
		if !got[f] {
			t.Errorf("no problem for %s (got %v)", f, got)
		}
	}
}
