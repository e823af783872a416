package engine

import (
	"bytes"
	"testing"
	"time"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// TestReplayRecordsTheSameHistory replays the scenario's events at several
// paces: flushed once a day, after every event, every few events, with the
// watermark markers ingest sends to every partition between them, with
// ticks. What is recorded (the changes, what goes to the SCORES stream)
// must be the same every time: a replay of last year gives last year's
// history whatever cut it into messages and whenever the flushes came.
func TestReplayRecordsTheSameHistory(t *testing.T) {
	const days = 40
	type pace struct {
		name string
		// flushAfter says whether to flush after the i-th event of day d.
		flushAfter func(d, i int) bool
		// markers advance the watermark to each day before its events, as
		// ingest's watermark markers do in a partition whose accounts are
		// silent until later in the day.
		markers, ticks bool
	}
	paces := []pace{
		{name: "a flush at the end of each day", flushAfter: func(int, int) bool { return false }},
		{name: "a flush after every event", flushAfter: func(int, int) bool { return true }},
		{name: "a flush every 7 events", flushAfter: func(d, i int) bool { return (d*1000+i)%7 == 0 }},
		{name: "markers and a flush every 3 events", flushAfter: func(_, i int) bool { return i%3 == 2 }, markers: true},
		{name: "ticks and a flush every 50 events", flushAfter: func(_, i int) bool { return i%50 == 49 }, ticks: true},
	}
	var want []byte
	for _, p := range paces {
		e := scenarioEngine(t)
		var recorded []*scoringv1.HealthScore
		flush := func() { recorded = append(recorded, changes(e.Flush())...) }
		for d := range days {
			if p.markers {
				e.Advance(tenantID, dayTime(d, 0, 0), replayWall)
			}
			for i, ev := range scenarioEvents(d) {
				e.Apply(ev, replayWall)
				if p.flushAfter(d, i) {
					flush()
				}
				if p.ticks {
					e.Tick(replayWall)
				}
			}
			flush()
		}
		// The last day ends.
		e.Advance(tenantID, dayTime(days, 0, 0), replayWall)
		flush()

		if len(recorded) == 0 {
			t.Fatalf("%s: nothing recorded", p.name)
		}
		for _, hs := range recorded {
			if at := hs.GetScoreTime().AsTime(); !at.Add(time.Second).Equal(at.Add(time.Second).Truncate(24 * time.Hour)) {
				t.Fatalf("%s: %s recorded at %v, not at a day's end", p.name, hs.GetAccountId(), at)
			}
		}
		got := wire(t, recorded...)
		if want == nil {
			want = got
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: recorded %d changes, which differ from those of %s", p.name, len(recorded), paces[0].name)
		}
	}
}
