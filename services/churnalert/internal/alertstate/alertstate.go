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
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
}

// New returns a store over the ALERT_STATE bucket that keeps the states of
// up to cached accounts in memory (none when cached is 0).
func New(js jetstream.JetStream, kv jetstream.KeyValue, cached int) *Store {
	return &Store{js: js, kv: kv, cache: newCache(cached)}
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
		if err != nil || strings.HasPrefix(key, streams.PositionPrefix) {
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

// cache holds the encoded states and revisions of the accounts used last,
// up to a size; the least recently used go first.
type cache struct {
	mu    sync.Mutex
	size  int
	items map[string]*list.Element
	order list.List // of *entry, most recent first
}

type entry struct {
	key string
	b   []byte
	rev uint64
}

func newCache(size int) *cache { return &cache{size: size, items: map[string]*list.Element{}} }

// get returns an account's encoded state and revision, rev 0 when the cache
// does not hold it. The bytes are never changed: callers decode them.
func (c *cache) get(key string) ([]byte, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, 0
	}
	c.order.MoveToFront(el)
	e := el.Value.(*entry)
	return e.b, e.rev
}

// put records an account's state at a revision, unless the cache already
// holds a later one (revisions of a key only grow).
func (c *cache) put(key string, b []byte, rev uint64) {
	if c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*entry)
		if rev > e.rev {
			e.b, e.rev = b, rev
		}
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&entry{key: key, b: b, rev: rev})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*entry).key)
	}
}

// stale forgets an account whose cached state was found stale at rev, unless
// a later write already replaced it.
func (c *cache) stale(key string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok && el.Value.(*entry).rev <= rev {
		c.order.Remove(el)
		delete(c.items, key)
	}
}

// drop forgets an account.
func (c *cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
	}
}
