package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
)

// rawStream is the stream the raw baselines publish to: EVENTS's
// configuration (file storage, duplicate window, limits) under another name.
const (
	rawStream  = "BENCH_RAW"
	rawSubject = "bench.raw"
)

// msgShape is one message Lodestar publishes: its partition and payload
// size, and the events it packs.
type msgShape struct {
	Partition int
	Size      int
	Events    int
}

// workload is a sequence of message shapes published round robin.
type workload struct {
	name   string
	shapes []msgShape
}

// eventsPerMsg is the mean events per message of a workload.
func (w workload) eventsPerMsg() float64 {
	n := 0
	for _, s := range w.shapes {
		n += s.Events
	}
	return float64(n) / float64(len(w.shapes))
}

func (w workload) meanSize() float64 {
	n := 0
	for _, s := range w.shapes {
		n += s.Size
	}
	return float64(n) / float64(len(w.shapes))
}

// rawJS is JetStream alone: the very server Lodestar uses, over a
// connection of the same kind, with natsx's publish window.
type rawJS struct {
	nc *nats.Conn
	js jetstream.JetStream
	// seq makes message ids unique across the runs of one bench run.
	seq atomic.Uint64
	run string
}

func startRawJS(ctx context.Context, b *bench) (*rawJS, error) {
	nc, err := natsx.Connect(ctx, b.lcfg.NATSURL, "bench-raw", b.logger)
	if err != nil {
		return nil, err
	}
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &rawJS{nc: nc, js: js, run: b.runID}, nil
}

func (r *rawJS) close() { r.nc.Close() }

// freshStream deletes and recreates the raw stream, so each measurement
// starts empty.
func (r *rawJS) freshStream(ctx context.Context) (jetstream.Stream, error) {
	if err := r.js.DeleteStream(ctx, rawStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("delete %s: %w", rawStream, err)
	}
	cfg := natsx.DefaultLimits().EventsStream()
	cfg.Name, cfg.Subjects, cfg.Description = rawStream, []string{rawSubject + ".>"}, "tools/bench raw JetStream baseline"
	s, err := r.js.CreateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", rawStream, err)
	}
	return s, nil
}

// publisher publishes a workload's messages asynchronously within natsx's
// bounded window, as ingest does, and counts the PubAcks.
type publisher struct {
	r       *rawJS
	w       workload
	payload []byte
	next    int
	futures chan jetstream.PubAckFuture
	acked   atomic.Int64
	failed  atomic.Int64
	done    chan struct{}
}

func (r *rawJS) newPublisher(w workload) *publisher {
	maxSize := 0
	for _, s := range w.shapes {
		maxSize = max(maxSize, s.Size)
	}
	p := &publisher{r: r, w: w, payload: make([]byte, maxSize),
		futures: make(chan jetstream.PubAckFuture, 2*natsx.MaxPendingAcks), done: make(chan struct{})}
	for i := range p.payload {
		p.payload[i] = byte('a' + i%26)
	}
	go func() {
		defer close(p.done)
		for f := range p.futures {
			select {
			case <-f.Ok():
				p.acked.Add(1)
			case <-f.Err():
				p.failed.Add(1)
			}
		}
	}()
	return p
}

// publish sends the workload's next message, each with its own
// Nats-Msg-Id so that the server pays for deduplication as it does for
// EVENTS.
func (p *publisher) publish() error {
	s := p.w.shapes[p.next%len(p.w.shapes)]
	p.next++
	m := &nats.Msg{
		Subject: rawSubject + "." + strconv.Itoa(s.Partition),
		Data:    p.payload[:s.Size],
		Header:  nats.Header{jetstream.MsgIDHeader: []string{p.r.run + "-" + strconv.FormatUint(p.r.seq.Add(1), 36)}},
	}
	f, err := p.r.js.PublishMsgAsync(m, jetstream.WithStallWait(10*time.Second))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p.futures <- f
	return nil
}

// finish waits for every PubAck, at most timeout.
func (p *publisher) finish(timeout time.Duration) error {
	close(p.futures)
	select {
	case <-p.done:
	case <-time.After(timeout):
		return errors.New("PubAcks still outstanding")
	}
	if n := p.failed.Load(); n > 0 {
		return fmt.Errorf("%d publishes failed", n)
	}
	return nil
}

