package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// benchEvents builds a steady stream of one day: accounts × users, each user doing
// core and feature events, all in time order.
func benchEvents(accounts, users, perUser int) []*eventv1.Event {
	var out []*eventv1.Event
	start := dayTime(60, 8, 0)
	for k := 0; k < perUser; k++ {
		for u := 0; u < users; u++ {
			for a := 0; a < accounts; a++ {
				name := coreEvents[(a+u+k)%len(coreEvents)]
				if k%2 == 1 {
					name = fmt.Sprintf("Feature %d Used", (a+u+k)%12)
				}
				out = append(out, &eventv1.Event{
					TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK,
					AccountId: fmt.Sprintf("account-%d", a), UserId: fmt.Sprintf("user-%d", u), Event: name,
					EventTime: timestamppb.New(start.Add(time.Duration(len(out)) * time.Millisecond)),
				})
			}
		}
	}
	return out
}

// BenchmarkApply measures the hot path for known accounts, users and names.
func BenchmarkApply(b *testing.B) {
	e := newEngine(b, Config{})
	events := benchEvents(1000, 20, 4)
	wall := dayTime(61, 0, 0)
	for _, ev := range events {
		e.Apply(ev, wall) // warm up: every account, user and name known
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Apply(events[i%len(events)], wall)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFlush measures scoring: every account due, scored and explained.
func BenchmarkFlush(b *testing.B) {
	e := newEngine(b, Config{PublishThreshold: 1e-9})
	for _, a := range scenarioAccounts() {
		e.SetAccount(a)
	}
	for d := range scenarioDays {
		for _, ev := range scenarioEvents(d) {
			e.Apply(ev, replayWall)
		}
	}
	e.Flush()
	t := e.tenants[tenantID]
	b.ReportAllocs()
	for b.Loop() {
		for _, a := range t.Accounts {
			t.markDirty(a)
		}
		e.Flush()
	}
	b.ReportMetric(float64(b.N*len(t.Accounts))/b.Elapsed().Seconds(), "accounts/s")
}

// BenchmarkMemoryPerAccount reports the heap held per account with N users, each
// active and using core events and features, for the bound in the package comment.
func BenchmarkMemoryPerAccount(b *testing.B) {
	for _, users := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(bytesPerAccount(b, users, 200_000/users), "bytes/account")
			}
		})
	}
}

// bytesPerAccount fills accounts with users each active on several days, with the
// default scorecard, and measures the live heap per account.
func bytesPerAccount(tb testing.TB, users, accounts int) float64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	e := newEngine(tb, Config{})
	wall := dayTime(120, 0, 0)
	ev := &eventv1.Event{TenantId: tenantID, Type: eventv1.EventType_EVENT_TYPE_TRACK}
	for a := 0; a < accounts; a++ {
		acct := fmt.Sprintf("account-%06d", a)
		e.SetAccount(&accountv1.Account{TenantId: tenantID, AccountId: acct, SeatsPurchased: int32(users)})
		for u := 0; u < users; u++ {
			ev.AccountId, ev.UserId = acct, fmt.Sprintf("user-%06d", u)
			for d := 0; d < 90; d += 3 + u%7 {
				ev.Event = coreEvents[(u+d)%len(coreEvents)]
				if u%3 == 0 {
					ev.Event = fmt.Sprintf("Feature %d Used", (u+d)%20)
				}
				ev.EventTime = timestamppb.New(dayTime(d, 9, 0))
				e.Apply(ev, wall)
			}
		}
	}
	e.Flush() // scores and history are part of the state
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(accounts)
}

// TestMemoryBound checks the bound stated in the package comment.
func TestMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large heap")
	}
	for _, users := range []int{10, 100, 1000} {
		got := bytesPerAccount(t, users, 20_000/users)
		// 4·W·C + 212·K + 56·G + 16·F + 48·M with the default scorecard's one
		// group (every product event), counted daily and weekly, 20 features
		// and 8 measures, plus the fixed part.
		bound := 1000 + 57*float64(users) + 4*90 + 212 + 56 + 16*20 + 48*8
		t.Logf("%d users: %.0f bytes per account (bound %.0f)", users, got, bound)
		if got > bound {
			t.Errorf("%d users: %.0f bytes per account, above the bound of %.0f", users, got, bound)
		}
	}
}
