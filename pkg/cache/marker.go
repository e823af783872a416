package cache

import (
	"context"
	"fmt"
	"time"
)

// A marker tells a writer whether the cache still holds what it wrote: the
// writer sets it once the cache holds all its scores, and finds it gone
// when Redis lost its data (a restart without persistence, a flush, a
// failover to an empty replica). The writer then writes all its scores
// again. A Redis restored from a dump older than the marker's last check
// keeps the marker with stale scores: Lodestar's Redis runs without
// persistence, as a cache should.

func (r *Redis) markerKey(name string) string { return r.prefix + ":marker:" + escape(name) }

// HasMarker reports whether the marker name is set.
func (r *Redis) HasMarker(ctx context.Context, name string) (bool, error) {
	n, err := r.client.Exists(ctx, r.markerKey(name)).Result()
	if err != nil {
		return false, fmt.Errorf("check cache marker %s: %w", name, err)
	}
	return n == 1, nil
}

// SetMarker sets the marker name, holding the time it was set.
func (r *Redis) SetMarker(ctx context.Context, name string) error {
	if err := r.client.Set(ctx, r.markerKey(name), time.Now().UTC().Format(time.RFC3339Nano), 0).Err(); err != nil {
		return fmt.Errorf("set cache marker %s: %w", name, err)
	}
	return nil
}
