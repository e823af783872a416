// Package alertstate stores each account's AccountAlertState in the
// ALERT_STATE KV bucket with compare-and-set, and publishes the outbox a
// write carries.
//
// The outbox makes a transition atomic with its messages: the state and the
// events and deliveries it implies are stored by one write, published after
// it, and removed from the outbox once JetStream acknowledged them. A crash
// in between leaves them in the outbox, and the next update of the account
// (the redelivered message, a sweep, a rescan) publishes them again under the
// same Nats-Msg-Id; past the duplicate window, delivery ids keep deliveries
// from going out twice.
//
// A store keeps the last state it read or wrote of recent accounts, with its
// revision, so that an update of an account it knows costs no read: the
// write's compare-and-set on that revision still guards it. When someone
// else wrote the account in between (another replica serving an API call,
// an operator), the write fails, the cached state is dropped, and the update
// runs again on the state read from the bucket. A write that fails otherwise
// drops the account too: it may have been stored.
package alertstate

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

// maxAttempts bounds compare-and-set retries: conflicts come from another
// replica or an API call touching the same account at the same moment.
const maxAttempts = 20

// Store reads and writes account states.
type Store struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	cache *cache
	// turns serialises Update's read-modify-write of one account within the
	// store (sharded by key, so memory stays fixed): a process does not race
	// itself, and compare-and-set conflicts come only from other replicas.
	// Without it, writers of one busy account sharing a store starved each
	// other past maxAttempts under load (TestCacheConcurrent failed so).
	turns [64]sync.Mutex
	seed  maphash.Seed
}

// turn is the lock of an account's key.
func (s *Store) turn(key string) *sync.Mutex {
	return &s.turns[maphash.String(s.seed, key)%uint64(len(s.turns))]
}

// New returns a store over the ALERT_STATE bucket that keeps the states of
// up to cached accounts in memory (none when cached is 0).
func New(js jetstream.JetStream, kv jetstream.KeyValue, cached int) *Store {
	return &Store{js: js, kv: kv, cache: newCache(cached), seed: maphash.MakeSeed()}
}

// get returns an account's state and its revision, 0 when it has none: the
// cached one when there is one, else the stored one.
func (s *Store) get(ctx context.Context, key, tenant, account string) (*alertv1.AccountAlertState, uint64, error) {
	b, rev := s.cache.get(key)
	if rev == 0 {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return &alertv1.AccountAlertState{TenantId: tenant, AccountId: account}, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("get alert state %s: %w", key, err)
		}
		b, rev = e.Value(), e.Revision()
		s.cache.put(key, b, rev)
	}
	st := &alertv1.AccountAlertState{}
	if err := proto.Unmarshal(b, st); err != nil {
		s.cache.drop(key)
		return nil, 0, fmt.Errorf("decode alert state %s: %w", key, err)
	}
	return st, rev, nil
}

// Update applies fn to an account's state and stores the result when fn
// reports a change, retrying on write conflicts (fn runs again on the fresh
// state). Then it publishes the outbox. It returns the ALERTS stream
// sequence of the last event published, 0 when none was.
func (s *Store) Update(ctx context.Context, tenant, account string, fn func(*alertv1.AccountAlertState) (bool, error)) (uint64, error) {
	key := streams.StateKey(tenant, account)
	mu := s.turn(key)
	mu.Lock()
	defer mu.Unlock()
	for attempt := 1; ; attempt++ {
		st, rev, err := s.get(ctx, key, tenant, account)
		if err != nil {
			return 0, err
		}
		changed, err := fn(st)
		if err != nil {
			return 0, err
		}
		if changed {
			_, err := s.put(ctx, key, st, rev)
			if Conflict(err) && attempt < maxAttempts {
				contended(ctx, attempt)
				continue
			}
			if err != nil {
				return 0, err
			}
		}
		return s.flush(ctx, key, st)
	}
}

