package main

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// workdayHours returns the hours of the n most recent whole workdays (UTC
// Monday to Friday) before now, oldest first. Workdays, so that the volume
// of a run does not depend on the day of the week it runs.
func workdayHours(now time.Time, n int) []time.Time {
	var days []time.Time
	for d := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -1); len(days) < n; d = d.AddDate(0, 0, -1) {
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			days = append(days, d)
		}
	}
	var hours []time.Time
	for i := len(days) - 1; i >= 0; i-- {
		for h := range 24 {
			hours = append(hours, days[i].Add(time.Duration(h)*time.Hour))
		}
	}
	return hours
}

// generate calls each with the product's events of every hour, in order.
// Hours are independent in the simulator, so workers generate ahead in
// parallel, a bounded number of hours ahead.
func generate(ctx context.Context, p *sim.Product, hours []time.Time, workers int, each func([]sim.Event) error) error {
	slots := make([]chan []sim.Event, len(hours))
	for i := range slots {
		slots[i] = make(chan []sim.Event, 1)
	}
	ahead := make(chan struct{}, 2*workers) // hours generated, not yet consumed
	next := make(chan int)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(next)
		for i := range hours {
			select {
			case ahead <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		go func() {
			for i := range next {
				slots[i] <- p.AppendHour(nil, hours[i])
			}
		}()
	}
	for i := range hours {
		var evs []sim.Event
		select {
		case evs = <-slots[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-ahead
		if err := each(evs); err != nil {
			return err
		}
	}
	return nil
}

// memoryResult is the scoring core's heap for a number of accounts.
type memoryResult struct {
	Accounts        int
	Events          int
	UsersPerAccount float64
	BytesPerAccount float64
	Took            time.Duration
	// Core is the time spent in the scoring core itself (apply and the
	// scoring of each closed day), on one goroutine.
	Core time.Duration
	// ApplyEvents and Apply are the events of the hours that close no day
	// and the time they took: the aggregate update alone.
	ApplyEvents int
	Apply       time.Duration
}

// accountBytes replays the recent workdays of a product of n accounts
// through the scoring core (internal/scorecore/replay) and measures the live
// heap it holds per account.
func (b *bench) accountBytes(ctx context.Context, n int) (memoryResult, error) {
	res := memoryResult{Accounts: n}
	p, err := sim.New(sim.Config{Seed: b.cfg.seed, Accounts: n, Now: b.now, Mix: sim.DefaultMix()})
	if err != nil {
		return res, err
	}
	facts := make([]replay.Fact, 0, n)
	users := 0
	for _, a := range p.Accounts() {
		facts = append(facts, replay.Fact{Account: a.CRM()})
		users += len(a.Users)
	}
	res.UsersPerAccount = float64(users) / float64(n)
	// The core's time is this thread's CPU time, so that the generators
	// running beside it on the other cores do not count.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after runtime.MemStats
	liveHeap(&before)
	start := time.Now()
	r, err := replay.New(memoryTenant, b.scorecard, facts)
	if err != nil {
		return res, err
	}
	wall := time.Now()
	hour := 0
	err = generate(ctx, p, workdayHours(b.now, b.cfg.memoryWorkdays), runtime.GOMAXPROCS(0), func(evs []sim.Event) error {
		batch := make([]*eventv1.Event, len(evs))
		for i, ev := range evs {
			pe, err := ev.Proto()
			if err != nil {
				return err
			}
			// As ingest stores it.
			pe.TenantId, pe.ReceivedTime = memoryTenant, pe.EventTime
			batch[i] = pe
		}
		res.Events += len(batch)
		t := threadCPU()
		r.Apply(batch, wall)
		took := threadCPU() - t
		res.Core += took
		// The hours come in whole days, oldest first: only each day's first
		// hour closes a day (and the very first brings the accounts' facts).
		if hour%24 != 0 {
			res.ApplyEvents += len(batch)
			res.Apply += took
		}
		hour++
		return nil
	})
	if err != nil {
		return res, err
	}
	t := threadCPU()
	r.Finish()
	res.Core += threadCPU() - t
	res.Took = time.Since(start)
	liveHeap(&after)
	// The product and the facts were on the heap before; they must still
	// be, or their freeing would count against the engine's state.
	runtime.KeepAlive(r)
	runtime.KeepAlive(p)
	runtime.KeepAlive(facts)
	res.BytesPerAccount = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
	return res, nil
}

// threadCPU is the CPU time of the calling thread; the caller locks its
// goroutine to it.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rusageThread is Linux's RUSAGE_THREAD, which package syscall does not
// name.
const rusageThread = 1

// liveHeap reads the heap after collecting garbage. Objects with finalizers
// (connections and files of the phases before) take a second cycle to go,
// hence several.
func liveHeap(m *runtime.MemStats) {
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(m)
}

// engineBound is the scoring core's documented bound on an account's bytes
// (internal/scorecore/engine's package comment) for u users, with
// the default scorecard: a 90-day window, one counted event group of four,
// up to 20 features and ten measures.
func engineBound(u float64) float64 { return 1000 + 57*u + 4*90 + 32*4 + 16*20 + 48*10 }

// memory measures bytes per account at each configured account count.
func (b *bench) memory(ctx context.Context) error {
	sec := b.report.section(phaseMemory, "Scoring core: bytes per account and events per second")
	for _, n := range b.cfg.memoryAccounts {
		b.quiet(ctx, "memory")
		res, err := b.accountBytes(ctx, n)
		if err != nil {
			return fmt.Errorf("memory at %d accounts: %w", n, err)
		}
		b.memResults = append(b.memResults, res)
		bound := engineBound(res.UsersPerAccount)
		sec.add(Figure{Name: fmt.Sprintf("bytes per account, %d accounts", n), Value: ptr(res.BytesPerAccount), Unit: "bytes",
			Baseline: "engine's stated bound at the product's mean users", BaselineValue: ptr(bound),
			Note: fmt.Sprintf("%d events of the %d most recent workdays replayed in %s; %.1f users per account in the product (heavy-tailed)",
				res.Events, b.cfg.memoryWorkdays, res.Took.Round(time.Second), res.UsersPerAccount)})
		sec.add(Figure{Name: fmt.Sprintf("scoring core alone, apply, %d accounts", n), Value: ptr(float64(res.ApplyEvents) / res.Apply.Seconds()), Unit: "events/s",
			Note: "CPU time of the one thread applying, so per core: the aggregate update of each event (the hours that close no day)"})
		sec.add(Figure{Name: fmt.Sprintf("scoring core alone, apply and daily scoring, %d accounts", n), Value: ptr(float64(res.Events) / res.Core.Seconds()), Unit: "events/s",
			Note: "one goroutine: every event, and every active account scored and explained at each day's end, as a replay does"})
		b.logger.Info("memory", "accounts", n, "bytes_per_account", int(res.BytesPerAccount), "events", res.Events, "took", res.Took,
			"apply_events_s", int(float64(res.ApplyEvents)/res.Apply.Seconds()), "core_events_s", int(float64(res.Events)/res.Core.Seconds()))
	}
	sec.note("Live heap (after GC) held by a internal/scorecore/replay replayer, the scoring core itself, after replaying the simulated product's events with the default scorecard, divided by the accounts. The accounts' CRM facts were on the heap before, so the strings the engine shares with them (name, owner, segment: tens of bytes) are not counted. The bound is the engine's own formula, 1000 + 57·U + 4·W·C + 32·G + 16·F + 48·M, taken at the product's mean users per account U: heavy-tailed accounts hold more, small ones less.")
	return nil
}
