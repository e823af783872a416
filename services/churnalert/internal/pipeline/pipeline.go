// Package pipeline feeds the alert state machine: it consumes score changes
// and account changes, lets time pass for due escalations and snoozes,
// rescans every account for date-driven conditions, and applies people's
// actions, each as one compare-and-set update of the account's state.
//
// Ordered consumers and a stored position, not durable consumers: rules
// must see an account's changes in order. A durable consumer redelivers what
// a crashed worker held only after its ack wait, while newer changes of the
// same account flow on; the older change would then be skipped, and a brief
// red dip between two healthy scores lost. Here changes are read in stream
// order and spread over workers by account, a failed update is retried in
// place, and the position up to which every change is applied is stored in
// ALERT_STATE. A restart resumes after it; changes applied past it are
// recognised by the stream sequence each account's state records and
// skipped, after their outbox is published.
//
// A worker takes the changes waiting in its queue together (up to
// maxBatch): each account's state is written once for all of them, and the
// writes and outboxes of all accounts are in flight at once
// (alertstate.UpdateMany); a change that fails is retried alone, in order.
//
// Replicas divide the partitions (-nats.partitions) among themselves
// (pkg/ownership) and run a pipeline per partition they own, each reading
// its partition's subjects of both streams. A score change whose
// Lodestar-Epoch is below the one of the account's last applied change
// comes from a scoring replica that lost the partition, and one older than
// the account's last score from a new owner recomputing its predecessor's
// changes: neither is applied (lifecycle.Superseded). Judged per account,
// not per partition: a stale owner's late copy of a change may be the only
// one stored, its new owner's identical copy dropped as a duplicate.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/alertstate"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/lifecycle"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/settings"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/view"
)

// retryMax caps the wait between tries of an update that fails.
const retryMax = 5 * time.Second

// Config tunes the pipeline.
type Config struct {
	// Workers apply messages in parallel, each owning a share of accounts.
	Workers int
	// Partition and Partitions: this instance applies the changes of the
	// accounts of partition Partition of Partitions; of every account when
	// Partitions is 0 (a pipeline that only serves API calls).
	Partition, Partitions uint32
	// CheckpointInterval is how often the position is stored.
	CheckpointInterval time.Duration
	// SweepInterval is how often due escalations and snoozes are looked for.
	SweepInterval time.Duration
	// RescanInterval is how often every account is read again for
	// conditions that depend on the date.
	RescanInterval time.Duration
	// Freshness: transitions whose tenant clock lies further behind the wall
	// clock, and changes published longer ago, are recorded as historical and
	// delivered to nobody (a backfill, a replay, a long outage).
	Freshness time.Duration
	// LiveLag: a tenant whose watermark comes this close to the wall clock is
	// live, and runs on the wall clock from then on (see clocks).
	LiveLag time.Duration
	// AccountURL is the link to an account, with {tenant} and {account}.
	AccountURL string
	// AlertsMaxAge is the ALERTS stream's retention: resolved alerts older
	// than it leave the view.
	AlertsMaxAge time.Duration
}

// Deps are what the pipeline works with.
type Deps struct {
	JS       jetstream.JetStream
	State    *alertstate.Store
	Settings *settings.Store
	View     *view.View
	// Budget is the process's page budget, shared by its pipelines.
	Budget     *Budget
	Now        func() time.Time
	Logger     *slog.Logger
	Meter      metric.Meter
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Pipeline runs the consumers and sweeps.
type Pipeline struct {
	cfg     Config
	deps    Deps
	running atomic.Bool
	saved   map[string]uint64 // positions stored, by consumer; Run's own
	clocks  *clocks           // set by Run before any change is applied

	applied  metric.Int64Counter
	failed   metric.Int64Counter
	fenced   metric.Int64Counter
	duration metric.Float64Histogram
	lag      metric.Int64ObservableGauge
}

// New returns a pipeline; Run starts it.
func New(cfg Config, deps Deps) *Pipeline {
	p := &Pipeline{cfg: cfg, deps: deps, saved: map[string]uint64{}}
	p.applied, _ = deps.Meter.Int64Counter("lodestar.alert.messages", metric.WithDescription("Score and account changes applied to alert state."))
	p.fenced, _ = deps.Meter.Int64Counter("lodestar.alert.fenced_changes", metric.WithDescription("Score changes not applied because the account's state holds a later one or one of a later partition owner (a stale scoring replica, or a new owner's recomputation)."))
	p.failed, _ = deps.Meter.Int64Counter("lodestar.alert.message_failures", metric.WithDescription("Score and account changes whose application failed and is retried."))
	p.lag, _ = deps.Meter.Int64ObservableGauge("lodestar.alert.partition.lag", metric.WithUnit("{message}"),
		metric.WithDescription("Changes of a partition this replica owns not yet applied, per stream: not yet read as of the last one read, plus read and not yet applied."))
	p.duration, _ = deps.Meter.Float64Histogram("lodestar.alert.message.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to apply one change: state read, rules, state write, events published."))
	return p
}

