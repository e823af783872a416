package churnalert

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// PartitionLag is churn-alert's consumer lag per partition: the SCORES and
// ACCOUNT_CHANGES messages of the partition after the positions its owner
// stored in ALERT_STATE. A partition at work stores its position every
// -churn-alert.checkpoint-interval, so it reads up to that much behind; a
// partition nobody owns shows what its next owner has to apply. It is an
// ownership.LagSource: the positions are in NATS, so any process reads
// them, whichever replica owns the partition.
//
// It costs a KV read of the positions and, per stream and partition, a
// read of the partition's last message; only a partition behind its
// position gets an ephemeral consumer, whose pending count is the lag.
func PartitionLag(ctx context.Context, js jetstream.JetStream, partitions int) (map[uint32]uint64, error) {
	kv, err := js.KeyValue(ctx, streams.BucketState)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, errors.New("churn-alert has not started: no " + streams.BucketState)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", streams.BucketState, err)
	}
	type source struct{ stream, prefix string }
	sources := []source{{natsx.StreamScores, natsx.ScoresSubjectPrefix}, {natsx.StreamAccountChanges, natsx.AccountsSubjectPrefix}}
	lag := make([][]uint64, len(sources))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, src := range sources {
		lag[i] = make([]uint64, partitions)
		str, err := js.Stream(ctx, src.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // nothing to read yet
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", src.stream, err)
		}
		for p := range uint32(partitions) {
			g.Go(func() error {
				n, err := partitionLag(gctx, kv, str, src.stream, natsx.PartitionFilter(src.prefix, p), p, uint32(partitions))
				lag[i][p] = n
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[uint32]uint64, partitions)
	for p := range uint32(partitions) {
		for i := range sources {
			out[p] += lag[i][p]
		}
	}
	return out, nil
}

// PositionKey is where the pipeline of partition p of n keeps its position
// in stream, in the ALERT_STATE bucket.
func PositionKey(stream string, p, n uint32) string {
	return streams.PartitionPositionKey(stream, p, n)
}

func partitionLag(ctx context.Context, kv jetstream.KeyValue, str jetstream.Stream, stream, filter string, p, n uint32) (uint64, error) {
	last, err := str.GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last message of %s partition %d: %w", stream, p, err)
	}
	var pos uint64
	e, err := kv.Get(ctx, PositionKey(stream, p, n))
	switch {
	case err == nil:
		if pos, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
			return 0, fmt.Errorf("position of %s partition %d: %w", stream, p, err)
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, fmt.Errorf("position of %s partition %d: %w", stream, p, err)
	}
	if pos >= last.Sequence {
		return 0, nil
	}
	// Stream sequences count every partition's messages: the partition's
	// own after pos are what a filtered consumer from pos+1 has pending.
	cons, err := str.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       pos + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 30 * time.Second, // in case the delete below fails
	})
	if err != nil {
		return 0, fmt.Errorf("count %s partition %d: %w", stream, p, err)
	}
	info := cons.CachedInfo()
	_ = str.DeleteConsumer(context.WithoutCancel(ctx), info.Name)
	return info.NumPending, nil
}
