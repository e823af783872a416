// Package pipeline runs the scoring core against JetStream: it restores the
// last snapshot, replays the EVENTS stream from the sequence the snapshot
// reflects, follows account changes and scorecard activations, and flushes
// score changes to the hot cache and the SCORES stream.
//
// Flushing has two steps at two paces. Every FlushInterval the accounts due
// are scored and their scores set as current in the cache, what
// event-to-score latency waits for, and their changes go to a publisher
// goroutine, which publishes them on SCORES in order without holding up the
// next flush. Every IndexInterval, on a goroutine of its own, the
// accumulated updates are indexed (rankings, band counts, history: a dozen
// sorted-set updates each, coalesced per account meanwhile) and then a due
// snapshot is saved, once the publisher has passed it on: only after every
// change before it is published.
//
// Exactly-once: the engine's position in the EVENTS stream is part of its
// snapshot, and events are read with an ordered consumer from the position
// after it, so after a crash no event is counted twice or missed. A snapshot
// is saved only after the score changes it implies are stored, so none is
// lost; a change computed again after a crash may be published again, with
// the same Nats-Msg-Id when it is identical.
//
// An event that cannot be decoded is published on the DEADLETTER stream with
// its reason and source (see deadLetters) and the others of its message are
// applied: one bad event never costs the events stored with it. Dead
// letters go out with the score changes of the next flush, before the
// snapshot taken with it, so a crash cannot lose them.
package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/snapshot"
)

// Store is where scores go for reads: the hot cache.
type Store interface {
	// SetScores makes scores current; IndexScores ranks and records them.
	SetScores(ctx context.Context, updates []cache.Update) error
	IndexScores(ctx context.Context, updates []cache.Update) error
}

// pubQueue is how many flushes' changes may wait for the publisher before a
// flush waits for it: backpressure when JetStream is slow or away.
const pubQueue = 64

// durationBuckets are the bounds, in seconds, of the step duration
// histograms (OTel's default buckets are for milliseconds).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Config tunes the pipeline.
type Config struct {
	// Name keys the snapshot and the cache marker: one per partition.
	Name string
	// Partition is the one this pipeline scores, of Partitions (0: the
	// pipeline reads every partition, as unit tests do).
	Partition, Partitions uint32
	// FlushInterval bounds how long a score change waits before it is
	// visible and published.
	FlushInterval time.Duration
	// IndexInterval bounds how long rankings and history lag the current
	// scores.
	IndexInterval time.Duration
	// TickInterval is how often time passes for silent accounts.
	TickInterval time.Duration
	// SnapshotInterval is how often state is snapshotted.
	SnapshotInterval time.Duration
	// Epoch is the owner's epoch of the partition, carried by every SCORES
	// message (EpochHeader); Held, when set, tells whether the partition is
	// still owned: score changes are not published once it is not.
	Epoch uint64
	Held  func() bool
}