// Ready reports whether the consumers run.
func (p *Pipeline) Ready() bool { return p.running.Load() }

// env is the environment of a transition of an account now; at is the time
// of the score change applied, zero for anything else.
func (p *Pipeline) env(tenant, account string, at time.Time, page bool, headers map[string]string) lifecycle.Env {
	s := p.deps.Settings
	wall := p.deps.Now()
	now, live, since := wall, true, time.Time{}
	if p.clocks != nil {
		now, live, since = p.clocks.now(tenant, wall, at)
	}
	return lifecycle.Env{
		Rules:     s.Rules(tenant),
		Channels:  s.Channels(tenant),
		OnCall:    func(id string, t time.Time) *alertv1.Person { return s.OnCall(tenant, id, t) },
		Now:       now,
		Live:      live,
		LiveSince: since,
		Wall:      wall,
		Freshness: p.cfg.Freshness,
		Page:      page,
		Budget:    func(a *alertv1.Alert, now time.Time) (bool, string) { return p.deps.Budget.decide(tenant, a, now) },
		Link:      Link(p.cfg.AccountURL, tenant, account),
		Headers:   headers,
	}
}

// Link fills an account-URL template: {tenant} and {account} are replaced,
// path-escaped. An empty template links nowhere.
func Link(template, tenant, account string) string {
	if template == "" {
		return ""
	}
	return strings.ReplaceAll(strings.ReplaceAll(template, "{tenant}", url.PathEscape(tenant)), "{account}", url.PathEscape(account))
}

// Update applies fn to an account's state in a fresh environment (rebuilt on
// every compare-and-set retry) and publishes what it implies. It returns the
// ALERTS sequence of its last event, 0 when none.
func (p *Pipeline) Update(ctx context.Context, tenant, account string, page bool, headers map[string]string,
	fn func(*alertv1.AccountAlertState, lifecycle.Env) (bool, error)) (uint64, error) {
	return p.deps.State.Update(ctx, tenant, account, func(st *alertv1.AccountAlertState) (bool, error) {
		return fn(st, p.env(tenant, account, time.Time{}, page, headers))
	})
}

// job is one change for a worker.
type job struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	pos  *tracker
}

// tracker follows which changes of a stream are applied, in the order they
// were dispatched, to know the position up to which all are.
//
// A score change's time moves its tenant's clock only once the position
// passes it (passed): never while an earlier change of the stream waits in
// a worker's queue, so a sweep or rescan never judges an account at a time
// its own changes have not reached. Moved as each worker applied its own,
// the clock ran ahead of the slowest worker's accounts, and when their date
// conditions were read depended on the workers' pace.
type tracker struct {
	name    string
	stream  string
	passed  func(tenant string, at time.Time) // nil: no clock to move
	mu      sync.Mutex
	pos     uint64
	open    []uint64 // dispatched, not yet passed by pos
	done    map[uint64]bool
	times   map[uint64]stamp // score times of open changes
	pending uint64           // not yet delivered, as of the last one delivered
}

// stamp is a score change's tenant and time.
type stamp struct {
	tenant string
	at     time.Time
}

func (t *tracker) dispatched(seq, pending uint64) {
	t.mu.Lock()
	t.open = append(t.open, seq)
	t.pending = pending
	t.mu.Unlock()
}

// lag is how many changes are not yet applied: not yet read, and read but
// not yet passed by the position.
func (t *tracker) lag() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int64(t.pending) + int64(len(t.open))
}

// stamped records an open change's tenant and score time, for passed.
func (t *tracker) stamped(seq uint64, tenant string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.times == nil {
		t.times = map[uint64]stamp{}
	}
	t.times[seq] = stamp{tenant, at}
}

