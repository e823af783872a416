package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
)

// calibrationBatches is how many pool batches are posted to learn the
// messages Lodestar makes of them.
const calibrationBatches = 30

// calibrate posts the first batches of the pool and reads back the EVENTS
// messages they became: the payloads the raw baselines publish.
func (b *bench) calibrate(ctx context.Context) error {
	s, err := b.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	before, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	var buf []byte
	for _, t := range b.pool[:min(calibrationBatches, len(b.pool))] {
		buf = t.stamp(buf, b.load.seq.Add(1), time.Now())
		if err := b.load.post(ctx, buf); err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
	}
	after, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	b.shapes = nil
	for seq := before.State.LastSeq + 1; seq <= after.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return fmt.Errorf("calibrate: read EVENTS %d: %w", seq, err)
		}
		var batch eventv1.EventBatch
		if err := proto.Unmarshal(m.Data, &batch); err != nil {
			return fmt.Errorf("calibrate: decode EVENTS %d: %w", seq, err)
		}
		p, err := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
		if err != nil {
			return fmt.Errorf("calibrate: subject %s: %w", m.Subject, err)
		}
		b.shapes = append(b.shapes, msgShape{Partition: p, Size: len(m.Data), Events: len(batch.GetEvents())})
	}
	if len(b.shapes) == 0 {
		return fmt.Errorf("calibrate: %d batches made no EVENTS message", calibrationBatches)
	}
	return b.ls.drain(ctx, time.Minute)
}

// stepResult is one open-loop run of the end-to-end pipeline.
type stepResult struct {
	Rate   float64
	Passed bool
	Why    string
	Pace   paceResult
	CPU    CPUUse
	// Applied is scoring's applied events per second over the window, and
	// Scores the scores it wrote to the cache per second.
	Applied, Scores float64
}