// Deps are what the pipeline works with.
type Deps struct {
	JS         jetstream.JetStream
	Engine     *engine.Engine
	Store      Store
	Snapshots  *snapshot.Store
	Scorecards *scorecards.Store
	Logger     *slog.Logger
	Meter      metric.Meter
	// Tracer and Propagator continue the traces ingest started, carried in
	// the event messages' headers.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Pipeline owns the engine: every call into it holds mu.
type Pipeline struct {
	cfg  Config
	deps Deps

	mu      sync.Mutex
	lastSeq uint64 // last EVENTS stream sequence applied
	// dead holds the dead letters of events up to lastSeq not yet handed to
	// the publisher: they go out with the next flush, before its snapshot.
	dead []*nats.Msg

	pending batch // flushed but not yet set and published: retried first

	// pubs carries each flush's score changes to the publisher, in order.
	pubs chan pubJob
	// pubLost is set once changes were dropped unpublished (stopping): from
	// then on no snapshot is saved, so a restart computes them again.
	pubLost atomic.Bool

	ixMu   sync.Mutex
	ix     *batch     // set and published, not yet indexed
	ixSnap *snapState // to save once everything before it is indexed
	// ixSpare is the index goroutine's other batch, swapped with ix.
	ixSpare *batch

	eventsCaughtUp   atomic.Bool
	accountsCaughtUp atomic.Bool
	scorecardsLoaded atomic.Bool
	// current is set by the first flush whose scores reflect everything
	// loaded at start: being caught up is not enough, the scores computed
	// from it must be in the cache before reads are served as current.
	current      atomic.Bool
	setHealthy   atomic.Bool
	pubHealthy   atomic.Bool
	indexHealthy atomic.Bool
	// cacheComplete is false while the cache lacks scores it lost (see
	// checkCache) or, if it can lose them, has not been checked yet.
	cacheComplete atomic.Bool

	// lag is the partition's EVENTS messages not yet delivered, as of the
	// last one delivered.
	lag      atomic.Uint64
	lagGauge metric.Int64ObservableGauge

	eventsApplied metric.Int64Counter
	refills       metric.Int64Counter
	duplicates    metric.Int64Counter
	deadLettered  metric.Int64Counter
	scoresOut     metric.Int64Counter
	flushTime     metric.Float64Histogram
	indexTime     metric.Float64Histogram
}

// pubJob is one flush's score changes, with the snapshot taken with it.
type pubJob struct {
	msgs []*nats.Msg
	snap *snapState
}

// snapState is a snapshot of the engine taken with a flush.
type snapState struct {
	seq   uint64 // last EVENTS sequence it reflects
	state []byte
}

// New returns a pipeline; Run starts it.
func New(cfg Config, deps Deps) *Pipeline {
	p := &Pipeline{cfg: cfg, deps: deps, ix: new(batch), ixSpare: new(batch), pubs: make(chan pubJob, pubQueue)}
	p.setHealthy.Store(true)
	p.pubHealthy.Store(true)
	p.indexHealthy.Store(true)
	// A cache that cannot lose its scores (in-process) is complete from the
	// start; one that can is once checked.
	_, canLose := deps.Store.(marked)
	p.cacheComplete.Store(!canLose)
	m := deps.Meter
	p.eventsApplied, _ = m.Int64Counter("lodestar.scoring.events", metric.WithDescription("Events applied to the scoring core."))
	p.deadLettered, _ = m.Int64Counter("lodestar.scoring.events.deadlettered", metric.WithUnit("{message}"),
		metric.WithDescription("Events (or whole EVENTS messages) that could not be decoded, published on DEADLETTER instead of applied."))
	p.duplicates, _ = m.Int64Counter("lodestar.scoring.events.duplicates",
		metric.WithDescription("Events ignored because their message id was seen within the dedupe window (retries)."))
	p.refills, _ = m.Int64Counter("lodestar.scoring.cache.refills",
		metric.WithDescription("Times the cache was found without its scores (Redis restarted or flushed) and written again."))
	p.lagGauge, _ = m.Int64ObservableGauge("lodestar.scoring.partition.lag", metric.WithUnit("{message}"),
		metric.WithDescription("EVENTS messages of a partition this replica owns not yet read, as of the last one read."))
	p.scoresOut, _ = m.Int64Counter("lodestar.scoring.scores", metric.WithDescription("Current scores written to the cache (changes also go to the SCORES stream)."))
	p.flushTime, _ = m.Float64Histogram("lodestar.scoring.flush.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...),
		metric.WithDescription("Time to set one flush of scores in the cache."))
	p.indexTime, _ = m.Float64Histogram("lodestar.scoring.index.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...),
		metric.WithDescription("Time to index one batch of scores (rankings and history) and save a due snapshot."))
	return p
}

// Ready reports whether scores are current: the stored scorecards and
// account facts are loaded, the EVENTS backlog present at start is replayed,
// the scores it implies are set in the cache, and the cache takes writes
// and holds every score (see checkCache).
func (p *Pipeline) Ready() bool {
	return p.current.Load() && p.setHealthy.Load() && p.pubHealthy.Load() && p.indexHealthy.Load() && p.cacheComplete.Load()
}

// Lag is the partition's EVENTS messages not yet read, as of the last one
// read (the lodestar.scoring.partition.lag gauge); unknown (ok false) until
// a first message is read or the partition is found caught up.
func (p *Pipeline) Lag() (n uint64, ok bool) {
	n = p.lag.Load()
	return n, n > 0 || p.eventsCaughtUp.Load()
}

// loaded reports whether everything present at start has been applied to
// the engine.
func (p *Pipeline) loaded() bool {
	return p.scorecardsLoaded.Load() && p.accountsCaughtUp.Load() && p.eventsCaughtUp.Load()
}

// Run works until ctx is done; then it stops consuming, flushes, indexes
// and saves a last snapshot.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.restore(ctx); err != nil {
		return err
	}
	if p.cfg.Partitions > 0 {
		part := metric.WithAttributes(attribute.Int("partition", int(p.cfg.Partition)))
		reg, err := p.deps.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(p.lagGauge, int64(p.lag.Load()), part)
			return nil
		}, p.lagGauge)
		if err == nil {
			defer func() { _ = reg.Unregister() }()
		}
	}
	errc := make(chan error, 1)
	go func() {
		err := p.deps.Scorecards.Watch(ctx, p.setScorecard, func() { p.scorecardsLoaded.Store(true) })
		if err != nil {
			errc <- err
		}
	}()
	accounts, err := p.consumeAccounts(ctx)
	if err != nil {
		return err
	}
	defer accounts.Stop()
	events, err := p.consumeEvents(ctx)
	if err != nil {
		return err
	}
	eventsStopped := false
	stopEvents := func() {
		if !eventsStopped {
			events.Drain()
			<-events.Closed()
			eventsStopped = true
		}
	}
	defer stopEvents()
	ixStop, ixDone := make(chan struct{}), make(chan error, 1)
	go func() { ixDone <- p.indexLoop(ctx, ixStop) }()
	// The publisher outlives ctx to publish the last flush; stopping waits
	// for it a bounded time.
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pcancel()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		p.publishLoop(pctx, ctx)
	}()
	stop := sync.OnceValue(func() error {
		close(p.pubs)
		select {
		case <-pubDone:
		case <-time.After(30 * time.Second):
			pcancel()
			<-pubDone
		}
		close(ixStop)
		return <-ixDone
	})
	defer stop()

	flush := time.NewTicker(p.cfg.FlushInterval)
	defer flush.Stop()
	tick := time.NewTicker(p.cfg.TickInterval)
	defer tick.Stop()
	check := time.NewTicker(CacheCheckInterval)
	defer check.Stop()
	if err := p.checkCache(ctx); err != nil {
		p.deps.Logger.Warn("check the cache", "err", err)
	}
	lastSnapshot := time.Now()
	for {
		select {
		case <-ctx.Done():
			stopEvents()
			// A last flush and snapshot, so a restart replays nothing.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			return errors.Join(p.flush(fctx, true), stop())
		case err := <-errc:
			return err
		case <-check.C:
			if err := p.checkCache(ctx); err != nil && ctx.Err() == nil {
				p.deps.Logger.Warn("check the cache", "err", err)
			}
		case <-tick.C:
			p.mu.Lock()
			p.deps.Engine.Tick(time.Now())
			p.mu.Unlock()
		case <-flush.C:
			snap := time.Since(lastSnapshot) >= p.cfg.SnapshotInterval
			if err := p.flush(ctx, snap); errors.Is(err, cache.ErrFenced) {
				return err // a later owner has the partition
			} else if err != nil {
				if ctx.Err() == nil { // else the last flush redoes it
					p.deps.Logger.Warn("flush scores", "err", err)
				}
				continue
			}
			if snap {
				lastSnapshot = time.Now()
			}
		}
	}
}

