package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// paceKind is how a phase schedules its events.
type paceKind uint8

const (
	// paceFixed schedules events at a fixed rate, open loop.
	paceFixed paceKind = iota
	// paceMax sends as fast as the concurrency bound allows.
	paceMax
	// paceNatural sends each event when it happens in the simulation: the
	// product's own pace, diurnal and all.
	paceNatural
)

// pace is the -rate flag: events per second, "max" or "natural".
type pace struct {
	kind      paceKind
	perSecond float64
}

func (p *pace) String() string {
	switch p.kind {
	case paceMax:
		return "max"
	case paceNatural:
		return "natural"
	}
	return strconv.FormatFloat(p.perSecond, 'g', -1, 64)
}

func (p *pace) Set(s string) error {
	switch s {
	case "max":
		*p = pace{kind: paceMax}
	case "natural":
		*p = pace{kind: paceNatural}
	default:
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || !(r > 0) || r > 1e9 {
			return errors.New("want events per second (> 0), max or natural")
		}
		*p = pace{kind: paceFixed, perSecond: r}
	}
	return nil
}

// phase is a stretch of the simulation played at one pace.
type phase struct {
	name string
	// from and to bound the simulated time played; to is open when zero.
	from, to time.Time
	pace     pace
	// live phases stamp each event with the time it is due to be sent (at
	// a fixed rate the simulation's clock runs ahead of the wall clock and
	// only decides who does what); the backfill keeps the simulated times,
	// which lie in the past.
	live bool
}

// item is an event of one tenant.
type item struct {
	tenant int
	ev     sim.Event
}

// batch is the events of one tenant sent together.
type batch struct {
	tenant *tenant
	events []sim.Event
	// intended is when the batch is due to be sent; latency is measured
	// from it, not from when it was sent, so that a server slowing the
	// sender down shows in the latency (no coordinated omission). Zero at
	// max pace, where the worker taking the batch sets it.
	intended time.Time
	// deadline is when a batch that is not full goes anyway (paced).
	deadline time.Time
	// stamp asks the worker to stamp the events with the send time (live
	// phase at max pace).
	stamp bool
}

// errLimit reports that -events is reached.
var errLimit = errors.New("event limit reached")

// driver plays phases: it generates the tenants' events in time order,
// batches them per tenant and hands the batches to workers on schedule.
type driver struct {
	cfg     *options
	tenants []*tenant
	trans   transport
	clock   clock
	stats   *stats
	log     io.Writer
	// fail stops the run on a fatal error.
	fail func(error)

	work    chan *batch
	workers sync.WaitGroup
	// inflight counts the batches handed out and not yet sent, so that a
	// phase ends when its last batch is answered.
	inflight  sync.WaitGroup
	pending   []*batch // per tenant
	live      bool     // the phase being played is live
	scheduled int64    // events scheduled over all phases
	warnings  atomic.Int64
}

func newDriver(cfg *options, tenants []*tenant, trans transport, log io.Writer, fail func(error)) *driver {
	return &driver{
		cfg:     cfg,
		tenants: tenants,
		trans:   trans,
		clock:   wallClock{},
		stats:   &stats{},
		log:     log,
		fail:    fail,
		work:    make(chan *batch),
		pending: make([]*batch, len(tenants)),
	}
}

// start starts the workers; they send until ctx is done.
func (d *driver) start(ctx context.Context) {
	for range d.cfg.concurrency {
		d.workers.Go(func() {
			for b := range d.work {
				d.send(ctx, b)
				d.inflight.Done()
			}
		})
	}
}

// stop waits for the batches handed out to be sent.
func (d *driver) stop() {
	close(d.work)
	d.workers.Wait()
}

// play plays one phase until its end, ctx is done or -events is reached.
func (d *driver) play(ctx context.Context, ph phase) error {
	d.live = ph.live
	start := d.clock.Now()
	d.stats.begin(ph.name, start)
	var lc *liveClock
	if ph.pace.kind == paceNatural {
		lc = &liveClock{simStart: ph.from, wallStart: ph.from, speed: 1}
		if ph.live {
			lc = newLiveClock(ph.from, start, d.cfg.liveSpeed, d.cfg.liveBusy, d.tenants)
		}
	}
	var (
		chunk []item
		buf   []sim.Event
		n     int64
	)
	for h := ph.from.Truncate(time.Hour); ph.to.IsZero() || h.Before(ph.to); h = h.Add(time.Hour) {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk = chunk[:0]
		for i, t := range d.tenants {
			buf = t.product.AppendHour(buf[:0], h)
			for _, ev := range buf {
				chunk = append(chunk, item{tenant: i, ev: ev})
			}
		}
		if lc != nil {
			if !lc.play(h, len(chunk)) {
				continue
			}
			// Keep within an hour of the clock: quiet hours would otherwise
			// be run through far into the future.
			if wall := lc.wall(h); wall.Sub(d.clock.Now()) > time.Hour {
				if err := d.flush(ctx); err != nil {
					return err
				}
				if err := d.clock.SleepUntil(ctx, wall.Add(-time.Hour)); err != nil {
					return err
				}
			}
		}
		if len(d.tenants) > 1 {
			slices.SortStableFunc(chunk, func(x, y item) int { return x.ev.Time.Compare(y.ev.Time) })
		}
		for _, it := range chunk {
			if it.ev.Time.Before(ph.from) {
				continue
			}
			if !ph.to.IsZero() && !it.ev.Time.Before(ph.to) {
				break
			}
			var due time.Time
			switch ph.pace.kind {
			case paceFixed:
				due = start.Add(time.Duration(float64(n) / ph.pace.perSecond * float64(time.Second)))
			case paceNatural:
				due = lc.wall(it.ev.Time)
			}
			if ph.live && !due.IsZero() {
				it.ev.Time = due
			}
			n++
			d.scheduled++
			if err := d.add(ctx, it, due); err != nil {
				return err
			}
			if d.cfg.events > 0 && d.scheduled >= d.cfg.events {
				if err := d.flush(ctx); err != nil {
					return err
				}
				return errLimit
			}
		}
	}
	return d.flush(ctx)
}

