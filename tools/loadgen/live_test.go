package main

import (
	"context"
	"flag"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// capture is a transport that keeps the events it is given.
type capture struct {
	mu     sync.Mutex
	events []sim.Event
}

func (c *capture) requests(_ *tenant, evs []sim.Event) ([]request, error) {
	return []request{&captured{c: c, events: append([]sim.Event(nil), evs...)}}, nil
}

type captured struct {
	c      *capture
	events []sim.Event
}

func (r *captured) len() int { return len(r.events) }

func (r *captured) do(context.Context) ([]string, error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	r.c.events = append(r.c.events, r.events...)
	return nil, nil
}

// playLive plays the first window of a live phase starting at wall time
// start against a fake clock, with the command line args, and returns the
// events sent in it (stamped with their wall send time).
func playLive(t *testing.T, start time.Time, window time.Duration, args ...string) []sim.Event {
	t.Helper()
	var cfg options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := cfg.parse(fs, append([]string{"-write-key", testWriteKey}, args...)); err != nil {
		t.Fatal(err)
	}
	tenants, err := cfg.tenants(start)
	if err != nil {
		t.Fatal(err)
	}
	trans := &capture{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newDriver(&cfg, tenants, trans, io.Discard, func(err error) { t.Error(err); cancel() })
	clk := &fakeClock{now: start}
	d.start(ctx)
	// The phase ends when the fake clock passes the window: a sleep past
	// it cancels the run.
	stop := &stopAfter{clock: clk, end: start.Add(window), cancel: cancel}
	d.clock = stop
	err = d.play(ctx, phase{name: "live", from: start, pace: cfg.rate, live: true})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	d.inflight.Wait()
	d.stop()
	var in []sim.Event
	for _, ev := range trans.events {
		if ev.Time.Before(start) {
			t.Fatalf("live event at %s, before the start %s", ev.Time, start)
		}
		if ev.Time.Before(start.Add(window)) {
			in = append(in, ev)
		}
	}
	return in
}

// stopAfter is a fake clock that cancels the run once asked to sleep past
// end.
type stopAfter struct {
	clock  *fakeClock
	end    time.Time
	cancel func()
}

func (s *stopAfter) Now() time.Time { return s.clock.Now() }

func (s *stopAfter) SleepUntil(ctx context.Context, t time.Time) error {
	if t.After(s.end) {
		s.cancel()
		return context.Canceled
	}
	return s.clock.SleepUntil(ctx, t)
}

// TestLiveAtAnyHour checks, without the wall clock, that the demo's live
// phase sends a steady stream from its first minute whenever it starts,
// while the natural pace (the simulation's realism, as backtests use it)
// sleeps at night and at weekends.
func TestLiveAtAnyHour(t *testing.T) {
	const window = 5 * time.Minute
	starts := []struct {
		name string
		at   time.Time
	}{
		{"Sunday morning", time.Date(2026, 12, 6, 9, 30, 0, 0, time.UTC)},
		{"Saturday night", time.Date(2026, 12, 5, 23, 10, 0, 0, time.UTC)},
		{"Wednesday afternoon", time.Date(2026, 12, 9, 14, 0, 0, 0, time.UTC)},
		{"Monday 4am", time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)},
	}
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) {
			demo := playLive(t, s.at, window, "-scenario", "demo", "-backfill", "0")
			natural := playLive(t, s.at, window, "-scenario", "demo", "-backfill", "0", "-live.busy=false", "-live.speed", "1")
			accounts := map[string]bool{}
			firstMinute := 0
			for _, ev := range demo {
				accounts[ev.AccountID] = true
				if ev.Time.Before(s.at.Add(time.Minute)) {
					firstMinute++
				}
			}
			perSecond := float64(len(demo)) / window.Seconds()
			t.Logf("first %v: demo %d events (%.2f/s, %d in the first minute, %d accounts); natural pace %d events",
				window, len(demo), perSecond, firstMinute, len(accounts), len(natural))
			// An hour of the busy simulated product holds about 150-350
			// events for 300 accounts; at 60x that is several a second.
			if perSecond < 1 || firstMinute < 60 || len(accounts) < 50 {
				t.Errorf("demo live phase: %.2f events/s, %d in the first minute, %d accounts; want at least 1/s, 60 and 50", perSecond, firstMinute, len(accounts))
			}
			if len(natural) > len(demo)/10 {
				t.Errorf("natural pace sent %d events against the demo's %d: the comparison shows nothing", len(natural), len(demo))
			}
		})
	}
}

// TestLiveClock checks the mapping of simulated to wall time.
func TestLiveClock(t *testing.T) {
	sim0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	wall0 := sim0.Add(time.Minute)
	c := &liveClock{simStart: sim0, wallStart: wall0, speed: 60, busyAt: 100}
	if got := c.wall(sim0.Add(time.Hour)); !got.Equal(wall0.Add(time.Minute)) {
		t.Errorf("an hour at 60x: %s, want %s", got, wall0.Add(time.Minute))
	}
	// Two quiet hours skipped: the third plays at once after the first.
	if !c.play(sim0, 150) || c.play(sim0.Add(time.Hour), 10) || c.play(sim0.Add(2*time.Hour), 99) || !c.play(sim0.Add(3*time.Hour), 100) {
		t.Fatal("busy hours: want played, skipped, skipped, played")
	}
	if got := c.wall(sim0.Add(3 * time.Hour)); !got.Equal(wall0.Add(time.Minute)) {
		t.Errorf("after two skipped hours: %s, want %s", got, wall0.Add(time.Minute))
	}
	// A product quiet for longer than maxQuietHours is played anyway.
	played := 0
	for h := range 3 * maxQuietHours {
		if c.play(sim0.Add(time.Duration(4+h)*time.Hour), 0) {
			played++
		}
	}
	if played != 2 {
		t.Errorf("%d of %d quiet hours played, want 2 (one in %d)", played, 3*maxQuietHours, maxQuietHours+1)
	}
}

// fakeClock is a clock whose sleeps return at once, having moved the time
// on: a run against it takes no wall time and does not depend on when it
// runs.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err()
}
