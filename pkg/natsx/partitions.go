package natsx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BucketDeployment holds what is set once per deployment, key partitions.
const BucketDeployment = "LODESTAR_DEPLOYMENT"

// EnsurePartitions records n as the deployment's partition count if none
// is recorded, and refuses any other n afterwards: changing it would move
// accounts between partitions, and every partition's snapshot with them.
func EnsurePartitions(ctx context.Context, js jetstream.JetStream, n, replicas int) error {
	kv, err := EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketDeployment,
		Description: "Settings fixed for the deployment's life (partitions)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return err
	}
	_, err = Ensure(ctx, "partition count", func(ctx context.Context) (struct{}, error) {
		_, err := kv.Create(ctx, "partitions", []byte(strconv.Itoa(n)))
		if err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
			return struct{}{}, err
		}
		e, err := kv.Get(ctx, "partitions")
		if err != nil {
			return struct{}{}, err
		}
		if got, _ := strconv.Atoi(string(e.Value())); got != n {
			return struct{}{}, &finalError{&PartitionsMismatch{Stored: string(e.Value()), Want: n}}
		}
		return struct{}{}, nil
	})
	return err
}

// StoredPartitions returns the deployment's partition count as
// EnsurePartitions recorded it, 0 when no partitioned service has started.
func StoredPartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	kv, err := js.KeyValue(ctx, BucketDeployment)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("deployment bucket: %w", err)
	}
	e, err := kv.Get(ctx, "partitions")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("partition count: %w", err)
	}
	n, err := strconv.Atoi(string(e.Value()))
	if err != nil {
		return 0, fmt.Errorf("partition count %q: %w", e.Value(), err)
	}
	return n, nil
}

// PartitionsMismatch is EnsurePartitions' refusal.
type PartitionsMismatch struct {
	Stored string
	Want   int
}

func (e *PartitionsMismatch) Error() string {
	return fmt.Sprintf("-nats.partitions %d, but this deployment was created with %s partitions (KV %s, key partitions): "+
		"the count is fixed for a deployment's life; start with -nats.partitions %s", e.Want, e.Stored, BucketDeployment, e.Stored)
}

// WatermarkHeader marks an EVENTS message that carries no events but a
// tenant's watermark, unix seconds: the latest event time ingest stored for
// the tenant in any partition. Ingest sends one to every partition of a
// tenant when that time enters a new day, so a partition whose accounts are
// silent still reaches the day (a score depends on its watermark's day
// only) and its silent accounts decay, in a replay as live.
const WatermarkHeader = "Lodestar-Watermark"

// WatermarkMsgs are the markers of tenant's watermark at, one per
// partition, with message ids that deduplicate the markers of the same
// day sent by several ingest replicas.
func WatermarkMsgs(tenant string, at time.Time, partitions int) []*nats.Msg {
	sec := strconv.FormatInt(at.Unix(), 10)
	day := strconv.FormatInt(at.Unix()/86400, 10)
	msgs := make([]*nats.Msg, partitions)
	for p := range partitions {
		msgs[p] = &nats.Msg{
			Subject: EventSubject(tenant, uint32(p)),
			Header: nats.Header{
				WatermarkHeader:       []string{sec},
				jetstream.MsgIDHeader: []string{MsgID(tenant, "watermark", day, strconv.Itoa(p))},
			},
		}
	}
	return msgs
}

// EpochHeader carries the epoch of the partition owner (pkg/ownership) that
// published a SCORES message: a consumer skips a partition's changes of an
// epoch below one it has applied, which only a replica that lost the
// partition (during a pause) can publish.
const EpochHeader = "Lodestar-Epoch"
