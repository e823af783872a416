// Package quota bounds the customer accounts each tenant's events create:
// how many in all, and how many new ones an hour. Every account id scoring
// sees costs it memory for good (a silent account decays, it is never
// dropped), so a tenant sending random account ids would otherwise grow
// scoring without bound.
//
// The accounts each tenant's events named are keys of the KV bucket
// TENANT_ACCOUNTS, "<tenant>.<hash of the account id>" with the time the
// account was first seen. Every ingest replica watches the bucket and keeps
// each tenant's set of account hashes in memory (24-30 bytes an
// account), so deciding whether an event's account is new costs no round
// trip; only a new account costs a KV write.
//
// Replicas decide concurrently on what they know: a tenant may exceed a
// limit by the new accounts of the requests in flight on other replicas at
// that moment, never more.
package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// Limits are each tenant's account limits; zero means no limit.
type Limits struct {
	// MaxAccounts bounds the distinct accounts a tenant's events name.
	MaxAccounts int
	// NewAccountsPerHour bounds the accounts first named in any hour.
	NewAccountsPerHour int
}

// Error reports a request refused because of a limit.
type Error struct {
	Tenant string
	// New is the number of accounts the request would have added.
	New int
	// Limit names the limit and Max its value.
	Limit string
	Max   int
	// RetryAfter is when the request would fit the hourly limit again; zero
	// for the total limit, which waiting does not lift.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("tenant %s: %d new accounts would exceed the limit of %d %s", e.Tenant, e.New, e.Max, e.Limit)
}

// Accounts tracks the accounts of every tenant. It is safe for concurrent
// use.
type Accounts struct {
	kv     jetstream.KeyValue
	limits Limits
	now    func() time.Time

	mu      sync.Mutex
	tenants map[string]*tenant
}

// tenant is one tenant's accounts.
type tenant struct {
	known map[uint64]struct{}
	// perMinute counts the accounts first seen in each of the last 60
	// minutes, by unix minute mod 60; minute says which minute each slot is.
	perMinute [60]int
	minute    [60]int64
}

// New returns the tracker over the TENANT_ACCOUNTS bucket; Follow loads it.
func New(kv jetstream.KeyValue, limits Limits) *Accounts {
	return &Accounts{kv: kv, limits: limits, now: time.Now, tenants: map[string]*tenant{}}
}

// key is an account's key: the tenant and the account id's hash.
func key(tenantID string, hash uint64) string {
	return tenantID + "." + strconv.FormatUint(hash, 16)
}

// hash is 64-bit FNV-1a: stable across replicas and restarts.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func (a *Accounts) tenant(id string) *tenant {
	t := a.tenants[id]
	if t == nil {
		t = &tenant{known: map[uint64]struct{}{}}
		a.tenants[id] = t
	}
	return t
}

// lastHour returns the accounts first seen in the hour up to minute now.
func (t *tenant) lastHour(now int64) int {
	n := 0
	for i, m := range t.minute {
		if m > now-60 && m <= now {
			n += t.perMinute[i]
		}
	}
	return n
}

// add records accounts first seen in minute m.
func (t *tenant) add(m int64, n int) {
	i := m % 60
	if t.minute[i] != m {
		t.minute[i], t.perMinute[i] = m, 0
	}
	t.perMinute[i] += n
}

// retryAfter is how long until enough of the last hour's accounts age out
// for n more to fit max.
func (t *tenant) retryAfter(now int64, n, max int) time.Duration {
	excess := t.lastHour(now) + n - max
	for m := now - 59; m <= now; m++ {
		if i := m % 60; t.minute[i] == m {
			excess -= t.perMinute[i]
		}
		if excess <= 0 {
			return time.Duration(m+60-now) * time.Minute
		}
	}
	return time.Hour // n alone exceeds the hourly limit
}

// Admit records the accounts of a request of tenantID, in the KV bucket and
// in memory, or refuses the request with an *Error when the new ones among
// them exceed a limit. Empty ids are not accounts.
func (a *Accounts) Admit(ctx context.Context, tenantID string, accountIDs []string) error {
	now := a.now()
	minute := now.Unix() / 60
	a.mu.Lock()
	t := a.tenant(tenantID)
	var fresh []uint64
	for _, id := range accountIDs {
		if id == "" {
			continue
		}
		h := hash(id)
		if _, ok := t.known[h]; !ok {
			t.known[h] = struct{}{} // also dedupes the request's own repeats
			fresh = append(fresh, h)
		}
	}
	var err *Error
	switch l := a.limits; {
	case len(fresh) == 0:
	case l.MaxAccounts > 0 && len(t.known) > l.MaxAccounts:
		err = &Error{Tenant: tenantID, New: len(fresh), Limit: "accounts in all", Max: l.MaxAccounts}
	case l.NewAccountsPerHour > 0 && t.lastHour(minute)+len(fresh) > l.NewAccountsPerHour:
		err = &Error{Tenant: tenantID, New: len(fresh), Limit: "new accounts an hour", Max: l.NewAccountsPerHour,
			RetryAfter: t.retryAfter(minute, len(fresh), l.NewAccountsPerHour)}
	default:
		t.add(minute, len(fresh))
	}
	if err != nil {
		for _, h := range fresh {
			delete(t.known, h)
		}
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	at := []byte(strconv.FormatInt(now.Unix(), 10))
	for _, h := range fresh {
		if _, err := a.kv.Create(ctx, key(tenantID, h), at); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			// Kept in memory: the client's retry is not charged again here.
			return fmt.Errorf("record new account of tenant %s: %w", tenantID, err)
		}
	}
	return nil
}

// Follow loads the bucket's accounts and starts following those other
// replicas record, and returns the loop that applies them until ctx is
// done. It returns once the accounts stored so far are loaded.
func (a *Accounts) Follow(ctx context.Context) (follow func() error, err error) {
	w, err := a.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", natsx.BucketTenantAccounts, err)
	}
	apply := func(e jetstream.KeyValueEntry) {
		tenantID, hexHash, ok := strings.Cut(e.Key(), ".")
		h, err := strconv.ParseUint(hexHash, 16, 64)
		if !ok || err != nil || e.Operation() != jetstream.KeyValuePut {
			return
		}
		sec, _ := strconv.ParseInt(string(e.Value()), 10, 64)
		a.mu.Lock()
		defer a.mu.Unlock()
		t := a.tenant(tenantID)
		if _, ok := t.known[h]; !ok {
			t.known[h] = struct{}{}
			if m := sec / 60; m > a.now().Unix()/60-60 {
				t.add(m, 1)
			}
		}
	}
	loaded, done := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	go func() {
		done <- natsx.WatchKV(ctx, w,
			func() error { once.Do(func() { close(loaded) }); return nil },
			func(e jetstream.KeyValueEntry) error { apply(e); return nil })
	}()
	select {
	case <-loaded:
	case err := <-done:
		if err == nil { // ctx done first
			err = ctx.Err()
		}
		return nil, fmt.Errorf("watch %s: %w", natsx.BucketTenantAccounts, err)
	}
	return func() error {
		if err := <-done; err != nil {
			return fmt.Errorf("watch %s: %w", natsx.BucketTenantAccounts, err)
		}
		return nil
	}, nil
}