func (t *tracker) finished(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done[seq] = true
	for len(t.open) > 0 && t.done[t.open[0]] {
		t.pos = t.open[0]
		delete(t.done, t.pos)
		if st, ok := t.times[t.pos]; ok {
			delete(t.times, t.pos)
			if t.passed != nil {
				t.passed(st.tenant, st.at)
			}
		}
		t.open = t.open[1:]
	}
}

func (t *tracker) position() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// worker places an account in a worker.
func (p *Pipeline) worker(tenant, account string) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(account))
	return int(h.Sum32() % uint32(p.cfg.Workers))
}

// scope names the partition in the names of what the pipeline stores.
func (p *Pipeline) scope() string { return streams.Scope(p.cfg.Partition, p.cfg.Partitions) }

func (p *Pipeline) mine(tenant, account string) bool {
	return p.cfg.Partitions == 0 || natsx.Partition(tenant, account, p.cfg.Partitions) == p.cfg.Partition
}

// Run consumes and sweeps until ctx is done; then it stops reading, lets the
// workers end, and stores the position.
func (p *Pipeline) Run(ctx context.Context) error {
	stored, err := p.deps.State.Clocks(ctx, p.scope())
	if err != nil {
		return err
	}
	p.clocks = newClocks(p.cfg.LiveLag, p.scope(), stored)
	// Once ctx ends, workers and the consume callbacks stop taking changes;
	// what is left in the queues lies after the stored position, so the next
	// run applies it.
	queues := make([]chan job, p.cfg.Workers)
	var workers sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan job, maxBatch-1)
		workers.Go(func() { p.work(ctx, queues[i]) })
	}
	var trackers []*tracker
	var consumers []jetstream.ConsumeContext
	stop := func() {
		for _, cc := range consumers {
			cc.Stop()
		}
		workers.Wait()
		p.checkpoint(context.WithoutCancel(ctx), trackers)
	}
	for _, c := range []struct{ stream, filter string }{
		{natsx.StreamAccountChanges, natsx.PartitionFilter(natsx.AccountsSubjectPrefix, p.cfg.Partition)},
		{natsx.StreamScores, natsx.PartitionFilter(natsx.ScoresSubjectPrefix, p.cfg.Partition)},
	} {
		t := &tracker{name: c.stream + "." + p.scope(), stream: c.stream, done: map[uint64]bool{},
			passed: func(tenant string, at time.Time) { p.clocks.observe(tenant, at, p.deps.Now()) }}
		cc, err := p.consume(ctx, c.stream, c.filter, t, queues)
		if err != nil {
			stop()
			return err
		}
		trackers, consumers = append(trackers, t), append(consumers, cc)
	}
	if p.cfg.Partitions > 0 {
		reg, err := p.deps.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			for _, t := range trackers {
				o.ObserveInt64(p.lag, t.lag(), metric.WithAttributes(
					attribute.Int("partition", int(p.cfg.Partition)), attribute.String("stream", t.stream)))
			}
			return nil
		}, p.lag)
		if err == nil {
			defer func() { _ = reg.Unregister() }()
		}
	}
	p.running.Store(true)
	defer p.running.Store(false)

	checkpoint := time.NewTicker(p.cfg.CheckpointInterval)
	defer checkpoint.Stop()
	sweep := time.NewTicker(p.cfg.SweepInterval)
	defer sweep.Stop()
	rescan := time.NewTimer(0) // once at start: publish outboxes a crash left behind
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-checkpoint.C:
			p.checkpoint(ctx, trackers)
		case <-sweep.C:
			p.sweep(ctx)
		case <-rescan.C:
			p.rescan(ctx)
			rescan.Reset(p.cfg.RescanInterval)
		}
	}
}

// consume reads a stream in order from after its stored position.
func (p *Pipeline) consume(ctx context.Context, stream, filter string, t *tracker, queues []chan job) (jetstream.ConsumeContext, error) {
	pos, err := p.deps.State.Position(ctx, t.name)
	if err != nil {
		return nil, err
	}
	t.pos = pos
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if pos > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, pos+1
	}
	cons, err := p.deps.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s consumer: %w", stream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			p.deps.Logger.Error("change without metadata", "stream", stream, "err", err)
			return
		}
		t.dispatched(meta.Sequence.Stream, meta.NumPending)
		tenant, account, err := natsx.ParseAccountSubject(msg.Subject())
		if err != nil || !p.mine(tenant, account) {
			t.finished(meta.Sequence.Stream)
			return
		}
		select {
		case queues[p.worker(tenant, account)] <- job{msg: msg, meta: meta, pos: t}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", stream, err)
	}
	return cc, nil
}