// contended waits a little before the next try of a write that lost a few
// compare-and-set races in a row, so that writers of one busy account take
// turns rather than starving one another.
func contended(ctx context.Context, attempt int) {
	if attempt < 3 {
		return
	}
	t := time.NewTimer(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Conflict reports whether a KV write lost a compare-and-set race.
func Conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// put stores a state if the account's revision is still rev (0: it has
// none), and returns the new revision. The cache follows: the new state on
// success, nothing on failure (a conflict means the cached state is stale;
// another failure may hide a write that happened).
func (s *Store) put(ctx context.Context, key string, st *alertv1.AccountAlertState, rev uint64) (uint64, error) {
	b, err := proto.Marshal(st)
	if err != nil {
		return 0, fmt.Errorf("encode alert state %s: %w", key, err)
	}
	var next uint64
	if rev == 0 {
		next, err = s.kv.Create(ctx, key, b)
	} else {
		next, err = s.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		if Conflict(err) {
			s.cache.stale(key, rev)
		} else {
			s.cache.drop(key)
		}
		return 0, fmt.Errorf("store alert state %s: %w", key, err)
	}
	s.cache.put(key, b, next)
	return next, nil
}

// flush publishes a stored state's outbox and then removes what it
// published from the stored state.
func (s *Store) flush(ctx context.Context, key string, st *alertv1.AccountAlertState) (uint64, error) {
	if len(st.GetOutbox()) == 0 {
		return 0, nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(st.GetOutbox()))
	for _, o := range st.GetOutbox() {
		m := nats.NewMsg(o.GetSubject())
		m.Data = o.GetData()
		for k, v := range o.GetHeaders() {
			m.Header.Set(k, v)
		}
		m.Header.Set(nats.MsgIdHdr, o.GetMsgId())
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return 0, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futures = append(futures, f)
	}
	var seq uint64
	published := map[string]bool{}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Stream == streams.Alerts {
				seq = max(seq, ack.Sequence)
			}
			published[f.Msg().Header.Get(nats.MsgIdHdr)] = true
		case err := <-f.Err():
			return 0, fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for publish acks: %w", ctx.Err())
		}
	}
	for attempt := 1; ; attempt++ {
		cur, rev, err := s.get(ctx, key, st.GetTenantId(), st.GetAccountId())
		if err != nil {
			return seq, err
		}
		n := len(cur.Outbox)
		cur.Outbox = slices.DeleteFunc(cur.Outbox, func(o *alertv1.OutboxMessage) bool { return published[o.GetMsgId()] })
		if len(cur.Outbox) == n {
			return seq, nil
		}
		_, err = s.put(ctx, key, cur, rev)
		if Conflict(err) && attempt < maxAttempts {
			contended(ctx, attempt)
			continue
		}
		return seq, err
	}
}

// Keys lists the (tenant, account) of every stored state, calling fn for
// each; fn's error stops the listing.
func (s *Store) Keys(ctx context.Context, fn func(tenant, account string) error) error {
	l, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list alert states: %w", err)
	}
	defer l.Stop()
	for key := range l.Keys() {
		tenant, account, err := streams.ParseStateKey(key)
		if err != nil || strings.HasPrefix(key, "_") { // positions and clocks
			continue
		}
		if err := fn(tenant, account); err != nil {
			return err
		}
	}
	return nil
}

// Position returns the stream sequence a consumer has applied everything up
// to, 0 when it has not started.
func (s *Store) Position(ctx context.Context, name string) (uint64, error) {
	e, err := s.kv.Get(ctx, streams.PositionKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get position %s: %w", name, err)
	}
	seq, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("position %s: %w", name, err)
	}
	return seq, nil
}

// SetPosition stores a consumer's position.
func (s *Store) SetPosition(ctx context.Context, name string, seq uint64) error {
	if _, err := s.kv.Put(ctx, streams.PositionKey(name), []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("store position %s: %w", name, err)
	}
	return nil
}

