package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	"github.com/lodestar-cs/lodestar/services/ingest/internal/publish"
)

// maxConflicts bounds the optimistic retries of one read-modify-write: more
// conflicts than this on one account within one call means a writer loop.
const maxConflicts = 5

// errNotFound reports a missing account.
var errNotFound = errors.New("account not found")

// Store keeps accounts in the ACCOUNTS bucket and publishes their changes.
type Store struct {
	partitions uint32
	kv         jetstream.KeyValue
	js         jetstream.JetStream
	propagator propagation.TextMapPropagator
}

// NewStore returns a store over the ACCOUNTS bucket kv, publishing changes
// on the subjects of partitions partitions.
func NewStore(kv jetstream.KeyValue, js jetstream.JetStream, propagator propagation.TextMapPropagator, partitions int) *Store {
	return &Store{kv: kv, js: js, propagator: propagator, partitions: uint32(partitions)}
}

// key is an account's key: tenant.<account token>.
func key(tenant, accountID string) string { return tenant + "." + natsx.Token(accountID) }

// get returns an account, or errNotFound, and the KV revision of its
// entry.
//
// An account's revision (Account.revision) is its own count of stored
// versions, kept in the record: the KV's revisions number every tenant's
// writes to the bucket, so they would tell one tenant how busy the others
// are. The KV revision is only used to update the entry safely. Records
// stored before the count was kept show 0 until their next change.
func (s *Store) get(ctx context.Context, tenant, accountID string) (*accountv1.Account, uint64, error) {
	e, err := s.kv.Get(ctx, key(tenant, accountID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get account %q: %w", accountID, err)
	}
	a, err := decode(e)
	return a, e.Revision(), err
}

func decode(e jetstream.KeyValueEntry) (*accountv1.Account, error) {
	a := &accountv1.Account{}
	if err := proto.Unmarshal(e.Value(), a); err != nil {
		return nil, fmt.Errorf("decode account %s: %w", e.Key(), err)
	}
	return a, nil
}

// update applies change to an account's current record (nil when there is
// none) and stores the result, retrying when another writer got there
// first. change returns the new record, or nil to leave the stored one as
// it is. update returns the stored record with its revision.
func (s *Store) update(ctx context.Context, tenant, accountID string, change func(old *accountv1.Account) (*accountv1.Account, error)) (*accountv1.Account, error) {
	k := key(tenant, accountID)
	for range maxConflicts {
		old, kvRev, err := s.get(ctx, tenant, accountID)
		if err != nil && !errors.Is(err, errNotFound) {
			return nil, err
		}
		next, err := change(old)
		if err != nil {
			return nil, err
		}
		if next == nil {
			return old, nil
		}
		next.TenantId, next.Revision = tenant, old.GetRevision()+1
		data, err := proto.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("marshal account %q: %w", accountID, err)
		}
		if old == nil {
			_, err = s.kv.Create(ctx, k, data)
		} else {
			_, err = s.kv.Update(ctx, k, data, kvRev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store account %q: %w", accountID, err)
		}
		return next, nil
	}
	return nil, fmt.Errorf("store account %q: %d concurrent updates in a row", accountID, maxConflicts)
}

// list returns every account of tenant, in no order. It reads them with one
// KV watch (an ordered consumer streaming the latest value of each key),
// not a round trip per key.
func (s *Store) list(ctx context.Context, tenant string) ([]*accountv1.Account, error) {
	w, err := s.kv.WatchFiltered(ctx, []string{tenant + ".>"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	var out []*accountv1.Account
	err = natsx.ReadKV(ctx, w, func(e jetstream.KeyValueEntry) error {
		a, err := decode(e)
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// change is one AccountChange to publish with its deduplication id.
type change struct {
	msg   *accountv1.AccountChange
	msgID string
}

// revisionChange is the change of an account to a new revision; a retried
// publish of it is stored once.
func revisionChange(a *accountv1.Account, now time.Time) change {
	return change{
		msg:   &accountv1.AccountChange{TenantId: a.TenantId, Account: a, ChangeTime: timestamppb.New(now)},
		msgID: natsx.MsgID(a.TenantId, "account", a.AccountId, fmt.Sprint(a.Revision)),
	}
}

// publish publishes changes on their accounts' subjects and waits for
// every PubAck.
func (s *Store) publish(ctx context.Context, changes []change) error {
	msgs := make([]*nats.Msg, len(changes))
	for i, c := range changes {
		data, err := proto.Marshal(c.msg)
		if err != nil {
			return fmt.Errorf("marshal account change: %w", err)
		}
		msgs[i] = &nats.Msg{
			Subject: natsx.AccountChangeSubject(c.msg.TenantId, c.msg.Account.AccountId, s.partitions),
			Data:    data,
			Header: nats.Header{
				jetstream.MsgIDHeader: []string{c.msgID},
				publish.TenantHeader:  []string{c.msg.TenantId},
			},
		}
		natsx.InjectTrace(ctx, s.propagator, msgs[i])
	}
	if err := natsx.PublishAll(ctx, s.js, msgs); err != nil {
		return fmt.Errorf("publish %d account changes: %w", len(msgs), err)
	}
	return nil
}
