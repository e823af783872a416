package cache

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A marker tells a writer whether the cache still holds what it wrote: the
// writer sets it once the cache holds all its scores, and finds it gone
// when Redis lost its data (a restart without persistence, a flush, a
// failover to an empty replica). The writer then writes all its scores
// again. A Redis restored from a dump older than the marker's last check
// keeps the marker with stale scores: Lodestar's Redis runs without
// persistence, as a cache should.
//
// A Redis Cluster loses data one master at a time, so there a marker is a
// key per slot range of the cluster's slot map, in the range's first slot:
// each master holds the keys of its ranges and loses them with its data. A
// range that moved or split since the marker was set (a resharding) finds
// no key of its own, and the writer writes its scores again: needless but
// harmless, where a marker surviving a master's loss would not be.

// markerKeys returns the keys of the marker name.
func (r *Redis) markerKeys(ctx context.Context, name string) ([]string, error) {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return []string{r.prefix + ":marker:" + escape(name)}, nil
	}
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("read the slot map: %w", err)
	}
	tags := slotTags()
	keys := make([]string, len(ranges))
	for i, s := range ranges {
		keys[i] = r.prefix + ":marker:{" + tags[s.Start] + "}:" + escape(name)
	}
	return keys, nil
}

// HasMarker reports whether the marker name is set: on every master of a
// cluster.
func (r *Redis) HasMarker(ctx context.Context, name string) (bool, error) {
	keys, err := r.markerKeys(ctx, name)
	if err != nil {
		return false, fmt.Errorf("check cache marker %s: %w", name, err)
	}
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, k)
		}
		return nil
	}); err != nil {
		return false, fmt.Errorf("check cache marker %s: %w", name, err)
	}
	for _, c := range cmds {
		if c.Val() != 1 {
			return false, nil
		}
	}
	return true, nil
}

// SetMarker sets the marker name, holding the time it was set.
func (r *Redis) SetMarker(ctx context.Context, name string) error {
	keys, err := r.markerKeys(ctx, name)
	if err != nil {
		return fmt.Errorf("set cache marker %s: %w", name, err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Set(ctx, k, now, 0)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("set cache marker %s: %w", name, err)
	}
	return nil
}

// numSlots is the number of hash slots of a Redis Cluster.
const numSlots = 16384

// slotTags maps every hash slot to a hash tag in it: the shortest decimal
// number that Redis Cluster hashes there.
var slotTags = sync.OnceValue(func() []string {
	tags := make([]string, numSlots)
	for i, left := 0, numSlots; left > 0; i++ {
		tag := strconv.Itoa(i)
		if s := keySlot(tag); tags[s] == "" {
			tags[s] = tag
			left--
		}
	}
	return tags
})

// keySlot is the hash slot of a key's hash tag (or of the key without one):
// CRC-16/XMODEM mod 16384, as Redis Cluster computes it.
func keySlot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % numSlots
}