// Clock is a tenant's clock as stored: its event-time watermark, and
// whether it has caught up with the wall clock (see the pipeline).
type Clock struct {
	Watermark time.Time
	Live      bool
	// LiveSince is when the tenant caught up (zero: long ago).
	LiveSince time.Time
}

// SetClock stores a tenant's clock in a partition (scope).
func (s *Store) SetClock(ctx context.Context, scope, tenant string, c Clock) error {
	v := strconv.FormatInt(c.Watermark.UnixNano(), 10) + " " + strconv.FormatBool(c.Live) + " " + strconv.FormatInt(c.LiveSince.UnixNano(), 10)
	if _, err := s.kv.Put(ctx, streams.ClockKey(scope, tenant), []byte(v)); err != nil {
		return fmt.Errorf("store clock of %s: %w", tenant, err)
	}
	return nil
}

// Clocks returns every tenant's stored clock in a partition (scope).
func (s *Store) Clocks(ctx context.Context, scope string) (map[string]Clock, error) {
	out := map[string]Clock{}
	l, err := s.kv.ListKeysFiltered(ctx, streams.ClockKey(scope, "*"))
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list clocks: %w", err)
	}
	defer l.Stop()
	for key := range l.Keys() {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get clock %s: %w", key, err)
		}
		f := strings.Fields(string(e.Value()))
		var wm, since int64
		if len(f) > 0 {
			wm, err = strconv.ParseInt(f[0], 10, 64)
		}
		if err == nil && len(f) > 2 {
			since, err = strconv.ParseInt(f[2], 10, 64)
		}
		if err != nil || len(f) < 2 {
			return nil, fmt.Errorf("clock %s: %q is not a clock", key, e.Value())
		}
		c := Clock{Watermark: time.Unix(0, wm).UTC(), Live: f[1] == "true"}
		if since > 0 {
			c.LiveSince = time.Unix(0, since).UTC()
		}
		out[strings.TrimPrefix(key, streams.ClockKey(scope, ""))] = c
	}
	return out, nil
}

// cache holds the encoded states and revisions of the accounts used last,
// up to a size; the least recently used go first. A size below 1 holds
// nothing.
type cache struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, cached] // nil when the size is below 1
}

type cached struct {
	b   []byte
	rev uint64
}

func newCache(size int) *cache {
	l, _ := simplelru.NewLRU[string, cached](size, nil) // nil for a size < 1
	return &cache{lru: l}
}

// get returns an account's encoded state and revision, rev 0 when the cache
// does not hold it. The bytes are never changed: callers decode them.
func (c *cache) get(key string) ([]byte, uint64) {
	if c.lru == nil {
		return nil, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.lru.Get(key)
	return e.b, e.rev
}

// put records an account's state at a revision, unless the cache already
// holds a later one (revisions of a key only grow).
func (c *cache) put(key string, b []byte, rev uint64) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Get(key); ok && e.rev >= rev {
		return
	}
	c.lru.Add(key, cached{b, rev})
}

// stale forgets an account whose cached state was found stale at rev, unless
// a later write already replaced it.
func (c *cache) stale(key string, rev uint64) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Peek(key); ok && e.rev <= rev {
		c.lru.Remove(key)
	}
}

// drop forgets an account.
func (c *cache) drop(key string) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(key)
}

// Change is one update of UpdateMany: fn applies it to the account's state
// and reports whether it changed it.
type Change struct {
	Tenant, Account string
	Fn              func(*alertv1.AccountAlertState) (bool, error)
}

// group is the changes of one account in a batch, and where it stands.
type group struct {
	key, tenant, account string
	idx                  []int // of the changes, in order
	st                   *alertv1.AccountAlertState
	rev                  uint64 // before the batch
	b                    []byte // the state written
	ok                   bool   // written (or nothing to write): only the outbox is left
}

