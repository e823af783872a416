package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderCarrier lets OpenTelemetry read and write W3C trace context in NATS
// message headers.
type HeaderCarrier nats.Header

// Get implements propagation.TextMapCarrier.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set implements propagation.TextMapCarrier.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys implements propagation.TextMapCarrier.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes ctx's trace context into a message's headers.
func InjectTrace(ctx context.Context, p propagation.TextMapPropagator, msg *nats.Msg) {
	if p == nil {
		return
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	p.Inject(ctx, HeaderCarrier(msg.Header))
}

// ExtractTrace returns ctx with the trace context carried by a message's headers.
func ExtractTrace(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) context.Context {
	if p == nil || h == nil {
		return ctx
	}
	return p.Extract(ctx, HeaderCarrier(h))
}

// Async publish settings: ARCHITECTURE.md measured the 200 ms default stall
// wait failing under load, so a full window waits longer before it gives up.
const (
	// MaxPendingAcks bounds the async publishes in flight per connection.
	MaxPendingAcks = 4096
	stallWait      = 10 * time.Second
	ackTimeout     = 30 * time.Second
)

// NewJetStream returns a JetStream context with a bounded async publish window.
func NewJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxPendingAcks), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// PublishAll publishes msgs asynchronously and waits for every PubAck, so
// that a nil error means each message is stored. The JetStream context's
// max-pending setting bounds the in-flight window (see NewJetStream).
// Messages should carry a Nats-Msg-Id so that retrying after an error
// stores each message once.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var errs []error
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(stallWait))
		if err != nil {
			errs = append(errs, fmt.Errorf("publish %s: %w", m.Subject, err))
			break
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish %s: %w", f.Msg().Subject, err))
		case <-ctx.Done():
			return fmt.Errorf("wait for publish acks: %w", ctx.Err())
		}
	}
	return errors.Join(errs...)
}
