package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// BenchmarkHorizon reports the heap held per account and Apply's rate at 100k
// and 1M accounts, each with a year of history: two users, one event a week
// each. The history is applied after one event at its end, so that no day
// ends while it is built (each ended day scores every account); then a day's
// events are applied again, on known accounts and users, within the day.
// With idle, the history stops 120 days before its end and a day then ends:
// the silent accounts are compacted, and scored once.
func BenchmarkHorizon(b *testing.B) {
	for _, c := range []struct {
		n    int
		idle bool
	}{{100_000, false}, {1_000_000, false}, {100_000, true}, {1_000_000, true}} {
		n := c.n
		name := fmt.Sprintf("accounts=%d", n)
		if c.idle {
			name += "/idle"
		}
		b.Run(name, func(b *testing.B) {
			end := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			wall := end.Add(time.Hour)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			e := newEngine(b, Config{})
			ev := &eventv1.Event{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK, Event: "Order Placed"}
			ev.EventTime = timestamppb.New(end)
			ev.AccountId, ev.UserId = "account-0", "user-0"
			e.Apply(ev, wall) // the watermark: the history that follows is older
			for a := range n {
				ev.AccountId = fmt.Sprintf("account-%07d", a)
				for w := range 52 {
					if c.idle && w < 18 {
						continue // silent for the last 120 days or more
					}
					ev.UserId = fmt.Sprintf("u%d", w%2)
					ev.EventTime = timestamppb.New(end.Add(-time.Duration(w*7*24+a%24) * time.Hour))
					e.Apply(ev, wall)
				}
			}
			if c.idle {
				ev.AccountId, ev.UserId, ev.EventTime = "account-0", "user-0", timestamppb.New(end.Add(24*time.Hour))
				e.Apply(ev, end.Add(25*time.Hour)) // a day ends: compaction
			}
			e.Flush()
			runtime.GC()
			runtime.ReadMemStats(&after)
			perAccount := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)

			day := make([]*eventv1.Event, 0, 100_000)
			for i := range cap(day) {
				day = append(day, &eventv1.Event{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK, Event: "Order Placed",
					AccountId: fmt.Sprintf("account-%07d", i*7919%n), UserId: fmt.Sprintf("u%d", i%2),
					EventTime: timestamppb.New(end.Add(-time.Duration(i%3600) * time.Second))})
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				e.Apply(day[i%len(day)], wall)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(perAccount, "bytes/account")
			runtime.KeepAlive(e)
		})
	}
}