func (p *Pipeline) restore(ctx context.Context) error {
	seq, state, err := p.deps.Snapshots.Load(ctx, p.cfg.Name)
	if errors.Is(err, snapshot.ErrNone) {
		p.deps.Logger.Info("no snapshot: replaying EVENTS from the start")
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.deps.Engine.Restore(bytes.NewReader(state)); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	p.lastSeq = seq
	p.deps.Logger.Info("restored snapshot", "events_seq", seq, "bytes", len(state))
	// A fenced cache refuses the previous owner's writes from now on, for
	// every tenant it held (the others' first writes fence them).
	if c, ok := p.deps.Store.(claimer); ok {
		if err := c.Claim(ctx, p.deps.Engine.Tenants()); err != nil {
			return fmt.Errorf("claim the partition's tenants in the cache: %w", err)
		}
	}
	return nil
}

// claimer is a fenced cache (cache.Redis.Fenced).
type claimer interface {
	Claim(ctx context.Context, tenants []string) error
}

func (p *Pipeline) setScorecard(tenant string, sc *scoringv1.Scorecard) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.deps.Engine.SetScorecard(tenant, sc); err != nil {
		// Stored scorecards were validated before they were stored.
		p.deps.Logger.Error("apply scorecard", "tenant", tenant, "version", sc.GetVersion(), "err", err)
	}
}

