package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
)

// The probe tenant has one account whose events carry distinct times, one
// second apart: the account's cached score_time (the tenant's watermark, in
// seconds) tells which probes scoring has applied and flushed.
const (
	probeTenant  = "probe"
	probeAccount = "probe-account"
)

// probeEpoch is how far before the run's start the probe times begin. It
// must exceed scoring's live lag (an hour) plus the probes of a run, or a
// tick would move the probe tenant's watermark to the wall clock.
const probeEpoch = 6 * time.Hour

// maxProbes bounds the probes of a run so that their times stay in the past.
const maxProbes = 4 * 3600

// prober measures event-to-score latency: from the 200 of a probe's batch to
// its score visible in Redis.
type prober struct {
	d     *driver
	cache *cache.Redis
	base  time.Time // probe n happens at base + n seconds
	next  int       // probes sent in earlier runs

	mu      sync.Mutex
	acked   map[int]time.Time
	visible map[int]time.Time
	failed  int
}

// driver is the prober's driver, nil for no prober.
func (p *prober) driver() *driver {
	if p == nil {
		return nil
	}
	return p.d
}

func (p *prober) at(n int) time.Time { return p.base.Add(time.Duration(n) * time.Second) }

// run sends probes at rate per second, open loop, for d, and then waits up
// to settle for the last ones to show.
func (p *prober) run(ctx context.Context, rate float64, d, settle time.Duration) (stats.Summary, int, error) {
	p.acked, p.visible, p.failed = map[int]time.Time{}, map[int]time.Time{}, 0
	first := p.next
	if first+int(math.Ceil(rate*d.Seconds()))+1 > maxProbes {
		return stats.Summary{}, 0, fmt.Errorf("more than %d probes in one run", maxProbes)
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	polled := make(chan error, 1)
	go func() { polled <- p.poll(pollCtx, first) }()

	sent, err := openLoop(ctx, rate, d, func(k int) {
		n := first + k
		if err := p.d.post(ctx, probeBody(n, p.at(n))); err != nil {
			p.mu.Lock()
			p.failed++
			p.mu.Unlock()
			return
		}
		now := time.Now()
		p.mu.Lock()
		p.acked[n] = now
		p.mu.Unlock()
	})
	p.next = first + sent
	if err != nil {
		return stats.Summary{}, 0, err
	}
	for deadline := time.Now().Add(settle); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		done := len(p.visible) >= p.next-first
		p.mu.Unlock()
		if done {
			break
		}
	}
	stopPoll()
	if err := <-polled; err != nil && !errors.Is(err, context.Canceled) {
		return stats.Summary{}, 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var lat []time.Duration
	lost := p.failed
	for n := first; n < p.next; n++ {
		ack, okA := p.acked[n]
		vis, okV := p.visible[n]
		if !okA || !okV {
			if okA {
				lost++
			}
			continue
		}
		lat = append(lat, max(0, vis.Sub(ack)))
	}
	return stats.Summarize(lat), lost, nil
}

// poll reads the probe account's score about every millisecond and marks
// each probe at or before its score_time visible at that moment.
func (p *prober) poll(ctx context.Context, first int) error {
	seen := first - 1
	for {
		hs, err := p.cache.GetScore(ctx, probeTenant, probeAccount)
		switch {
		case errors.Is(err, cache.ErrNotFound):
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("poll probe score: %w", err)
		default:
			now := time.Now()
			last := int(hs.GetScoreTime().GetSeconds() - p.base.Unix())
			if last > seen {
				p.mu.Lock()
				for n := seen + 1; n <= last; n++ {
					p.visible[n] = now
				}
				p.mu.Unlock()
				seen = last
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// openLoop calls probe(k) for k = 0, 1, ... at rate per second for d, each
// on its own goroutine, open loop: probe k starts at start + k/rate whatever
// became of the ones before it. It waits for every probe it started and
// returns how many.
func openLoop(ctx context.Context, rate float64, d time.Duration, probe func(k int)) (int, error) {
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	k := 0
	for ; time.Since(start) < d; k++ {
		n := k // k moves on before the probe may start
		wg.Go(func() { probe(n) })
		select {
		case <-ctx.Done():
			return k + 1, ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(k+1) * interval))):
		}
	}
	return k, nil
}

// loadRun is what the background load did while a measurement ran.
type loadRun struct {
	Rate float64
	Pace paceResult
	CPU  CPUUse
}

// note describes the background load for a figure's note, and says when it
// fell behind.
func (r loadRun) note() string {
	s := fmt.Sprintf("background %.0f events/s (%s)", r.Rate, r.CPU)
	if ok, why := r.Pace.ok(); !ok {
		s += "; background load fell behind: " + why
	}
	return s
}

// underLoad runs measure while the load generator offers rate events/s of
// the simulated product's batches, open loop: after a warm-up of the load
// and then, when ready is not nil, once ready returns; with the machine's
// CPU metered over measure. The caller drains what came before.
func (b *bench) underLoad(ctx context.Context, rate float64, what string, ready, measure func(context.Context) error) (loadRun, error) {
	run := loadRun{Rate: rate}
	b.quiet(ctx, what)
	loadCtx, stopLoad := context.WithCancel(ctx)
	paced := make(chan paceResult, 1)
	go func() { paced <- b.load.pace(loadCtx, b.pool, rate) }()
	select {
	case <-ctx.Done():
		stopLoad()
		<-paced
		return run, ctx.Err()
	case <-time.After(b.cfg.warmup):
	}
	if ready != nil {
		if err := ready(ctx); err != nil {
			stopLoad()
			run.Pace = <-paced
			return run, err
		}
	}
	cpu := startCPU(ctx, b.rc)
	err := measure(ctx)
	run.CPU = cpu.stop(ctx)
	stopLoad()
	run.Pace = <-paced
	return run, err
}

// latency measures event-to-score latency under background load at shares
// of the sustained throughput.
func (b *bench) latency(ctx context.Context) error {
	sec := b.report.section(phaseLatency, "Event-to-score latency (HTTP 200 -> score visible in Redis)")
	if b.sustained <= 0 {
		return errors.New("latency needs the sustained rate: run the e2e phase or give -e2e.rate")
	}
	for _, share := range []float64{0.25, 0.5, 0.75} {
		rate := share * b.sustained
		if err := b.ls.drain(ctx, 2*time.Minute); err != nil {
			return err
		}
		var (
			sum  stats.Summary
			lost int
		)
		load, err := b.underLoad(ctx, rate, "latency level", nil, func(ctx context.Context) (err error) {
			sum, lost, err = b.probe.run(ctx, b.cfg.probeRate, b.cfg.latencyDuration, 5*time.Second)
			return err
		})
		if err != nil {
			return err
		}
		note := fmt.Sprintf("%d probes at %.0f/s over %s, %s", sum.N, b.cfg.probeRate, b.cfg.latencyDuration, load.note())
		if lost > 0 {
			note += fmt.Sprintf("; %d probes not visible within 5 s", lost)
		}
		b.latencies[share] = sum
		pct := fmt.Sprintf("%.0f%%", 100*share)
		sec.add(Figure{Name: "p50 at " + pct + " of sustained", Value: ms(sum.P50), Unit: "ms", Note: note})
		sec.add(Figure{Name: "p99 at " + pct + " of sustained", Value: ms(sum.P99), Unit: "ms"})
		sec.add(Figure{Name: "p99.9 at " + pct + " of sustained", Value: ms(sum.P999), Unit: "ms"})
		b.logger.Info("event-to-score latency", "share", share, "events_s", int(rate), "p50", sum.P50, "p99", sum.P99, "p999", sum.P999, "n", sum.N, "lost", lost)
	}
	sec.note("A score becomes visible at scoring's next flush (-scoring.flush-interval %s) after its event is applied, which scores the accounts due and SETs their scores in Redis, so the flush interval is a floor under these latencies: a probe waits on average half an interval and at worst a whole one, plus the flush's own time. Rankings and history follow at the next index step (-scoring.index-interval %s), off this path. Probes are sent open loop (never waiting for the previous one), each measured from its own 200 to the first poll (about every millisecond) that sees its score.",
		b.lcfg.Scoring.FlushInterval, b.lcfg.Scoring.IndexInterval)
	return nil
}