// UpdateMany applies a batch of changes as Update applies each, with the
// same guarantees, in fewer round trips: the states it does not cache are
// read together, each account's changes are applied in order to its state
// and written once, every write is in flight at the same time (each a
// compare-and-set on the account's revision), and then every outbox. An
// account whose batched write or publication fails has its changes applied
// again one by one with Update, in order, up to the first that fails; so a
// change must recognise itself as applied (stream changes do, by the
// sequence the state records), as it must for Update's callers that retry.
// It returns each change's error, nil for one applied. The writes go to the
// bucket's own subjects ($KV.<bucket>.<key>): no JetStream domain prefix.
func (s *Store) UpdateMany(ctx context.Context, changes []Change) []error {
	errs := make([]error, len(changes))
	var groups []*group
	byKey := map[string]*group{}
	for i, c := range changes {
		key := streams.StateKey(c.Tenant, c.Account)
		g := byKey[key]
		if g == nil {
			g = &group{key: key, tenant: c.Tenant, account: c.Account}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	s.getMany(ctx, groups)

	// Apply and write.
	type write struct {
		g *group
		f jetstream.PubAckFuture
	}
	var writes []write
	for _, g := range groups {
		if g.st == nil {
			continue // not read: applied one by one below
		}
		changed, failed := false, false
		for _, i := range g.idx {
			ch, err := changes[i].Fn(g.st)
			if err != nil {
				failed = true
				break
			}
			changed = changed || ch
		}
		if failed {
			g.st = nil // the changes run again, one by one, on a fresh state
			continue
		}
		if !changed {
			g.ok = true
			continue
		}
		b, err := proto.Marshal(g.st)
		if err != nil {
			g.st = nil
			continue
		}
		m := nats.NewMsg("$KV." + s.kv.Bucket() + "." + g.key)
		m.Data = b
		f, err := s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(g.rev))
		if err != nil {
			s.cache.drop(g.key)
			g.st = nil
			continue
		}
		g.b = b
		writes = append(writes, write{g, f})
	}
	for _, w := range writes {
		select {
		case ack := <-w.f.Ok():
			s.cache.put(w.g.key, w.g.b, ack.Sequence)
			w.g.ok = true
		case err := <-w.f.Err():
			if Conflict(err) || isWrongLastSequence(err) {
				s.cache.stale(w.g.key, w.g.rev)
			} else {
				s.cache.drop(w.g.key)
			}
			w.g.st = nil
		case <-ctx.Done():
			s.cache.drop(w.g.key)
			w.g.st = nil
		}
	}

	// Publish the outboxes together, then remove them account by account.
	var flushes sync.WaitGroup
	for _, g := range groups {
		switch {
		case g.ok && len(g.st.GetOutbox()) == 0:
		case g.ok:
			flushes.Go(func() {
				if _, err := s.flush(ctx, g.key, g.st); err != nil {
					for _, i := range g.idx {
						errs[i] = err
					}
				}
			})
		default:
			flushes.Go(func() {
				for n, i := range g.idx {
					if _, err := s.Update(ctx, g.tenant, g.account, changes[i].Fn); err != nil {
						for _, j := range g.idx[n:] {
							errs[j] = err
						}
						return
					}
				}
			})
		}
	}
	flushes.Wait()
	return errs
}

// getMany reads the states of the groups at the same time; a group whose
// state could not be read keeps st nil.
func (s *Store) getMany(ctx context.Context, groups []*group) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, g := range groups {
		if b, rev := s.cache.get(g.key); rev != 0 {
			st := &alertv1.AccountAlertState{}
			if proto.Unmarshal(b, st) == nil {
				g.st, g.rev = st, rev
				continue
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st, rev, err := s.get(ctx, g.key, g.tenant, g.account)
			if err == nil {
				g.st, g.rev = st, rev
			}
		})
	}
	wg.Wait()
}

// isWrongLastSequence reports a compare-and-set failure as an asynchronous
// publish reports it (not mapped to ErrKeyExists as KeyValue does).
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
