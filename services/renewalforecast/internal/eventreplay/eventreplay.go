// Package eventreplay replays a tenant's events stored in the EVENTS stream
// through the scoring core (internal/scorecore/replay): the JetStream half of
// a candidate scorecard's backtest.
package eventreplay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/scorecore/replay"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// fetchWait bounds the wait for a batch of stored events; the stream's end
// shows as an empty fetch.
const fetchWait = 500 * time.Millisecond

// Stream replays every event of tenant stored in the EVENTS stream when it
// is called (later events are not waited for) and passes each score change
// to emit, oldest day first.
func Stream(ctx context.Context, js jetstream.JetStream, tenant string, sc *scoringv1.Scorecard, facts []replay.Fact, emit func(*scoringv1.HealthScore)) error {
	r, err := replay.New(tenant, sc, facts)
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, natsx.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{natsx.EventsSubjectPrefix + "." + tenant + ".*"},
	})
	if err != nil {
		return fmt.Errorf("replay %s: events consumer: %w", tenant, err)
	}
	var batch eventv1.EventBatch
	for {
		msgs, err := cons.Fetch(1000, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return fmt.Errorf("replay %s: fetch events: %w", tenant, err)
		}
		got, pending := 0, uint64(1)
		for msg := range msgs.Messages() {
			got++
			if meta, err := msg.Metadata(); err == nil {
				pending = meta.NumPending
			}
			if err := proto.Unmarshal(msg.Data(), &batch); err != nil {
				// Ingest only stores what it encoded; the scoring service skips
				// such a message too.
				continue
			}
			for _, hs := range r.Apply(batch.GetEvents(), time.Now()) {
				emit(hs)
			}
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("replay %s: fetch events: %w", tenant, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay %s: %w", tenant, err)
		}
		if got == 0 || pending == 0 {
			break
		}
	}
	for _, hs := range r.Finish() {
		emit(hs)
	}
	return nil
}
