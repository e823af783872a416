package main

import (
	"context"
	"errors"
	"fmt"
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
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	polled := make(chan error, 1)
	go func() { polled <- p.poll(pollCtx, first) }()

	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for k := 0; time.Since(start) < d; k++ {
		if p.next >= maxProbes {
			return stats.Summary{}, 0, fmt.Errorf("more than %d probes in one run", maxProbes)
		}
		n := p.next
		p.next++
		wg.Go(func() {
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
		select {
		case <-ctx.Done():
			return stats.Summary{}, 0, ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(k+1) * interval))):
		}
	}
	wg.Wait()
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
		b.quiet(ctx, "latency level")
		loadCtx, stopLoad := context.WithCancel(ctx)
		paced := make(chan paceResult, 1)
		go func() { paced <- b.load.pace(loadCtx, b.pool, rate) }()
		select {
		case <-ctx.Done():
			stopLoad()
			return ctx.Err()
		case <-time.After(b.cfg.warmup):
		}
		cpu := startCPU(ctx, b.rc)
		sum, lost, err := b.probe.run(ctx, b.cfg.probeRate, b.cfg.latencyDuration, 5*time.Second)
		use := cpu.stop(ctx)
		stopLoad()
		pr := <-paced
		if err != nil {
			return err
		}
		loadOK, why := pr.ok()
		note := fmt.Sprintf("%d probes at %.0f/s over %s, background %.0f events/s (%s)", sum.N, b.cfg.probeRate, b.cfg.latencyDuration, rate, use)
		if lost > 0 {
			note += fmt.Sprintf("; %d probes not visible within 5 s", lost)
		}
		if !loadOK {
			note += "; background load fell behind: " + why
		}
		b.latencies[share] = sum
		pct := fmt.Sprintf("%.0f%%", 100*share)
		sec.add(Figure{Name: "p50 at " + pct + " of sustained", Value: ms(sum.P50), Unit: "ms", Note: note})
		sec.add(Figure{Name: "p99 at " + pct + " of sustained", Value: ms(sum.P99), Unit: "ms"})
		sec.add(Figure{Name: "p99.9 at " + pct + " of sustained", Value: ms(sum.P999), Unit: "ms"})
		b.logger.Info("event-to-score latency", "share", share, "events_s", int(rate), "p50", sum.P50, "p99", sum.P99, "p999", sum.P999, "n", sum.N, "lost", lost)
	}
	sec.add(Figure{Name: "event-to-alert latency", Unit: "ms",
		Note: "not measured yet by this tool: churn-alert has just landed; its own BenchmarkEventToAlert (go test -run '^$' -bench EventToAlert ./services/allinone) measures it under light load until this row gets its figure"})
	sec.note("A score becomes visible at scoring's next flush (-scoring.flush-interval %s) after its event is applied, so the flush interval is a floor under these latencies: a probe waits on average half an interval and at worst a whole one, plus the flush's own time. Probes are sent open loop (never waiting for the previous one), each measured from its own 200 to the first poll (about every millisecond) that sees its score.",
		b.lcfg.Scoring.FlushInterval)
	return nil
}
