// Package delivery works the DELIVERIES queue: it sends each delivery
// through its channel, retries failures with exponential backoff (negative
// acknowledgements with a delay), moves a delivery to the dead letters after
// its last try or a permanent failure, and never sends one delivery id
// twice. Pages over a recipient's rate limit are dropped or gathered into a
// digest.
//
// Idempotence: a delivery's outcome is written to the ALERT_DELIVERIES
// bucket (key sent.<tenant>.<delivery id>) before the message is
// acknowledged, and checked before sending. Only a crash between an
// endpoint's answer and that write can repeat a send; receivers deduplicate
// those by the delivery id they are given (webhook header, PagerDuty
// dedup_key, e-mail Message-ID).
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/alertstate"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/channel"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/settings"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// Durable is the name of the work-queue consumer.
const Durable = "churn-alert"

// Dead-letter headers.
const (
	HeaderError    = "Lodestar-Error"
	HeaderAttempts = "Lodestar-Attempts"
)

const (
	maxBackoff = 10 * time.Minute
	// claimTimeout is how long a digest claimed by a worker that died stays
	// untouched before another one sends it.
	claimTimeout = time.Minute
	// maxDigest bounds one digest; further pages of the window are dropped.
	maxDigest = 200
	// limiterIdle is how long an unused rate limiter is kept.
	limiterIdle = 24 * time.Hour
)

// Outcomes recorded per delivery id.
const (
	OutcomeSent       = "sent"
	OutcomeDead       = "dead"
	OutcomeSuppressed = "suppressed"
	OutcomeDigested   = "digested"
	OutcomeNoChannel  = "no-channel"
)

// Config tunes the workers.
type Config struct {
	Workers int
	// MaxAttempts is how many times a delivery is tried.
	MaxAttempts int
	// Backoff is the wait before the first retry; it doubles per retry, up
	// to ten minutes.
	Backoff time.Duration
	// Timeout bounds one send.
	Timeout time.Duration
	// AckWait is how long a delivery in the hands of a worker that died
	// waits before it is redelivered; more than Timeout.
	AckWait time.Duration
	// DigestCheck is how often digests are looked at.
	DigestCheck time.Duration
}

// Deps are what the workers use.
type Deps struct {
	JS         jetstream.JetStream
	KV         jetstream.KeyValue // ALERT_DELIVERIES
	Settings   *settings.Store
	Sender     *channel.Sender
	Now        func() time.Time
	Logger     *slog.Logger
	Meter      metric.Meter
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Worker sends deliveries.
type Worker struct {
	cfg     Config
	deps    Deps
	running atomic.Bool

	mu       sync.Mutex
	limiters map[string]*limiter
	digests  map[string]time.Time // digest key → window end

	outcomes metric.Int64Counter
	latency  metric.Float64Histogram
}

type limiter struct {
	*rate.Limiter
	used time.Time
}

// New returns the workers; Run starts them.
func New(cfg Config, deps Deps) *Worker {
	w := &Worker{cfg: cfg, deps: deps, limiters: map[string]*limiter{}, digests: map[string]time.Time{}}
	w.outcomes, _ = deps.Meter.Int64Counter("lodestar.alert.deliveries", metric.WithDescription("Deliveries by channel kind and outcome."))
	w.latency, _ = deps.Meter.Float64Histogram("lodestar.alert.delivery.latency", metric.WithUnit("s"),
		metric.WithDescription("From the alert event to its delivery being accepted by the endpoint."))
	return w
}

// Ready reports whether the workers take deliveries.
func (w *Worker) Ready() bool { return w.running.Load() }

// Run works the queue until ctx is done, then finishes the sends in hand.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.deps.JS.CreateOrUpdateConsumer(ctx, streams.Deliveries, jetstream.ConsumerConfig{
		Durable:       Durable,
		Description:   "churn-alert: sends deliveries",
		FilterSubject: streams.DeliveriesPrefix + ".*",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		// One more than the attempts: if a worker dies during the last try,
		// the next one still dead-letters the delivery.
		MaxDeliver:    w.cfg.MaxAttempts + 1,
		MaxAckPending: 4 * w.cfg.Workers,
	})
	if err != nil {
		return fmt.Errorf("deliveries consumer: %w", err)
	}
	digests, err := w.deps.KV.Watch(ctx, "digest.>")
	if err != nil {
		return fmt.Errorf("watch digests: %w", err)
	}
	defer func() { _ = digests.Stop() }()

	work := make(chan jetstream.Msg)
	var workers sync.WaitGroup
	// The sends in hand finish even when ctx ends: a half-done send would
	// only be repeated.
	sendCtx := context.WithoutCancel(ctx)
	for range w.cfg.Workers {
		workers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case msg := <-work:
					w.handle(sendCtx, msg)
				}
			}
		})
	}
	// Fetch no more than the workers can start: a message waiting in a
	// client buffer would use up its ack wait.
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case work <- msg:
		case <-ctx.Done():
			_ = msg.Nak() // for another replica, or the next run, at once
		}
	}, jetstream.PullMaxMessages(w.cfg.Workers))
	if err != nil {
		return fmt.Errorf("consume deliveries: %w", err)
	}
	w.running.Store(true)
	defer w.running.Store(false)

	tick := time.NewTicker(w.cfg.DigestCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			cc.Stop()
			workers.Wait()
			return nil
		case e := <-digests.Updates():
			w.trackDigest(e)
		case <-tick.C:
			w.flushDigests(sendCtx)
			w.pruneLimiters()
		}
	}
}

