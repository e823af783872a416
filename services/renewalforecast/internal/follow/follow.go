// Package follow keeps the forecast's history current from JetStream: the
// latest record of every account from ACCOUNT_CHANGES and every score change
// from SCORES. It reads with ordered consumers from the streams' start, so
// the state is rebuilt by replay at every start and needs no storage of its
// own: JetStream is the source of truth.
package follow

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/renewalforecast/internal/history"
)

// Follower feeds a history store from the streams.
type Follower struct {
	js     jetstream.JetStream
	store  *history.Store
	logger *slog.Logger

	accountsCaughtUp atomic.Bool
	scoresCaughtUp   atomic.Bool

	accountChanges metric.Int64Counter
	scoreChanges   metric.Int64Counter
}

// New returns a follower; Run starts it.
func New(js jetstream.JetStream, store *history.Store, logger *slog.Logger, meter metric.Meter) *Follower {
	f := &Follower{js: js, store: store, logger: logger}
	f.accountChanges, _ = meter.Int64Counter("lodestar.forecast.account_changes",
		metric.WithDescription("Account changes read from ACCOUNT_CHANGES."))
	f.scoreChanges, _ = meter.Int64Counter("lodestar.forecast.score_changes",
		metric.WithDescription("Score changes read from SCORES."))
	return f
}

// Ready reports whether both streams' backlog present at start is read.
func (f *Follower) Ready() bool { return f.accountsCaughtUp.Load() && f.scoresCaughtUp.Load() }

// Run follows both streams until ctx is done.
func (f *Follower) Run(ctx context.Context) error {
	accounts, err := f.consume(ctx, natsx.StreamAccountChanges, jetstream.DeliverLastPerSubjectPolicy, &f.accountsCaughtUp, f.accountChange)
	if err != nil {
		return err
	}
	defer accounts.Stop()
	scores, err := f.consume(ctx, natsx.StreamScores, jetstream.DeliverAllPolicy, &f.scoresCaughtUp, f.scoreChange)
	if err != nil {
		return err
	}
	defer scores.Stop()
	<-ctx.Done()
	return nil
}

// accountChange records an account's latest state: the change carries the
// whole account, outcomes included.
func (f *Follower) accountChange(data []byte) error {
	var ch accountv1.AccountChange
	if err := proto.Unmarshal(data, &ch); err != nil {
		return err
	}
	if acc := ch.GetAccount(); acc != nil {
		f.store.PutAccount(ch.GetTenantId(), acc)
		f.accountChanges.Add(context.Background(), 1)
	}
	return nil
}

func (f *Follower) scoreChange(data []byte) error {
	var ev scoringv1.ScoreChangeEvent
	if err := proto.Unmarshal(data, &ev); err != nil {
		return err
	}
	if hs := ev.GetScore(); hs != nil {
		f.store.AddScore(hs)
		f.scoreChanges.Add(context.Background(), 1)
	}
	return nil
}

func (f *Follower) consume(ctx context.Context, stream string, policy jetstream.DeliverPolicy, caughtUp *atomic.Bool, apply func([]byte) error) (jetstream.ConsumeContext, error) {
	cons, err := f.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: policy})
	if err != nil {
		return nil, fmt.Errorf("%s consumer: %w", stream, err)
	}
	cc, err := natsx.ConsumeCaughtUp(ctx, cons, caughtUp, func(msg jetstream.Msg, _ *jetstream.MsgMetadata) {
		if err := apply(msg.Data()); err != nil {
			// Only services that encoded a message publish it; skip it as
			// scoring does.
			f.logger.Error("skip undecodable message", "stream", stream, "subject", msg.Subject(), "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", stream, err)
	}
	return cc, nil
}