// consumer reads a stream with a pull consumer and acknowledges in batches:
// with AckAll, one ack covers every message before it.
type consumer struct {
	cc       jetstream.ConsumeContext
	consumed atomic.Int64
}

// ackEvery is the batch of messages one ack covers.
const ackEvery = 256

func consume(ctx context.Context, s jetstream.Stream) (*consumer, error) {
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "bench-raw",
		AckPolicy:     jetstream.AckAllPolicy,
		MaxAckPending: 4 * ackEvery,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	c := &consumer{}
	var mu sync.Mutex
	var last jetstream.Msg
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		last = m
		if c.consumed.Add(1)%ackEvery == 0 {
			_ = m.Ack()
		}
	}, jetstream.PullMaxMessages(2*ackEvery))
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	// Ack the tail of a quiet stream, so the pending window never stalls
	// at fewer than ackEvery messages.
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var acked jetstream.Msg
		for {
			select {
			case <-c.cc.Closed():
				return
			case <-t.C:
				mu.Lock()
				if last != nil && last != acked {
					_ = last.Ack()
					acked = last
				}
				mu.Unlock()
			}
		}
	}()
	return c, nil
}

// rawResult is what the raw baselines measured for one workload, in
// messages per second.
type rawResult struct {
	Publish, Consume, Pipeline float64
	// Bracket of the pipeline search: highest passing and lowest failing.
	Passed, Failed float64
	Why            string // why the lowest failing rate failed
}

// measureWorkload measures publish alone, consume alone and the pipeline of
// both at once, the latter as the highest rate that keeps up.
func (r *rawJS) measureWorkload(ctx context.Context, b *bench, w workload) (rawResult, error) {
	var res rawResult
	s, err := r.freshStream(ctx)
	if err != nil {
		return res, err
	}
	b.quiet(ctx, "raw publish")
	p := r.newPublisher(w)
	start := time.Now()
	for time.Since(start) < b.cfg.duration {
		if err := p.publish(); err != nil {
			return res, err
		}
	}
	if err := p.finish(time.Minute); err != nil {
		return res, err
	}
	n := p.acked.Load()
	res.Publish = float64(n) / time.Since(start).Seconds()

	start = time.Now()
	c, err := consume(ctx, s)
	if err != nil {
		return res, err
	}
	for c.consumed.Load() < n && time.Since(start) < 2*time.Minute {
		time.Sleep(time.Millisecond)
	}
	res.Consume = float64(c.consumed.Load()) / time.Since(start).Seconds()
	c.cc.Stop()
	b.logger.Info("raw JetStream alone", "workload", w.name, "publish_msgs_s", int(res.Publish), "consume_msgs_s", int(res.Consume))

	search, err := stats.NewSearch(0.5*min(res.Publish, res.Consume), b.cfg.searchFactor, b.cfg.searchPrecision, b.cfg.searchSteps)
	if err != nil {
		return res, err
	}
	for rate, ok := search.Next(); ok; rate, ok = search.Next() {
		passed, why, err := r.pipelineStep(ctx, b, w, rate)
		if err != nil {
			return res, err
		}
		b.logger.Info("raw JetStream pipeline step", "workload", w.name, "msgs_s", int(rate), "kept_up", passed, "why", why)
		if !passed && (res.Failed == 0 || rate < res.Failed) {
			res.Why = why
		}
		search.Record(passed)
		res.Passed, res.Failed = search.Bracket()
	}
	res.Pipeline = search.Best()
	return res, r.js.DeleteStream(ctx, rawStream)
}