func (p *Pipeline) consumeAccounts(ctx context.Context) (jetstream.ConsumeContext, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	if p.cfg.Partitions > 0 {
		cfg.FilterSubjects = []string{natsx.PartitionFilter(natsx.AccountsSubjectPrefix, p.cfg.Partition)}
	}
	cons, err := p.deps.JS.OrderedConsumer(ctx, natsx.StreamAccountChanges, cfg)
	if err != nil {
		return nil, fmt.Errorf("account changes consumer: %w", err)
	}
	cc, err := natsx.ConsumeCaughtUp(ctx, cons, &p.accountsCaughtUp, func(msg jetstream.Msg, _ *jetstream.MsgMetadata) {
		var ch accountv1.AccountChange
		if err := proto.Unmarshal(msg.Data(), &ch); err != nil {
			p.deps.Logger.Error("skip undecodable account change", "subject", msg.Subject(), "err", err)
		} else if acc := ch.GetAccount(); acc != nil {
			acc.TenantId = ch.GetTenantId()
			p.mu.Lock()
			p.deps.Engine.SetAccount(acc)
			p.mu.Unlock()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consume account changes: %w", err)
	}
	return cc, nil
}

func (p *Pipeline) consumeEvents(ctx context.Context) (jetstream.ConsumeContext, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if p.lastSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, p.lastSeq+1
	}
	if p.cfg.Partitions > 0 {
		cfg.FilterSubjects = []string{natsx.PartitionFilter(natsx.EventsSubjectPrefix, p.cfg.Partition)}
	}
	cons, err := p.deps.JS.OrderedConsumer(ctx, natsx.StreamEvents, cfg)
	if err != nil {
		return nil, fmt.Errorf("events consumer: %w", err)
	}
	var dec decoder // only this callback's goroutine uses it
	cc, err := natsx.ConsumeCaughtUp(ctx, cons, &p.eventsCaughtUp, func(msg jetstream.Msg, meta *jetstream.MsgMetadata) {
		if meta == nil {
			p.deps.Logger.Error("event message without metadata", "subject", msg.Subject())
			return
		}
		p.lag.Store(meta.NumPending)
		if wm := msg.Headers().Get(natsx.WatermarkHeader); wm != "" {
			p.advance(msg.Subject(), wm, meta.Sequence.Stream)
			return
		}
		events, bad, err := dec.decode(msg.Data())
		var dead []*nats.Msg
		if err != nil || len(bad) > 0 {
			// Whatever cannot be decoded goes to DEADLETTER with why; the
			// rest of the message is applied.
			dead = deadLetters(msg.Subject(), meta.Sequence.Stream, msg.Data(), err, bad)
			p.deps.Logger.Error("dead-letter undecodable events", "seq", meta.Sequence.Stream, "events", len(dead), "err", errors.Join(err, firstErr(bad)))
			p.deadLettered.Add(context.Background(), int64(len(dead)))
		}
		_, span := p.deps.Tracer.Start(natsx.ExtractTrace(ctx, p.deps.Propagator, msg.Headers()), "scoring.apply",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.Int64("lodestar.events.seq", int64(meta.Sequence.Stream)),
				attribute.Int("lodestar.events.count", len(events))))
		now := time.Now()
		p.mu.Lock()
		dups := p.deps.Engine.Stats().Duplicates
		for _, ev := range events {
			p.deps.Engine.Apply(ev, now)
		}
		dups = p.deps.Engine.Stats().Duplicates - dups
		p.lastSeq = meta.Sequence.Stream
		p.dead = append(p.dead, dead...)
		p.mu.Unlock()
		span.End()
		p.eventsApplied.Add(context.Background(), int64(len(events)))
		if dups > 0 {
			p.duplicates.Add(context.Background(), int64(dups))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consume events: %w", err)
	}
	return cc, nil
}

// advance applies a watermark marker (natsx.WatermarkHeader) of the tenant
// of subject, lodestar.events.<tenant>.<partition>.
func (p *Pipeline) advance(subject, wm string, seq uint64) {
	sec, err := strconv.ParseInt(wm, 10, 64)
	tokens := strings.Split(subject, ".")
	if err != nil || len(tokens) != 4 {
		p.deps.Logger.Error("skip a malformed watermark marker", "subject", subject, "watermark", wm, "seq", seq)
		sec = 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sec > 0 {
		p.deps.Engine.Advance(tokens[2], time.Unix(sec, 0), time.Now())
	}
	p.lastSeq = seq
}

// flush scores the accounts due and sets their scores, then hands their
// changes to the publisher and the updates to the index step; with snap
// set, a snapshot taken with them goes along, which the publisher passes
// on to the index step once the changes before it are published.
func (p *Pipeline) flush(ctx context.Context, snap bool) error {
	var state bytes.Buffer
	// Read before flushing the engine: the flags are set after what they
	// report was applied, so this flush's scores include it.
	loaded := p.loaded()
	p.mu.Lock()
	for _, sc := range p.deps.Engine.Flush() {
		p.pending.add(cache.Update{Score: sc.Score, Record: sc.Change})
	}
	seq := p.lastSeq
	var snapErr error
	if snap {
		snapErr = p.deps.Engine.Snapshot(&state)
	}
	p.mu.Unlock()

	var job pubJob
	if n := len(p.pending.updates); n > 0 {
		start := time.Now()
		if err := p.deps.Store.SetScores(ctx, p.pending.updates); err != nil {
			// The cache may come back empty: complete again once checked.
			p.setHealthy.Store(false)
			p.cacheComplete.Store(false)
			return fmt.Errorf("cache scores: %w", err)
		}
		p.flushTime.Record(ctx, time.Since(start).Seconds())
		p.scoresOut.Add(ctx, int64(n))
		var err error
		if job.msgs, err = changeMessages(p.pending.updates, p.cfg.Epoch, p.cfg.Partitions); err != nil {
			return err
		}
	}
	// Dead letters up to seq are taken after it was read, so this job
	// carries all of them that its snapshot reflects.
	p.mu.Lock()
	job.msgs = append(p.dead, job.msgs...)
	p.dead = nil
	p.mu.Unlock()
	p.setHealthy.Store(true)
	if loaded {
		p.current.Store(true)
	}
	p.ixMu.Lock()
	p.ix.add(p.pending.updates...)
	p.ixMu.Unlock()
	p.pending.reset()
	if snap && snapErr == nil {
		job.snap = &snapState{seq: seq, state: state.Bytes()}
	}
	if len(job.msgs) > 0 || job.snap != nil {
		select {
		case p.pubs <- job:
		case <-ctx.Done():
			p.pubLost.Store(true)
			return fmt.Errorf("hand score changes to the publisher: %w", ctx.Err())
		}
	}
	if snapErr != nil {
		return fmt.Errorf("snapshot: %w", snapErr)
	}
	return nil
}

// publishLoop publishes each flush's changes in order, retrying a failed
// flush's changes (same Nats-Msg-Ids) until they are stored or ctx ends,
// then passes the snapshot taken with them to the index step. While the
// lease is not known to be held (a renewal late) it waits; once run, the
// pipeline's context, is done too the partition is lost, and its new owner
// computes the changes again.
func (p *Pipeline) publishLoop(ctx, run context.Context) {
	for job := range p.pubs {
		for p.cfg.Held != nil && !p.cfg.Held() && run.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if p.cfg.Held != nil && !p.cfg.Held() {
			p.pubLost.Store(true)
			continue
		}
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			err := natsx.PublishAll(ctx, p.deps.JS, job.msgs)
			if err == nil {
				p.pubHealthy.Store(true)
				break
			}
			p.pubHealthy.Store(false)
			if ctx.Err() != nil {
				p.pubLost.Store(true)
				break
			}
			p.deps.Logger.Warn("publish score changes; retrying", "in", wait, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if job.snap != nil && !p.pubLost.Load() {
			p.ixMu.Lock()
			p.ixSnap = job.snap
			p.ixMu.Unlock()
		}
	}
}

// indexLoop runs the index step every IndexInterval until stop is closed,
// then a last time.
func (p *Pipeline) indexLoop(ctx context.Context, stop <-chan struct{}) error {
	t := time.NewTicker(p.cfg.IndexInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			return p.index(fctx)
		case <-t.C:
			// Stopping cancels ctx mid-step; the last step redoes it.
			if err := p.index(ctx); err != nil && ctx.Err() == nil {
				p.deps.Logger.Warn("index scores", "err", err)
			}
		}
	}
}

// index indexes the updates handed over since the last time, then saves
// the snapshot handed over with them, if any. What fails is handed back, in
// front of what came meanwhile, for the next time.
func (p *Pipeline) index(ctx context.Context) error {
	p.ixMu.Lock()
	work, snap := p.ix, p.ixSnap
	p.ix, p.ixSnap, p.ixSpare = p.ixSpare, nil, nil
	p.ixMu.Unlock()

	start := time.Now()
	if len(work.updates) > 0 {
		if err := p.deps.Store.IndexScores(ctx, work.updates); err != nil {
			p.indexHealthy.Store(false)
			p.requeue(work, snap)
			return err
		}
	}
	work.reset()
	p.ixSpare = work
	p.indexHealthy.Store(true)
	if snap != nil {
		if err := p.deps.Snapshots.Save(ctx, p.cfg.Name, snap.seq, snap.state); err != nil {
			p.requeue(nil, snap)
			return err
		}
	}
	p.indexTime.Record(ctx, time.Since(start).Seconds())
	return nil
}

// requeue hands back updates and a snapshot that were not stored: the
// updates go before those handed over meanwhile, and a newer snapshot, if
// one came, replaces the older.
func (p *Pipeline) requeue(work *batch, snap *snapState) {
	p.ixMu.Lock()
	defer p.ixMu.Unlock()
	if work != nil {
		newer := p.ix
		work.add(newer.updates...)
		newer.reset()
		p.ix, p.ixSpare = work, newer
	}
	if p.ixSnap == nil {
		p.ixSnap = snap
	}
}

// firstErr returns the error of the first bad event, if any.
func firstErr(bad []badEvent) error {
	if len(bad) == 0 {
		return nil
	}
	return bad[0].err
}

// changeMessages returns the SCORES messages of the updates that record a
// change, in score time order (each account's in its order). The batch's
// order is not: an account's change takes the place of the account's
// earlier unrecorded update (batch.add), so a flush covering many days (a
// replay, a catch-up) had a change of its last day among its first day's,
// and a consumer reading time from the stream saw it run days ahead of
// changes still to come.
func changeMessages(updates []cache.Update, epoch uint64, partitions uint32) ([]*nats.Msg, error) {
	var changes []*scoringv1.HealthScore
	for _, u := range updates {
		if u.Record {
			changes = append(changes, u.Score)
		}
	}
	slices.SortStableFunc(changes, func(a, b *scoringv1.HealthScore) int {
		return a.GetScoreTime().AsTime().Compare(b.GetScoreTime().AsTime())
	})
	msgs := make([]*nats.Msg, 0, len(changes))
	for _, hs := range changes {
		b, err := proto.Marshal(&scoringv1.ScoreChangeEvent{Score: hs})
		if err != nil {
			return nil, fmt.Errorf("encode score change: %w", err)
		}
		m := nats.NewMsg(natsx.ScoreSubject(hs.GetTenantId(), hs.GetAccountId(), partitions))
		m.Data = b
		// Not in the message id: a new owner's identical recomputation of
		// a change is then stored once.
		m.Header.Set(natsx.EpochHeader, strconv.FormatUint(epoch, 10))
		m.Header.Set(nats.MsgIdHdr, natsx.MsgID(hs.GetTenantId(), hs.GetAccountId(),
			strconv.FormatInt(hs.GetScoreTime().AsTime().UnixNano(), 10),
			strconv.Itoa(int(hs.GetScorecardVersion())),
			strconv.FormatFloat(hs.GetScore(), 'g', -1, 64)))
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// ErrLoading is Activity's answer before everything present at start is
// applied to the engine.
var ErrLoading = errors.New("partition still loading")

// Activity returns an account's activity from the engine (see
// engine.Engine.Activity); false when the engine does not know the account.
func (p *Pipeline) Activity(tenant, account string, days int) (*scoringv1.GetAccountActivityResponse, bool, error) {
	if !p.loaded() {
		return nil, false, ErrLoading
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	resp, ok := p.deps.Engine.Activity(tenant, account, days)
	return resp, ok, nil
}
