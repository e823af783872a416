// Package publish packs the events of one ingest request into EVENTS stream
// messages, one lodestar.event.v1.EventBatch per partition, and publishes
// them with async publish, returning once every message is stored.
//
// # Deduplication
//
// Each message carries Nats-Msg-Id = natsx.MsgID(tenant, the message ids of
// its events in request order), which is "tenant:messageId" when it packs a
// single event. JetStream drops a message whose id it stored within the
// EVENTS duplicate window (natsx.Limits.DuplicateWindow), so:
//
//   - A retried request, which carries the same events in the same order, is
//     stored once when the retry reaches JetStream within the window: every
//     message of the retry has the id of a message of the first attempt. This
//     holds for messages of a first attempt that failed half-way too: the
//     retry stores only the ones missing. Events sent without a messageId get
//     one derived from the request bytes (see intake.Prepare), so this also
//     holds for them when the client resends the same bytes, as Segment's
//     libraries do.
//   - An event sent alone in its partition is deduplicated against the same
//     event sent alone again, whichever endpoint or request carried it.
//
// Not deduplicated:
//
//   - The same event packed with different companions: a client that
//     re-batches its events differently on retry, or a request whose events'
//     accounts (and so partitions) changed between attempts because another
//     request moved a user to another account meanwhile.
//   - A retry after the duplicate window, or one that changes the bytes of an
//     event sent without a messageId.
//   - The same message id under two tenants: ids are per tenant.
//
// Consumers that must count an event once in every case deduplicate on the
// event's message_id within their own window.
package publish

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// TenantHeader names the tenant of a message, so a consumer can route or
// filter it without decoding the payload.
const TenantHeader = "Lodestar-Tenant"

// Publisher publishes packed events. It is safe for concurrent use.
type Publisher struct {
	js         jetstream.JetStream
	partitions uint32
	// marked is the day of the last watermark markers sent per tenant.
	markedMu      sync.Mutex
	marked        map[string]int64
	timeout       time.Duration
	propagator    propagation.TextMapPropagator
	latency       metric.Float64Histogram
	messageEvents metric.Int64Histogram
}

// New returns a publisher over partitions partitions per tenant that waits
// up to timeout for the acks of one request.
func New(js jetstream.JetStream, partitions int, timeout time.Duration, propagator propagation.TextMapPropagator, meter metric.Meter) (*Publisher, error) {
	latency, err := meter.Float64Histogram("lodestar.ingest.publish.duration",
		metric.WithDescription("Time from the first publish of a request's messages to the last PubAck."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return nil, fmt.Errorf("publish duration histogram: %w", err)
	}
	messageEvents, err := meter.Int64Histogram("lodestar.ingest.message.events",
		metric.WithDescription("Events packed into one EVENTS stream message."),
		metric.WithUnit("{event}"),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 20, 50, 100, 200, 500))
	if err != nil {
		return nil, fmt.Errorf("message events histogram: %w", err)
	}
	return &Publisher{js: js, partitions: uint32(partitions), marked: map[string]int64{}, timeout: timeout, propagator: propagator, latency: latency, messageEvents: messageEvents}, nil
}

// Publish sets each event's partition, packs the events of each partition,
// in request order, into one message on natsx.EventSubject, and returns once
// JetStream acknowledged every message. The events must belong to tenant and
// carry their message ids. On error some messages may be stored: the caller
// reports failure and the client's retry is deduplicated (see the package
// documentation).
func (p *Publisher) Publish(ctx context.Context, tenant string, evs []*eventv1.Event) error {
	type pack struct {
		partition uint32
		batch     eventv1.EventBatch
		ids       []string
	}
	var packs []*pack
	byPartition := map[uint32]*pack{}
	var latest int64
	for _, ev := range evs {
		at := ev.GetEventTime()
		if at == nil {
			at = ev.GetReceivedTime()
		}
		latest = max(latest, at.GetSeconds())
		ev.Partition = natsx.Partition(tenant, ev.AccountId, p.partitions)
		pk := byPartition[ev.Partition]
		if pk == nil {
			pk = &pack{partition: ev.Partition}
			byPartition[ev.Partition] = pk
			packs = append(packs, pk)
		}
		pk.batch.Events = append(pk.batch.Events, ev)
		pk.ids = append(pk.ids, ev.MessageId)
	}
	msgs := make([]*nats.Msg, len(packs))
	for i, pk := range packs {
		data, err := marshalBatch(pk.batch.Events)
		if err != nil {
			return fmt.Errorf("marshal event batch: %w", err)
		}
		msgs[i] = &nats.Msg{
			Subject: natsx.EventSubject(tenant, pk.partition),
			Data:    data,
			Header: nats.Header{
				jetstream.MsgIDHeader: []string{natsx.MsgID(tenant, pk.ids...)},
				TenantHeader:          []string{tenant},
			},
		}
		natsx.InjectTrace(ctx, p.propagator, msgs[i])
		p.messageEvents.Record(ctx, int64(len(pk.ids)))
	}
	// After the events: a partition reads a marker after this request's
	// events of it.
	day := min(latest, time.Now().Unix()) / 86400
	p.markedMu.Lock()
	mark := day > p.marked[tenant]
	if mark {
		p.marked[tenant] = day
	}
	p.markedMu.Unlock()
	if mark {
		msgs = append(msgs, natsx.WatermarkMsgs(tenant, time.Unix(min(latest, time.Now().Unix()), 0), int(p.partitions))...)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	err := natsx.PublishAll(ctx, p.js, msgs)
	if err != nil && mark {
		p.markedMu.Lock()
		if p.marked[tenant] == day {
			delete(p.marked, tenant) // the next request sends them again
		}
		p.markedMu.Unlock()
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	p.latency.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("outcome", outcome)))
	if err != nil {
		return fmt.Errorf("publish %d events in %d messages: %w", len(evs), len(msgs), err)
	}
	return nil
}
