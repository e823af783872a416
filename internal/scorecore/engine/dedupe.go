package engine

import (
	"fmt"
	"maps"
	"slices"
	"time"

	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// Deduplication: Apply counts an event once per tenant and message id within
// a window of receive time, so a client's retry counts once however it was
// batched and however late within the window it came (JetStream's own
// duplicate window is two minutes, and only catches a message published
// again whole).
//
// The window runs on the events' receive time (ingest's clock, else the
// event time for events that have none), never on the wall clock, so a
// replay makes the same decisions as the live run, and the ids seen are
// part of the snapshot: after a restart, an event is counted once whether
// its first copy came before or after the snapshot.
//
// Memory: each tenant keeps a map from a 64-bit hash of each message id
// (FNV-1a; two ids of one tenant colliding is a 1 in 2^44 chance among a
// million) to the hour it was received, about 36 bytes per id
// (BenchmarkDedupeMemory), so at most about 36·DedupeMaxIDs bytes per
// tenant, and 12 bytes per id in a snapshot. Ids are dropped when their hour
// leaves the window (it holds between 24 and 25 hours by default) or, when
// a tenant has DedupeMaxIDs ids, oldest hour first: a tenant receiving more
// than that within the window gets a shorter one.

// Dedupe defaults.
const (
	DefaultDedupeWindow = 24 * time.Hour
	DefaultDedupeMaxIDs = 1 << 20
)

// dedupe remembers the message ids of each tenant's recent events.
type dedupe struct {
	hours  uint32 // the window, in whole hours; 0 turns deduplication off
	maxIDs int
	seen   map[string]*seenIDs
}

// seenIDs are one tenant's recent message ids.
type seenIDs struct {
	ids    map[uint64]uint32 // hash of the message id to its hour of receipt
	newest uint32            // the latest hour of receipt seen
	oldest uint32            // no id in ids is older
}

// newDedupe returns the deduplication of a config: window rounded up to
// whole hours, and defaults for zero values; a negative window turns it off.
func newDedupe(window time.Duration, maxIDs int) (dedupe, error) {
	if window == 0 {
		window = DefaultDedupeWindow
	}
	if maxIDs == 0 {
		maxIDs = DefaultDedupeMaxIDs
	}
	if maxIDs < 0 {
		return dedupe{}, fmt.Errorf("negative DedupeMaxIDs %d", maxIDs)
	}
	d := dedupe{maxIDs: maxIDs, seen: map[string]*seenIDs{}}
	if window > 0 {
		d.hours = uint32((window + time.Hour - 1) / time.Hour)
	}
	return d, nil
}

// duplicate reports whether ev's message id was seen within the window, and
// remembers it when not. Events without a message id or any time are never
// duplicates.
func (d *dedupe) duplicate(ev *eventv1.Event) bool {
	id := ev.GetMessageId()
	ts := ev.GetReceivedTime()
	if ts == nil {
		ts = ev.GetEventTime()
	}
	if d.hours == 0 || id == "" || ts.GetSeconds() <= 0 {
		return false
	}
	hour := uint32(min(ts.GetSeconds()/3600, 1<<32-1))
	s := d.seen[ev.GetTenantId()]
	if s == nil {
		s = &seenIDs{ids: map[uint64]uint32{}, newest: hour, oldest: hour}
		d.seen[ev.GetTenantId()] = s
	}
	if hour > s.newest {
		s.newest = hour
		if s.newest-s.oldest > d.hours { // keep hours newest-window to newest
			s.evict(s.newest - d.hours - 1)
		}
	}
	h := hashString(id)
	if _, ok := s.ids[h]; ok {
		return true
	}
	for len(s.ids) >= d.maxIDs {
		if s.oldest >= s.newest { // the latest hour alone fills it
			clear(s.ids)
			break
		}
		s.evict(s.oldest)
	}
	s.ids[h] = hour
	s.oldest = min(s.oldest, hour)
	return false
}

// evict drops the ids of hours up to upTo and finds the oldest hour left.
func (s *seenIDs) evict(upTo uint32) {
	oldest := s.newest
	for h, at := range s.ids {
		if at <= upTo {
			delete(s.ids, h)
		} else {
			oldest = min(oldest, at)
		}
	}
	s.oldest = oldest
}

// seenSnapshot is one tenant's ids in a snapshot, in no particular order.
type seenSnapshot struct {
	Tenant         string
	Newest, Oldest uint32
	Hashes         []uint64
	Hours          []uint32
}

// snapshot returns the ids of every tenant, the tenants sorted.
func (d *dedupe) snapshot() []seenSnapshot {
	var out []seenSnapshot
	for _, id := range slices.Sorted(maps.Keys(d.seen)) {
		s := d.seen[id]
		ss := seenSnapshot{Tenant: id, Newest: s.newest, Oldest: s.oldest,
			Hashes: make([]uint64, 0, len(s.ids)), Hours: make([]uint32, 0, len(s.ids))}
		for h, at := range s.ids {
			ss.Hashes = append(ss.Hashes, h)
			ss.Hours = append(ss.Hours, at)
		}
		out = append(out, ss)
	}
	return out
}

// restore replaces the ids with those of a snapshot.
func (d *dedupe) restore(snap []seenSnapshot) error {
	seen := make(map[string]*seenIDs, len(snap))
	for _, ss := range snap {
		if len(ss.Hashes) != len(ss.Hours) {
			return fmt.Errorf("tenant %q: %d message id hashes, %d hours", ss.Tenant, len(ss.Hashes), len(ss.Hours))
		}
		s := &seenIDs{ids: make(map[uint64]uint32, len(ss.Hashes)), newest: ss.Newest, oldest: ss.Oldest}
		for i, h := range ss.Hashes {
			s.ids[h] = ss.Hours[i]
		}
		seen[ss.Tenant] = s
	}
	d.seen = seen
	return nil
}