// e2eStep offers rate events/s of Segment batches for warmup + window and
// reports whether ingest took them all and scoring kept up. extra runs
// beside the load (the latency probe), started when the window begins.
func (b *bench) e2eStep(ctx context.Context, rate float64, window time.Duration) (stepResult, error) {
	res := stepResult{Rate: rate}
	if err := b.ls.drain(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	b.quiet(ctx, "end-to-end step")
	var (
		cpu    *cpuMeter
		scores []float64 // first and last
	)
	got := sampleWhile(ctx, b.cfg.warmup, window, func() (stats.Sample, error) {
		if cpu == nil {
			cpu = startCPU(ctx, b.rc)
		}
		c, err := b.ls.counters(ctx, metricAccepted, metricApplied, metricScores)
		if err != nil {
			return stats.Sample{}, err
		}
		scores = append(scores[:min(len(scores), 1)], c[2])
		return stats.Sample{Produced: c[0], Consumed: c[1]}, nil
	}, func(stop <-chan struct{}) error {
		pctx, cancel := context.WithCancel(ctx)
		go func() { <-stop; cancel() }()
		res.Pace = b.load.pace(pctx, b.pool, rate)
		return nil
	})
	if got.err != nil {
		return res, got.err
	}
	if cpu != nil {
		res.CPU = cpu.stop(ctx)
	}
	s := got.samples
	if n := len(s); n > 1 {
		span := (s[n-1].At - s[0].At).Seconds()
		res.Applied = (s[n-1].Consumed - s[0].Consumed) / span
		res.Scores = (scores[1] - scores[0]) / span
	}
	if res.Passed, res.Why = res.Pace.ok(); res.Passed {
		res.Passed, res.Why = stats.DefaultKeepUp.Check(s, rate)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.logger.Info("end-to-end step", "events_s", int(rate), "kept_up", res.Passed, "why", res.Why,
		"applied_s", int(res.Applied), "scores_s", int(res.Scores), "http_p99", res.Pace.Requests.P99, "cpu", res.CPU.String(),
		"heap_mib", ms.HeapAlloc>>20, "gcs", ms.NumGC)
	return res, nil
}

// e2e finds the sustained end-to-end throughput and, when asked, profiles
// a window at that rate.
func (b *bench) e2e(ctx context.Context) error {
	sec := b.report.section(phaseE2E, "End-to-end throughput: Segment HTTP -> JetStream -> scoring -> Redis")
	var steps []stepResult
	if b.cfg.e2eRate > 0 {
		b.sustained = b.cfg.e2eRate
		sec.note("Sustained rate given with -e2e.rate %.0f: not searched in this run.", b.cfg.e2eRate)
	} else {
		search, err := stats.NewSearch(b.cfg.e2eStart, b.cfg.searchFactor, b.cfg.searchPrecision, b.cfg.searchSteps)
		if err != nil {
			return err
		}
		for rate, ok := search.Next(); ok; rate, ok = search.Next() {
			r, err := b.e2eStep(ctx, rate, b.cfg.duration)
			if err != nil {
				return err
			}
			steps = append(steps, r)
			search.Record(r.Passed)
		}
		b.sustained = search.Best()
		if b.sustained == 0 {
			return fmt.Errorf("no offered rate down to %.0f events/s kept up", steps[len(steps)-1].Rate)
		}
	}
	best, firstFail := bestAndFail(steps, b.sustained)
	b.e2eBest, b.e2eFail = best, firstFail

	packed, flat := b.raw["packed"], b.raw["256-byte"]
	k := workload{shapes: b.shapes}.eventsPerMsg()
	f := Figure{Name: "sustained throughput", Value: ptr(b.sustained), Unit: "events/s",
		Note: fmt.Sprintf("%d-event batches over %d connections, open loop; highest rate where every batch got 200 and scoring's backlog did not grow over %s", batchEvents, b.cfg.conns, b.cfg.duration)}
	if flat.Pipeline > 0 {
		f.Baseline, f.BaselineValue = "raw publish+consume, 256-byte msgs/s", ptr(flat.Pipeline)
	}
	sec.add(f)
	if packed.Pipeline > 0 {
		sec.add(Figure{Name: "sustained throughput, same payloads", Value: ptr(b.sustained), Unit: "events/s",
			Baseline: "raw publish+consume of the packed messages, in events/s", BaselineValue: ptr(packed.Pipeline * k),
			Note: fmt.Sprintf("%.0f msgs/s at %.1f events/message", b.sustained/k, k)})
	}
	if best != nil {
		sec.add(Figure{Name: "HTTP batch latency at the sustained rate, p50", Value: ms(best.Pace.Requests.P50), Unit: "ms",
			Note: "from when the batch was due to its 200: decode, validate, attribute, publish, every PubAck"})
		sec.add(Figure{Name: "HTTP batch latency at the sustained rate, p99", Value: ms(best.Pace.Requests.P99), Unit: "ms"})
		sec.add(Figure{Name: "CPU at the sustained rate, bench process", Value: ptr(best.CPU.Process), Unit: "cores",
			Baseline: "cores", BaselineValue: ptr(float64(b.machine.CPUs)),
			Note: "ingest, embedded NATS server, scoring, gRPC and the load generator share the process"})
		sec.add(Figure{Name: "CPU at the sustained rate, Redis", Value: ptr(best.CPU.Redis), Unit: "cores"})
		sec.add(Figure{Name: "scores written to the cache at the sustained rate", Value: ptr(best.Scores), Unit: "scores/s",
			Note: fmt.Sprintf("%.2f per event: every account due is set at each flush (-scoring.flush-interval %s); each account's latest is indexed every -scoring.index-interval", best.Scores/best.Rate, b.lcfg.Scoring.FlushInterval)})
	}
	if firstFail != nil {
		sec.note("The lowest rate that failed, %.0f events/s: %s; scoring applied %.0f events/s (CPU: %s).", firstFail.Rate, firstFail.Why, firstFail.Applied, firstFail.CPU)
	}
	if len(steps) > 0 {
		var parts []string
		for _, s := range steps {
			v := "kept up"
			if !s.Passed {
				v = "failed"
			}
			parts = append(parts, fmt.Sprintf("%.0f %s", s.Rate, v))
		}
		sec.note("Search steps (events/s): %s.", strings.Join(parts, ", "))
	}
	if b.cfg.profile {
		return b.profile(ctx, sec)
	}
	return nil
}

// bestAndFail returns the step at the sustained rate and the lowest failing
// step above it.
func bestAndFail(steps []stepResult, sustained float64) (best, fail *stepResult) {
	for i := range steps {
		s := &steps[i]
		switch {
		case s.Passed && s.Rate == sustained:
			best = s
		case !s.Passed && s.Rate > sustained && (fail == nil || s.Rate < fail.Rate):
			fail = s
		}
	}
	return best, fail
}

// profile runs one window at the sustained rate under the CPU profiler,
// summarises where the CPU and the allocations went, and measures the
// allocations per event of the whole process. The profiles are kept only
// where -cpuprofile and -memprofile say.
func (b *bench) profile(ctx context.Context, sec *Section) error {
	cpuPath, memPath := b.cfg.cpuProfile, b.cfg.memProfile
	if cpuPath == "" {
		cpuPath = filepath.Join(b.dir, "cpu.pprof")
	}
	if memPath == "" {
		memPath = filepath.Join(b.dir, "allocs.pprof")
	}
	cpuFile, err := os.Create(cpuPath)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer cpuFile.Close()
	base, err := heapProfile()
	if err != nil {
		return err
	}
	if err := b.ls.drain(ctx, 2*time.Minute); err != nil {
		return err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := pprof.StartCPUProfile(cpuFile); err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	r, err := b.e2eStep(ctx, b.sustained, b.cfg.duration)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	runtime.ReadMemStats(&after)
	events := float64(r.Pace.Sent)
	sec.add(Figure{Name: "allocations per event, whole process", Value: ptr(float64(after.Mallocs-before.Mallocs) / events), Unit: "allocs",
		Note: fmt.Sprintf("profiled window of %s at %.0f events/s (kept up: %v); includes the load generator", b.cfg.warmup+b.cfg.duration, r.Rate, r.Passed)})
	sec.add(Figure{Name: "bytes allocated per event, whole process", Value: ptr(float64(after.TotalAlloc-before.TotalAlloc) / events), Unit: "bytes"})
	sec.add(Figure{Name: "GC cycles in the profiled window", Value: ptr(float64(after.NumGC - before.NumGC)), Unit: ""})
	sec.add(Figure{Name: "process CPU per event", Value: ptr(r.CPU.Process / r.Rate * 1e6), Unit: "µs",
		Note: "from getrusage over the window: the most stable figure to compare builds by on a noisy machine"})
	sec.add(Figure{Name: "Redis CPU per event", Value: ptr(r.CPU.Redis / r.Rate * 1e6), Unit: "µs",
		Note: fmt.Sprintf("%.0f scores/s written, %.0f µs of Redis CPU each", r.Scores, r.CPU.Redis/max(r.Scores, 1)*1e6)})
	b.report.Profile = &ProfileSummary{
		Window:  fmt.Sprintf("%s at %.0f events/s", b.cfg.warmup+b.cfg.duration, r.Rate),
		CPUFile: b.cfg.cpuProfile, MemFile: b.cfg.memProfile, Events: events,
	}
	if err := b.report.Profile.addCPU(cpuPath); err != nil {
		return err
	}
	allocs, err := heapProfile()
	if err != nil {
		return err
	}
	for path, data := range map[string][]byte{memPath: allocs, memPath + ".base": base} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("allocation profile: %w", err)
		}
	}
	return b.report.Profile.addAllocs(base, allocs)
}

func ms(d time.Duration) *float64 { return ptr(float64(d) / float64(time.Millisecond)) }