func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	var d alertv1.Delivery
	if err == nil {
		err = proto.Unmarshal(msg.Data(), &d)
	}
	if err != nil {
		w.deps.Logger.Error("drop undecodable delivery", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	ctx = natsx.ExtractTrace(ctx, w.deps.Propagator, msg.Headers())
	ctx, span := w.deps.Tracer.Start(ctx, "churn-alert deliver "+msg.Subject(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("lodestar.delivery_id", d.GetDeliveryId())))
	defer span.End()
	kind := msg.Subject()[len(streams.DeliveriesPrefix)+1:]
	done := func(outcome string) {
		w.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("outcome", outcome)))
		if _, err := w.deps.KV.Put(ctx, sentKey(&d), []byte(outcome)); err != nil {
			// Acknowledge anyway: the message leaves the queue, and only a
			// republished copy could then be sent again.
			w.deps.Logger.Warn("record delivery outcome", "delivery", d.GetDeliveryId(), "err", err)
		}
		_ = msg.Ack()
	}

	_, err = w.deps.KV.Get(ctx, sentKey(&d))
	switch {
	case err == nil:
		_ = msg.Ack() // done before: a redelivery or a republished copy
		return
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		w.deps.Logger.Warn("read delivery outcome; retrying", "delivery", d.GetDeliveryId(), "err", err)
		_ = msg.NakWithDelay(w.cfg.Backoff)
		return
	}
	ch := w.deps.Settings.Channel(d.GetTenantId(), d.GetChannelId())
	if ch == nil {
		done(OutcomeNoChannel)
		return
	}
	toDigest := func(iv time.Duration) {
		if err := w.addToDigest(ctx, &d, iv); err != nil {
			w.deps.Logger.Warn("add to digest; retrying", "delivery", d.GetDeliveryId(), "err", err)
			_ = msg.NakWithDelay(w.cfg.Backoff)
			return
		}
		done(OutcomeDigested)
	}
	iv := ch.GetRateLimit().GetDigestInterval().AsDuration()
	if meta.NumDelivered == 1 && d.GetOverBudget() && channel.Digestible(kind) {
		// Outranked, or over the recipient's daily budget: the digest, at
		// the channel's interval or else daily.
		if iv <= 0 {
			iv = 24 * time.Hour
		}
		toDigest(iv)
		return
	}
	if meta.NumDelivered == 1 && channel.IsPage(d.GetEvent()) && !w.allow(&d, ch) {
		if iv > 0 && channel.Digestible(kind) {
			toDigest(iv)
			return
		}
		done(OutcomeSuppressed)
		return
	}

	sctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	err = w.deps.Sender.Send(sctx, ch, &d)
	cancel()
	attempt := int(meta.NumDelivered)
	switch {
	case err == nil:
		w.latency.Record(ctx, w.deps.Now().Sub(d.GetEvent().GetEventTime().AsTime()).Seconds(), metric.WithAttributes(attribute.String("kind", kind)))
		done(OutcomeSent)
	case channel.IsPermanent(err) || attempt >= w.cfg.MaxAttempts:
		span.RecordError(err)
		if err := w.deadLetter(ctx, msg, &d, kind, err, attempt); err != nil {
			w.deps.Logger.Warn("dead-letter delivery; retrying", "delivery", d.GetDeliveryId(), "err", err)
			_ = msg.NakWithDelay(w.cfg.Backoff)
			return
		}
		w.deps.Logger.Error("delivery failed for good", "delivery", d.GetDeliveryId(), "channel", d.GetChannelId(), "attempts", attempt, "err", err)
		done(OutcomeDead)
	default:
		span.RecordError(err)
		delay := w.backoff(attempt)
		w.deps.Logger.Warn("delivery failed; retrying", "delivery", d.GetDeliveryId(), "channel", d.GetChannelId(), "attempt", attempt, "retry_in", delay, "err", err)
		w.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("outcome", "retry")))
		_ = msg.NakWithDelay(delay)
	}
}