// pipelineStep publishes at rate messages/s while a consumer reads them,
// and reports whether the consumer kept up.
func (r *rawJS) pipelineStep(ctx context.Context, b *bench, w workload, rate float64) (bool, string, error) {
	b.quiet(ctx, "raw pipeline step")
	s, err := r.freshStream(ctx)
	if err != nil {
		return false, "", err
	}
	c, err := consume(ctx, s)
	if err != nil {
		return false, "", err
	}
	defer c.cc.Stop()
	p := r.newPublisher(w)
	samples := sampleWhile(ctx, b.cfg.warmup, b.cfg.duration, func() (stats.Sample, error) {
		return stats.Sample{Produced: float64(p.acked.Load()), Consumed: float64(c.consumed.Load())}, nil
	}, func(stop <-chan struct{}) error {
		// Open loop: message k is due at start + k/rate.
		start, k := time.Now(), 0
		for {
			for due := int(time.Since(start).Seconds() * rate); k < due; k++ {
				if err := p.publish(); err != nil {
					return err
				}
			}
			select {
			case <-stop:
				return nil
			case <-time.After(time.Millisecond):
			}
		}
	})
	if err := p.finish(time.Minute); err != nil {
		return false, "", err
	}
	if samples.err != nil {
		return false, "", samples.err
	}
	ok, why := stats.DefaultKeepUp.Check(samples.samples, rate)
	return ok, why, nil
}

// sampled is what sampleWhile collected.
type sampled struct {
	samples []stats.Sample
	err     error
}

// sampleWhile runs load until warmup+window have passed, and samples every
// 250 ms of the window (after the warmup).
func sampleWhile(ctx context.Context, warmup, window time.Duration, sample func() (stats.Sample, error), load func(stop <-chan struct{}) error) sampled {
	stop := make(chan struct{})
	loadErr := make(chan error, 1)
	go func() { loadErr <- load(stop) }()
	var out sampled
	begin := time.Now().Add(warmup)
	end := begin.Add(window)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			out.err = ctx.Err()
			break loop
		case err := <-loadErr:
			out.err = fmt.Errorf("load stopped early: %w", err)
			close(stop)
			return out
		case now := <-t.C:
			if now.Before(begin) {
				continue
			}
			s, err := sample()
			if err != nil {
				out.err = err
				break loop
			}
			s.At = now.Sub(begin)
			out.samples = append(out.samples, s)
			if now.After(end) {
				break loop
			}
		}
	}
	close(stop)
	if err := <-loadErr; err != nil && out.err == nil {
		out.err = err
	}
	return out
}

// baseline runs the raw JetStream phase: the packed messages of Lodestar's
// batches and 256-byte messages.
func (b *bench) baseline(ctx context.Context) error {
	r, err := startRawJS(ctx, b)
	if err != nil {
		return err
	}
	defer r.close()
	sec := b.report.section(phaseBaseline, "Raw JetStream baselines")
	packed := workload{name: "packed", shapes: b.shapes}
	flat := workload{name: "256-byte"}
	for p := range 16 {
		flat.shapes = append(flat.shapes, msgShape{Partition: p, Size: 256, Events: 1})
	}
	for _, w := range []workload{packed, flat} {
		res, err := r.measureWorkload(ctx, b, w)
		if err != nil {
			return fmt.Errorf("%s workload: %w", w.name, err)
		}
		b.raw[w.name] = res
		k := w.eventsPerMsg()
		sec.add(Figure{Name: fmt.Sprintf("async publish, %s messages (mean %.0f B)", w.name, w.meanSize()), Value: ptr(res.Publish), Unit: "msgs/s",
			Note: fmt.Sprintf("one publisher, %d in flight, Nats-Msg-Id on each; %.0f events/s at %.1f events/message", natsx.MaxPendingAcks, res.Publish*k, k)})
		sec.add(Figure{Name: fmt.Sprintf("pull consume, %s messages", w.name), Value: ptr(res.Consume), Unit: "msgs/s",
			Note: fmt.Sprintf("AckAll every %d messages", ackEvery)})
		sec.add(Figure{Name: fmt.Sprintf("publish + consume at once, %s messages", w.name), Value: ptr(res.Pipeline), Unit: "msgs/s",
			Note: fmt.Sprintf("highest open-loop rate with no growing backlog (%.0f events/s); %.0f msgs/s failed: %s", res.Pipeline*k, res.Failed, res.Why)})
	}
	sec.note("Packed messages are the very sizes and partitions that %d-event Segment batches of the simulated product become in EVENTS (measured from the stream at the start of the run): %.1f messages per batch, %.1f events and %.0f bytes per message on average.",
		batchEvents, float64(len(b.shapes))*batchEvents/float64(eventsOf(b.shapes)), packed.eventsPerMsg(), packed.meanSize())
	return nil
}

func eventsOf(shapes []msgShape) int {
	n := 0
	for _, s := range shapes {
		n += s.Events
	}
	return n
}
