package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// simFixture is an engine that has replayed a workday of a simulated product
// (tools/loadgen/sim, as tools/bench's memory phase does) and the events of the
// next workday's hours that close no day.
type simFixture struct {
	eng    *Engine
	events []*eventv1.Event
	wall   time.Time
}

var simFixtures = map[int]*simFixture{}

// simNow is a Friday: the two workdays before it are Wednesday and Thursday.
var simNow = time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC)

func newSimFixture(tb testing.TB, accounts int) *simFixture {
	if f, ok := simFixtures[accounts]; ok {
		return f
	}
	p, err := sim.New(sim.Config{Seed: 1, Accounts: accounts, Now: simNow, Mix: sim.DefaultMix()})
	if err != nil {
		tb.Fatal(err)
	}
	e := newEngine(tb, Config{})
	for _, a := range p.Accounts() {
		crm := a.CRM()
		crm.TenantId = tenantID
		e.SetAccount(crm)
	}
	f := &simFixture{eng: e, wall: simNow}
	var buf []sim.Event
	for h := range 48 {
		buf = p.AppendHour(buf[:0], simNow.Add(time.Duration(h-48)*time.Hour))
		for _, ev := range buf {
			pe, err := ev.Proto()
			if err != nil {
				tb.Fatal(err)
			}
			// As ingest stores it.
			pe.TenantId, pe.ReceivedTime = tenantID, pe.EventTime
			if h <= 24 {
				// The first day, and the hour closing it: every account,
				// user and name is known, the accounts are scored.
				e.Apply(pe, f.wall)
				continue
			}
			f.events = append(f.events, pe)
		}
		if h == 24 {
			e.Flush()
		}
	}
	simFixtures[accounts] = f
	return f
}

// BenchmarkApplySim measures Apply as tools/bench's memory phase does ("scoring
// core alone, apply"): the events of a simulated product's workday hours that
// close no day, on accounts, users and names already known. The events are
// applied in time order and again from the start: the watermark stays, so a
// repeat does the same work.
func BenchmarkApplySim(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			f := newSimFixture(b, n)
			// tools/bench counts the applying thread's CPU time, which other
			// processes on a busy machine inflate less than the wall clock.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			var cpu time.Duration
			for i := 0; b.Loop(); i++ {
				if i == 0 {
					cpu = -threadCPU()
				}
				f.eng.Apply(f.events[i%len(f.events)], f.wall)
			}
			cpu += threadCPU()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
			}
		})
	}
}