func sentKey(d *alertv1.Delivery) string { return "sent." + d.GetTenantId() + "." + d.GetDeliveryId() }

// backoff is the wait before retry number attempt.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.Backoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, d *alertv1.Delivery, kind string, cause error, attempts int) error {
	m := nats.NewMsg(streams.DeadSubject(kind))
	m.Data = msg.Data()
	m.Header.Set(nats.MsgIdHdr, natsx.MsgID(d.GetTenantId(), d.GetDeliveryId()))
	m.Header.Set(HeaderError, cause.Error())
	m.Header.Set(HeaderAttempts, strconv.Itoa(attempts))
	if _, err := w.deps.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}

// allow takes a token from the recipient's limiter for the channel. Limits
// are per replica: with n replicas a recipient may get up to n times the
// limit, which still stops a flood.
func (w *Worker) allow(d *alertv1.Delivery, ch *alertv1.Channel) bool {
	rl := ch.GetRateLimit()
	if rl.GetMaxPerHour() <= 0 {
		return true
	}
	limit, burst := rate.Limit(float64(rl.GetMaxPerHour())/3600), int(rl.GetBurst())
	if burst == 0 {
		burst = int(rl.GetMaxPerHour())
	}
	key := d.GetTenantId() + "\x00" + d.GetChannelId() + "\x00" + recipientKey(d.GetRecipient())
	now := w.deps.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.limiters[key]
	if l == nil {
		l = &limiter{Limiter: rate.NewLimiter(limit, burst)}
		w.limiters[key] = l
	} else if l.Limit() != limit || l.Burst() != burst {
		l.SetLimitAt(now, limit)
		l.SetBurstAt(now, burst)
	}
	l.used = now
	return l.AllowN(now, 1)
}

func recipientKey(p *alertv1.Person) string {
	switch {
	case p.GetPersonId() != "":
		return p.GetPersonId()
	case p.GetEmail() != "":
		return p.GetEmail()
	}
	return "-"
}

func (w *Worker) pruneLimiters() {
	now := w.deps.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, l := range w.limiters {
		if now.Sub(l.used) > limiterIdle {
			delete(w.limiters, k)
		}
	}
}

