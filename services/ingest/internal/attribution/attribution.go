// Package attribution decides which customer account each usage event
// belongs to, and remembers every user's last known account from group calls
// in the USER_ACCOUNTS KV bucket, with a bounded in-memory cache in front so
// attributing an event is not a KV round trip.
package attribution

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// maxConcurrentGets bounds the KV reads one request makes at once when its
// users are not cached (after a restart, or a batch of new users).
const maxConcurrentGets = 8

// Resolver attributes events to accounts. It is safe for concurrent use.
type Resolver struct {
	kv    jetstream.KeyValue
	cache *cache
}

// New returns a resolver over the USER_ACCOUNTS bucket caching up to
// cacheSize users.
func New(kv jetstream.KeyValue, cacheSize int) *Resolver {
	return &Resolver{kv: kv, cache: newCache(cacheSize)}
}

// Key is a user's key in USER_ACCOUNTS: the tenant and the user id (or the
// anonymous id when there is no user id) as a token.
func Key(tenant string, ev *eventv1.Event) string {
	user := ev.UserId
	if user == "" {
		user = ev.AnonymousId
	}
	return tenant + "." + natsx.Token(user)
}

// Groups maps USER_ACCOUNTS keys to the account a request's group calls
// left each user in.
type Groups map[string]string

// Attribute sets the account of every event of one request that names none.
// An event's own account wins: the groupId of a group call, or
// context.groupId (which intake.Prepare moved into account_id). Otherwise
// the event takes its user's account from the request's own group calls:
// the latest one before it, or, for events that precede the user's first
// group call, that first call. Only users with no group call in the request
// take their last known account from earlier requests; an event whose user
// has none stays without an account.
//
// Looking ahead to the request's first group call is what makes a retry
// attribute (and so partition and deduplicate) every event exactly as the
// first attempt did, although the first attempt already remembered the
// request's group calls. A client's request is one flush of calls made
// moments apart, so the account a user joins in it is the best attribution
// for its earlier events too.
//
// Attribute returns the accounts the request's group calls leave, for
// Remember once the events are stored.
func (r *Resolver) Attribute(ctx context.Context, tenant string, evs []*eventv1.Event) (Groups, error) {
	keys := make([]string, len(evs))
	current := Groups{}
	for i, ev := range evs {
		keys[i] = Key(tenant, ev)
		if ev.Type == eventv1.EventType_EVENT_TYPE_GROUP {
			if _, seen := current[keys[i]]; !seen {
				current[keys[i]] = ev.AccountId
			}
		}
	}
	var unresolved []int
	for i, ev := range evs {
		switch a, ok := current[keys[i]]; {
		case ev.Type == eventv1.EventType_EVENT_TYPE_GROUP:
			current[keys[i]] = ev.AccountId
		case ev.AccountId != "":
		case ok:
			ev.AccountId = a
		default:
			unresolved = append(unresolved, i)
		}
	}
	// Only users with group calls are in current, each now at its last one.
	if len(unresolved) == 0 {
		return current, nil
	}
	known, err := r.lastKnown(ctx, keys, unresolved)
	if err != nil {
		return nil, err
	}
	for _, i := range unresolved {
		evs[i].AccountId = known[keys[i]]
	}
	return current, nil
}

// lastKnown returns the last known account of the users of keys[i] for i
// in idx, from the cache or else the bucket.
func (r *Resolver) lastKnown(ctx context.Context, keys []string, idx []int) (map[string]string, error) {
	known := make(map[string]string, len(idx))
	var missing []string
	for _, i := range idx {
		k := keys[i]
		if _, done := known[k]; done {
			continue
		}
		a, ok := r.cache.get(k)
		known[k] = a
		if !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return known, nil
	}
	accounts := make([]string, len(missing))
	errs := make([]error, len(missing))
	sem := make(chan struct{}, maxConcurrentGets)
	var wg sync.WaitGroup
	for j, k := range missing {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			e, err := r.kv.Get(ctx, k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				errs[j] = fmt.Errorf("get last known account of %s: %w", k, err)
			default:
				accounts[j] = string(e.Value())
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for j, k := range missing {
		known[k] = accounts[j]
		r.cache.put(k, accounts[j])
	}
	return known, nil
}

// Remember stores the accounts of g as their users' last known accounts.
// Unchanged ones are not written again: a client that sends a group call
// with every session would otherwise cost a KV write each time.
func (r *Resolver) Remember(ctx context.Context, g Groups) error {
	for k, account := range g {
		if cached, ok := r.cache.get(k); ok && cached == account {
			continue
		}
		if _, err := r.kv.Put(ctx, k, []byte(account)); err != nil {
			return fmt.Errorf("remember account of %s: %w", k, err)
		}
		r.cache.put(k, account)
	}
	return nil
}

// Watch starts following changes made to the bucket (by this or another
// ingest replica), so that no replica keeps attributing a user to an account
// the user has left, and returns the loop that applies them to the cached
// users until ctx is done. Starting the watch before serving is what makes
// sure no change is missed.
func (r *Resolver) Watch(ctx context.Context) (apply func() error, err error) {
	w, err := r.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", natsx.BucketUserAccounts, err)
	}
	return func() error {
		err := natsx.WatchKV(ctx, w, nil, func(e jetstream.KeyValueEntry) error {
			account := ""
			if e.Operation() == jetstream.KeyValuePut {
				account = string(e.Value())
			}
			r.cache.update(e.Key(), account)
			return nil
		})
		if err != nil {
			return fmt.Errorf("watch %s: %w", natsx.BucketUserAccounts, err)
		}
		return nil
	}, nil
}
