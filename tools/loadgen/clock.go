package main

import (
	"context"
	"time"

	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// clock is the driver's time: the wall clock, or a test's.
type clock interface {
	Now() time.Time
	// SleepUntil waits until t, or returns ctx's error if it is done first.
	SleepUntil(ctx context.Context, t time.Time) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) SleepUntil(ctx context.Context, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// maxQuietHours bounds the quiet hours a busy live clock skips in a row, so
// that a product whose activity fell below last week's mean is still played.
const maxQuietHours = 72

// liveClock maps the simulated time of a live phase at the natural pace to
// the wall clock. At speed 1 without busy, a simulated event happens when
// the wall clock says it does: the product's own pace, nights and weekends
// included. A speed above 1 plays that many simulated seconds per wall
// second; busy skips the simulation's quiet hours (nights, weekends), those
// with fewer events than an average hour of the week before the phase. The
// events are stamped with the wall time they are sent at, so Lodestar sees a
// product busier than the simulated one; the simulation itself (who does
// what, which accounts decline) is unchanged, and the backfill keeps its
// real times.
type liveClock struct {
	simStart, wallStart time.Time
	speed               float64
	// busyAt is the events an hour needs to be played; 0 plays every hour.
	busyAt float64
	// skipped is the simulated time skipped so far; quiet counts the hours
	// skipped in a row.
	skipped time.Duration
	quiet   int
}

// newLiveClock starts a live clock at simulated time from and wall time
// wall. With busy, it measures the tenants' mean events per hour over the
// week before from.
func newLiveClock(from, wall time.Time, speed float64, busy bool, tenants []*tenant) *liveClock {
	c := &liveClock{simStart: from, wallStart: wall, speed: speed}
	if busy {
		var n int
		var buf []sim.Event
		week := from.Truncate(time.Hour).Add(-7 * 24 * time.Hour)
		for h := week; h.Before(from.Truncate(time.Hour)); h = h.Add(time.Hour) {
			for _, t := range tenants {
				buf = t.product.AppendHour(buf[:0], h)
				n += len(buf)
			}
		}
		c.busyAt = float64(n) / (7 * 24)
	}
	return c
}

// play reports whether the simulated hour h, holding events events, is
// played; an hour not played is skipped, and the hours after it come
// sooner on the wall clock.
func (c *liveClock) play(h time.Time, events int) bool {
	if c.busyAt == 0 || float64(events) >= c.busyAt || c.quiet >= maxQuietHours {
		c.quiet = 0
		return true
	}
	c.quiet++
	// The first hour may have begun before the phase: only its rest is
	// skipped.
	begin := h
	if begin.Before(c.simStart) {
		begin = c.simStart
	}
	c.skipped += h.Add(time.Hour).Sub(begin)
	return false
}

// wall returns the wall time at which simulated time t is played.
func (c *liveClock) wall(t time.Time) time.Time {
	return c.wallStart.Add(time.Duration(float64(t.Sub(c.simStart)-c.skipped) / c.speed))
}