// add adds an event due at due (zero at max pace) to its tenant's batch,
// first sending the batches whose deadline comes before it.
func (d *driver) add(ctx context.Context, it item, due time.Time) error {
	if !due.IsZero() {
		for {
			next := -1
			for i, b := range d.pending {
				if b != nil && !b.deadline.After(due) && (next < 0 || b.deadline.Before(d.pending[next].deadline)) {
					next = i
				}
			}
			if next < 0 {
				break
			}
			b := d.pending[next]
			d.pending[next] = nil
			if err := d.dispatch(ctx, b, b.deadline); err != nil {
				return err
			}
		}
	}
	b := d.pending[it.tenant]
	if b == nil {
		b = &batch{tenant: d.tenants[it.tenant], events: make([]sim.Event, 0, d.cfg.batchSize)}
		if !due.IsZero() {
			b.deadline = due.Add(d.cfg.batchWait)
		}
		d.pending[it.tenant] = b
	}
	b.events = append(b.events, it.ev)
	if len(b.events) < d.cfg.batchSize {
		return nil
	}
	d.pending[it.tenant] = nil
	return d.dispatch(ctx, b, due)
}

// flush sends every pending batch, each at its deadline.
func (d *driver) flush(ctx context.Context) error {
	for i, b := range d.pending {
		if b == nil {
			continue
		}
		d.pending[i] = nil
		if err := d.dispatch(ctx, b, b.deadline); err != nil {
			return err
		}
	}
	return nil
}

// dispatch waits until the batch is due (now when due is zero) and hands
// it to a worker.
func (d *driver) dispatch(ctx context.Context, b *batch, due time.Time) error {
	if err := d.clock.SleepUntil(ctx, due); err != nil {
		return err
	}
	b.intended = due
	b.stamp = d.live && due.IsZero()
	d.inflight.Add(1)
	select {
	case d.work <- b:
		return nil
	case <-ctx.Done():
		d.inflight.Done()
		return ctx.Err()
	}
}

// send delivers a batch, request by request, with retries. Requests run to
// completion (bounded by -timeout) even when the run is stopping, so that
// nothing handed out is left half sent; only retries stop.
func (d *driver) send(ctx context.Context, b *batch) {
	if b.intended.IsZero() {
		b.intended = d.clock.Now()
	}
	if b.stamp {
		for i := range b.events {
			b.events[i].Time = b.intended
		}
	}
	d.stats.sending(b.events[len(b.events)-1].Time)
	reqs, err := d.trans.requests(b.tenant, b.events)
	if err != nil {
		d.fail(err)
		return
	}
	for _, req := range reqs {
		var rejected []string
		err := withRetries(ctx, d.cfg.retries, func() error {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.timeout)
			defer cancel()
			var err error
			rejected, err = req.do(rctx)
			return err
		}, d.stats.retried)
		d.stats.request(d.clock.Now().Sub(b.intended), req.len(), len(rejected), err != nil)
		var fatal *fatalError
		if errors.As(err, &fatal) {
			d.fail(err)
			return
		}
		if err != nil {
			d.warn("request failed: %v", err)
		}
		if len(rejected) > 0 {
			d.warn("%d events rejected, the first: %s", len(rejected), rejected[0])
		}
	}
}

// maxWarnings bounds the warnings printed, so that a broken server does
// not flood the terminal; the progress lines keep counting.
const maxWarnings = 10

// warn prints a warning, up to maxWarnings of them.
func (d *driver) warn(format string, args ...any) {
	switch n := d.warnings.Add(1); {
	case n < maxWarnings:
		fmt.Fprintf(d.log, "loadgen: "+format+"\n", args...)
	case n == maxWarnings:
		fmt.Fprintln(d.log, "loadgen: more warnings suppressed; see the failed and rejected counts")
	}
}
