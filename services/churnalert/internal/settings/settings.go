// Package settings keeps the tenants' alert rules, on-call schedules and
// channels in the ALERT_SETTINGS KV bucket (key tenant.<kind>.<id>) and in
// memory: a KV watch keeps every replica's copy current, and a replica's
// own writes apply at once.
package settings

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/oncall"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/rules"
)

// Kinds of settings, the middle token of their keys.
const (
	KindRule     = "rule"
	KindSchedule = "schedule"
	KindChannel  = "channel"
)

// ErrExists is returned when creating something whose id is taken.
var ErrExists = errors.New("already exists")

type entry struct {
	rev uint64
	msg proto.Message // nil once deleted
}

// Store holds the settings. Messages it returns are shared: read them, do
// not change them.
type Store struct {
	kv       jetstream.KeyValue
	defaults map[string]*alertv1.Rule

	mu      sync.RWMutex
	entries map[string]map[string]map[string]*entry // tenant, kind, id
	ready   atomic.Bool
}

// New returns a store over the ALERT_SETTINGS bucket; Run loads it.
func New(kv jetstream.KeyValue) *Store {
	s := &Store{kv: kv, defaults: map[string]*alertv1.Rule{}, entries: map[string]map[string]map[string]*entry{}}
	for _, r := range rules.Defaults() {
		s.defaults[r.GetRuleId()] = r
	}
	return s
}

// Ready reports whether the stored settings are loaded.
func (s *Store) Ready() bool { return s.ready.Load() }

// Run follows the bucket until ctx is done.
func (s *Store) Run(ctx context.Context) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.kv.Bucket(), err)
	}
	loaded := func() error { s.ready.Store(true); return nil }
	if err := natsx.WatchKV(ctx, w, loaded, func(e jetstream.KeyValueEntry) error { s.applyEntry(e); return nil }); err != nil {
		return fmt.Errorf("watch %s: %w", s.kv.Bucket(), err)
	}
	return nil
}

func (s *Store) applyEntry(e jetstream.KeyValueEntry) {
	parts := strings.SplitN(e.Key(), ".", 3)
	if len(parts) != 3 {
		return
	}
	var msg proto.Message
	if e.Operation() == jetstream.KeyValuePut {
		switch parts[1] {
		case KindRule:
			msg = &alertv1.Rule{}
		case KindSchedule:
			msg = &alertv1.OnCallSchedule{}
		case KindChannel:
			msg = &alertv1.Channel{}
		default:
			return
		}
		if err := proto.Unmarshal(e.Value(), msg); err != nil {
			return // only this service writes the bucket, always valid
		}
	}
	s.apply(parts[0], parts[1], parts[2], e.Revision(), msg)
}

// apply records a value (nil for a deletion) unless a later one is known.
func (s *Store) apply(tenant, kind, id string, rev uint64, msg proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.entries[tenant]
	if t == nil {
		t = map[string]map[string]*entry{}
		s.entries[tenant] = t
	}
	k := t[kind]
	if k == nil {
		k = map[string]*entry{}
		t[kind] = k
	}
	if cur := k[id]; cur != nil && cur.rev >= rev {
		return
	}
	k[id] = &entry{rev: rev, msg: msg}
}

func key(tenant, kind, id string) string { return tenant + "." + kind + "." + id }

// Create stores a new setting; ErrExists when the id is taken.
func (s *Store) Create(ctx context.Context, tenant, kind, id string, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	rev, err := s.kv.Create(ctx, key(tenant, kind, id), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("create %s %s: %w", kind, id, err)
	}
	s.apply(tenant, kind, id, rev, m)
	return nil
}

// Put stores a setting, replacing any.
func (s *Store) Put(ctx context.Context, tenant, kind, id string, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	rev, err := s.kv.Put(ctx, key(tenant, kind, id), b)
	if err != nil {
		return fmt.Errorf("store %s %s: %w", kind, id, err)
	}
	s.apply(tenant, kind, id, rev, m)
	return nil
}

// Delete removes a setting; deleting what does not exist is no error.
func (s *Store) Delete(ctx context.Context, tenant, kind, id string) error {
	if s.stored(tenant, kind, id) == nil {
		return nil
	}
	if err := s.kv.Delete(ctx, key(tenant, kind, id)); err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, id, err)
	}
	// Delete does not return the marker's revision; keeping the old one
	// ignores a late echo of the deleted value, and the watch brings the
	// marker itself.
	s.mu.Lock()
	s.entries[tenant][kind][id].msg = nil
	s.mu.Unlock()
	return nil
}

func (s *Store) stored(tenant, kind, id string) proto.Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.entries[tenant][kind][id]; e != nil {
		return e.msg
	}
	return nil
}

func list[T proto.Message](s *Store, tenant, kind string) map[string]T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]T{}
	for id, e := range s.entries[tenant][kind] {
		if e.msg != nil {
			out[id] = e.msg.(T)
		}
	}
	return out
}

func sorted[T any](m map[string]T) []T {
	out := make([]T, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[id])
	}
	return out
}

// Rules are a tenant's rules, by id: the shipped ones overlaid with the
// tenant's versions, and the tenant's own.
func (s *Store) Rules(tenant string) []*alertv1.Rule {
	m := list[*alertv1.Rule](s, tenant, KindRule)
	for id, r := range s.defaults {
		if _, ok := m[id]; !ok {
			m[id] = r
		}
	}
	return sorted(m)
}

// Rule returns one of a tenant's rules, nil when there is none.
func (s *Store) Rule(tenant, id string) *alertv1.Rule {
	if r, ok := s.stored(tenant, KindRule, id).(*alertv1.Rule); ok {
		return r
	}
	return s.defaults[id]
}

// Shipped reports whether a rule id is one of the shipped rules.
func (s *Store) Shipped(id string) bool { return s.defaults[id] != nil }

// Schedules are a tenant's on-call schedules, by id.
func (s *Store) Schedules(tenant string) []*alertv1.OnCallSchedule {
	return sorted(list[*alertv1.OnCallSchedule](s, tenant, KindSchedule))
}

// Schedule returns a schedule, nil when there is none.
func (s *Store) Schedule(tenant, id string) *alertv1.OnCallSchedule {
	sc, _ := s.stored(tenant, KindSchedule, id).(*alertv1.OnCallSchedule)
	return sc
}

// Channels are a tenant's channels, by id.
func (s *Store) Channels(tenant string) []*alertv1.Channel {
	return sorted(list[*alertv1.Channel](s, tenant, KindChannel))
}

// Channel returns a channel, nil when there is none.
func (s *Store) Channel(tenant, id string) *alertv1.Channel {
	c, _ := s.stored(tenant, KindChannel, id).(*alertv1.Channel)
	return c
}

// OnCall returns who is on call at t on a schedule, or on the tenant's first
// schedule when scheduleID is empty; nil when nobody is.
func (s *Store) OnCall(tenant, scheduleID string, t time.Time) *alertv1.Person {
	sc := s.Schedule(tenant, scheduleID)
	if scheduleID == "" {
		if all := s.Schedules(tenant); len(all) > 0 {
			sc = all[0]
		}
	}
	if sc == nil {
		return nil
	}
	return oncall.OnCall(sc, t)
}