// checkpoint stores the tenants' clocks and the positions that moved. The
// clocks go first: a position is never stored ahead of the clocks its
// changes moved.
func (p *Pipeline) checkpoint(ctx context.Context, ts []*tracker) {
	if err := p.clocks.save(ctx, p.deps.State); err != nil {
		p.deps.Logger.Warn("store clocks", "err", err)
		return
	}
	for _, t := range ts {
		pos := t.position()
		if pos == 0 || pos == p.saved[t.name] {
			continue
		}
		if err := p.deps.State.SetPosition(ctx, t.name, pos); err != nil {
			p.deps.Logger.Warn("store position", "consumer", t.name, "err", err)
			continue
		}
		p.saved[t.name] = pos
	}
}

// maxBatch bounds the changes a worker applies together.
const maxBatch = 64

// work runs a worker: it takes the changes waiting in its queue, up to
// maxBatch, and applies them together (each account's in order), until ctx
// ends.
func (p *Pipeline) work(ctx context.Context, queue <-chan job) {
	batch := make([]job, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-queue:
			batch = append(batch[:0], j)
		more:
			for len(batch) < maxBatch {
				select {
				case j := <-queue:
					batch = append(batch, j)
				default:
					break more
				}
			}
			p.handle(ctx, batch)
		}
	}
}

// change is a decoded change being applied.
type change struct {
	job
	ctx             context.Context
	span            trace.Span
	start           time.Time
	tenant, account string
	apply           func(*alertv1.AccountAlertState) (bool, error)
	page            bool
	headers         map[string]string
}

// handle applies a batch of changes with one alertstate.UpdateMany, then
// retries each one that failed in place, in order, until it is applied or
// ctx ends: skipping ahead would apply the account's next change first.
func (p *Pipeline) handle(ctx context.Context, batch []job) {
	cs := make([]*change, 0, len(batch))
	updates := make([]alertstate.Change, 0, len(batch))
	for _, j := range batch {
		c := p.decode(ctx, j)
		if c == nil {
			continue
		}
		defer c.span.End()
		cs = append(cs, c)
		updates = append(updates, alertstate.Change{Tenant: c.tenant, Account: c.account, Fn: c.apply})
	}
	if len(cs) == 0 {
		return
	}
	errs := p.deps.State.UpdateMany(ctx, updates)
	for i, c := range cs {
		attrs := metric.WithAttributes(attribute.String("stream", c.meta.Stream))
		for wait := 100 * time.Millisecond; errs[i] != nil; wait = min(2*wait, retryMax) {
			p.failed.Add(c.ctx, 1, attrs)
			c.span.RecordError(errs[i])
			p.deps.Logger.Warn("apply change; retrying", "stream", c.meta.Stream, "seq", c.meta.Sequence.Stream, "tenant", c.tenant, "retry_in", wait, "err", errs[i])
			select {
			case <-ctx.Done():
				return // not finished: the next run applies it and what follows
			case <-time.After(wait):
			}
			_, errs[i] = p.deps.State.Update(c.ctx, c.tenant, c.account, c.apply)
		}
		c.pos.finished(c.meta.Sequence.Stream)
		p.applied.Add(c.ctx, 1, attrs)
		p.duration.Record(c.ctx, time.Since(c.start).Seconds(), attrs)
	}
}

