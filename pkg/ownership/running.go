package ownership

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// Start ensures the leases bucket and returns the manager of group's
// partitions with the deployment's settings; Run starts it.
func Start(ctx context.Context, js jetstream.JetStream, l natsx.Limits, group string, logger *slog.Logger) (*Manager, error) {
	if err := natsx.EnsurePartitions(ctx, js, l.Partitions, l.Replicas); err != nil {
		return nil, err
	}
	kv, err := natsx.EnsureKeyValue(ctx, js, BucketConfig(l.LeaseTTL, l.Replicas))
	if err != nil {
		return nil, err
	}
	return New(Config{Group: group, Member: l.Member, Partitions: l.Partitions, TTL: l.LeaseTTL}, kv, logger), nil
}

// Running holds the workers of the partitions a replica owns.
type Running[T any] struct {
	mu sync.Mutex
	m  map[uint32]*T
}

// NewRunning returns an empty set.
func NewRunning[T any]() *Running[T] { return &Running[T]{m: map[uint32]*T{}} }

// Run holds w as partition's worker while run(w, ctx) runs. A worker of a
// lost partition may still be stopping when the partition's next worker
// starts: it then leaves the newer one in place.
func (r *Running[T]) Run(ctx context.Context, partition uint32, w *T, run func(*T, context.Context) error) error {
	r.mu.Lock()
	r.m[partition] = w
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.m[partition] == w {
			delete(r.m, partition)
		}
		r.mu.Unlock()
	}()
	return run(w, ctx)
}

// Get returns partition's worker, if this replica runs one.
func (r *Running[T]) Get(partition uint32) (*T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.m[partition]
	return w, ok
}

// Ready reports whether m holds the partitions assigned to this replica and
// each has a worker that is ready.
func (r *Running[T]) Ready(m *Manager, ready func(*T) bool) bool {
	if m == nil || !m.Settled() {
		return false
	}
	for _, l := range m.Owned() {
		r.mu.Lock()
		w, ok := r.m[l.Partition]
		r.mu.Unlock()
		if !ok || !ready(w) {
			return false
		}
	}
	return true
}