// addToDigest adds a page to its recipient's digest of the current window.
func (w *Worker) addToDigest(ctx context.Context, d *alertv1.Delivery, interval time.Duration) error {
	end := w.deps.Now().Truncate(interval).Add(interval)
	key := fmt.Sprintf("digest.%s.%s.%s.%d", d.GetTenantId(), d.GetChannelId(), natsx.Token(recipientKey(d.GetRecipient())), end.Unix())
	for attempt := 1; ; attempt++ {
		dg := &alertv1.DeliveryDigest{TenantId: d.GetTenantId(), ChannelId: d.GetChannelId(), Recipient: d.GetRecipient()}
		var rev uint64
		e, err := w.deps.KV.Get(ctx, key)
		switch {
		case err == nil:
			if err := proto.Unmarshal(e.Value(), dg); err != nil {
				return fmt.Errorf("decode digest %s: %w", key, err)
			}
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("read digest %s: %w", key, err)
		}
		if len(dg.GetDeliveries()) >= maxDigest {
			return nil
		}
		dg.Deliveries = append(dg.Deliveries, d)
		dg.WindowEndTime = timestamppb.New(end)
		b, err := proto.Marshal(dg)
		if err != nil {
			return fmt.Errorf("encode digest: %w", err)
		}
		if rev == 0 {
			_, err = w.deps.KV.Create(ctx, key, b)
		} else {
			_, err = w.deps.KV.Update(ctx, key, b, rev)
		}
		if alertstate.Conflict(err) && attempt < 20 {
			continue
		}
		if err != nil {
			return fmt.Errorf("store digest %s: %w", key, err)
		}
		return nil
	}
}

// trackDigest notes the digests that exist and when their window ends.
func (w *Worker) trackDigest(e jetstream.KeyValueEntry) {
	if e == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(w.digests, e.Key())
		return
	}
	// The key ends in the window's end, in Unix seconds.
	if i := strings.LastIndexByte(e.Key(), '.'); i > 0 {
		if sec, err := strconv.ParseInt(e.Key()[i+1:], 10, 64); err == nil {
			w.digests[e.Key()] = time.Unix(sec, 0)
		}
	}
}

// flushDigests sends the digests whose window has ended. A worker claims a
// digest by compare-and-set before sending, so replicas do not both send it.
func (w *Worker) flushDigests(ctx context.Context) {
	now := w.deps.Now()
	w.mu.Lock()
	var due []string
	for k, end := range w.digests {
		if !now.Before(end) {
			due = append(due, k)
		}
	}
	w.mu.Unlock()
	for _, key := range due {
		if err := w.flushDigest(ctx, key, now); err != nil {
			w.deps.Logger.Warn("send digest; retrying later", "key", key, "err", err)
		}
	}
}

func (w *Worker) flushDigest(ctx context.Context, key string, now time.Time) error {
	e, err := w.deps.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var dg alertv1.DeliveryDigest
	if err := proto.Unmarshal(e.Value(), &dg); err != nil {
		return fmt.Errorf("decode digest: %w", err)
	}
	if dg.ClaimTime != nil && now.Sub(dg.GetClaimTime().AsTime()) < claimTimeout {
		return nil
	}
	dg.ClaimTime = timestamppb.New(now)
	b, err := proto.Marshal(&dg)
	if err != nil {
		return fmt.Errorf("encode digest: %w", err)
	}
	rev, err := w.deps.KV.Update(ctx, key, b, e.Revision())
	if alertstate.Conflict(err) {
		return nil // another worker has it
	}
	if err != nil {
		return fmt.Errorf("claim digest: %w", err)
	}
	ch := w.deps.Settings.Channel(dg.GetTenantId(), dg.GetChannelId())
	if ch != nil {
		sctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
		err := w.deps.Sender.SendDigest(sctx, ch, &dg)
		cancel()
		if err != nil && !channel.IsPermanent(err) {
			return err
		}
		outcome := OutcomeSent
		if err != nil {
			w.deps.Logger.Error("digest failed for good", "key", key, "err", err)
			outcome = OutcomeDead
		}
		w.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "digest"), attribute.String("outcome", outcome)))
	}
	if err := w.deps.KV.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil && !alertstate.Conflict(err) {
		return fmt.Errorf("delete sent digest: %w", err)
	}
	w.mu.Lock()
	delete(w.digests, key)
	w.mu.Unlock()
	return nil
}