// decode prepares a change, nil for one that cannot be applied (and is
// passed).
func (p *Pipeline) decode(ctx context.Context, j job) *change {
	start := time.Now()
	stream, seq := j.meta.Stream, j.meta.Sequence.Stream
	tenant, account, at, fn, err := decode(stream, j.msg.Subject(), j.msg.Data(), seq, j.msg.Headers().Get(natsx.EpochHeader),
		func() { p.fenced.Add(ctx, 1) })
	if err != nil {
		p.deps.Logger.Error("skip undecodable change", "stream", stream, "seq", seq, "err", err)
		j.pos.finished(seq)
		return nil
	}
	if !at.IsZero() {
		j.pos.stamped(seq, tenant, at)
	}
	ctx = natsx.ExtractTrace(ctx, p.deps.Propagator, j.msg.Headers())
	ctx, span := p.deps.Tracer.Start(ctx, "churn-alert apply "+stream, trace.WithSpanKind(trace.SpanKindConsumer))
	headers := propagation.MapCarrier{}
	if p.deps.Propagator != nil {
		p.deps.Propagator.Inject(ctx, headers)
	}
	c := &change{
		job: j, ctx: ctx, span: span, start: start, tenant: tenant, account: account,
		page: p.deps.Now().Sub(j.meta.Timestamp) <= p.cfg.Freshness, headers: headers,
	}
	// In a fresh environment on every compare-and-set retry.
	c.apply = func(st *alertv1.AccountAlertState) (bool, error) {
		return fn(st, p.env(tenant, account, at, c.page, headers))
	}
	return c
}

type applyFn = func(*alertv1.AccountAlertState, lifecycle.Env) (bool, error)

// decode reads a change into the update that applies it; at is a score
// change's event time, zero for an account change. A score change carries
// its publisher's epoch (natsx.EpochHeader); superseded is called when the
// account's state tells it is not to be applied (lifecycle.Superseded).
func decode(stream, subject string, data []byte, seq uint64, epoch string, superseded func()) (tenant, account string, at time.Time, fn applyFn, err error) {
	if tenant, account, err = natsx.ParseAccountSubject(subject); err != nil {
		return "", "", at, nil, err
	}
	switch stream {
	case natsx.StreamScores:
		var ev scoringv1.ScoreChangeEvent
		if err := proto.Unmarshal(data, &ev); err != nil || ev.GetScore() == nil {
			return "", "", at, nil, errors.Join(errors.New("score change without a score"), err)
		}
		e, _ := strconv.ParseUint(epoch, 10, 64) // 0, the lowest, when absent
		return tenant, account, ev.GetScore().GetScoreTime().AsTime(), func(st *alertv1.AccountAlertState, env lifecycle.Env) (bool, error) {
			fresh := seq > st.GetScoresSeq()
			applied, err := lifecycle.ApplyScore(st, ev.GetScore(), seq, e, env)
			if fresh && !applied && err == nil {
				superseded()
			}
			return applied, err
		}, nil
	case natsx.StreamAccountChanges:
		var ch accountv1.AccountChange
		if err := proto.Unmarshal(data, &ch); err != nil || ch.GetAccount() == nil {
			return "", "", at, nil, errors.Join(errors.New("account change without an account"), err)
		}
		return tenant, account, at, func(st *alertv1.AccountAlertState, env lifecycle.Env) (bool, error) {
			return lifecycle.ApplyAccount(st, &ch, seq, env)
		}, nil
	}
	return "", "", at, nil, fmt.Errorf("unexpected stream %s", stream)
}

// sweep escalates and wakes the shard's alerts that are due.
func (p *Pipeline) sweep(ctx context.Context) {
	for _, a := range p.deps.View.Due(p.deps.Now()) {
		if !p.mine(a.GetTenantId(), a.GetAccountId()) {
			continue
		}
		if _, err := p.Update(ctx, a.GetTenantId(), a.GetAccountId(), true, nil, lifecycle.Tick); err != nil {
			p.deps.Logger.Warn("sweep alert", "tenant", a.GetTenantId(), "alert", a.GetAlertId(), "err", err)
		}
	}
}

// rescan lets time pass for every account of the shard, and publishes what
// a crash left in an outbox.
func (p *Pipeline) rescan(ctx context.Context) {
	err := p.deps.State.Keys(ctx, func(tenant, account string) error {
		if !p.mine(tenant, account) {
			return nil
		}
		_, err := p.Update(ctx, tenant, account, true, nil, lifecycle.Tick)
		if err != nil && ctx.Err() == nil {
			p.deps.Logger.Warn("rescan account", "tenant", tenant, "err", err)
		}
		return ctx.Err()
	})
	if err != nil && ctx.Err() == nil {
		p.deps.Logger.Warn("rescan", "err", err)
	}
	p.deps.View.Prune(p.deps.Now().Add(-p.cfg.AlertsMaxAge))
}
