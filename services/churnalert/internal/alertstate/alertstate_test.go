package alertstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert/internal/streams"
)

const tenant = "t1"

// bucket starts NATS with ALERTS and ALERT_STATE.
func bucket(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := streams.Limits{AlertsMaxAge: time.Hour, DuplicateWindow: time.Minute, Replicas: 1}
	if err := natsx.EnsureStreams(ctx, js, l.AlertsStream()); err != nil {
		t.Fatal(err)
	}
	kv, err := natsx.EnsureKeyValue(ctx, js, l.StateBucket())
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// stored reads an account's state from the bucket, not through a store.
func stored(t *testing.T, kv jetstream.KeyValue, account string) *alertv1.AccountAlertState {
	t.Helper()
	e, err := kv.Get(context.Background(), streams.StateKey(tenant, account))
	if err != nil {
		t.Fatal(err)
	}
	st := &alertv1.AccountAlertState{}
	if err := proto.Unmarshal(e.Value(), st); err != nil {
		t.Fatal(err)
	}
	return st
}

func update(t *testing.T, s *Store, account string, fn func(*alertv1.AccountAlertState) (bool, error)) {
	t.Helper()
	if _, err := s.Update(context.Background(), tenant, account, fn); err != nil {
		t.Fatal(err)
	}
}

// A cached state that someone else wrote over (an API call served by
// another replica) fails the compare-and-set; the update then runs again on
// the stored state, so neither write is lost.
func TestCacheConflict(t *testing.T) {
	js, kv := bucket(t)
	worker, other := New(js, kv, 100), New(js, kv, 100)
	update(t, worker, "a", func(st *alertv1.AccountAlertState) (bool, error) { st.ScoresSeq = 1; return true, nil })
	update(t, worker, "a", func(st *alertv1.AccountAlertState) (bool, error) { st.ScoresSeq = 2; return true, nil })
	update(t, other, "a", func(st *alertv1.AccountAlertState) (bool, error) {
		if st.ScoresSeq != 2 {
			t.Errorf("other store read scores seq %d, want 2", st.ScoresSeq)
		}
		st.AccountChangesSeq = 7
		return true, nil
	})
	var seen []uint64
	update(t, worker, "a", func(st *alertv1.AccountAlertState) (bool, error) {
		seen = append(seen, st.AccountChangesSeq)
		st.ScoresSeq = 3
		return true, nil
	})
	if fmt.Sprint(seen) != "[0 7]" {
		t.Errorf("account changes seq seen by the worker's tries: %v, want [0 7] (the cached state, then the stored one)", seen)
	}
	// An operator's write straight to the bucket is caught the same way.
	b, _ := proto.Marshal(&alertv1.AccountAlertState{TenantId: tenant, AccountId: "a", ScoresSeq: 3, AccountChangesSeq: 9})
	if _, err := kv.Put(context.Background(), streams.StateKey(tenant, "a"), b); err != nil {
		t.Fatal(err)
	}
	update(t, worker, "a", func(st *alertv1.AccountAlertState) (bool, error) { st.ScoresSeq = 4; return true, nil })
	if got := stored(t, kv, "a"); got.ScoresSeq != 4 || got.AccountChangesSeq != 9 {
		t.Errorf("stored scores seq %d, account changes seq %d; want 4 and 9", got.ScoresSeq, got.AccountChangesSeq)
	}
}

// Workers and API calls updating the same accounts through one store, and
// another store at the same time, lose no update.
func TestCacheConcurrent(t *testing.T) {
	js, kv := bucket(t)
	shared, other := New(js, kv, 100), New(js, kv, 100)
	const n = 60
	var wg sync.WaitGroup
	for _, account := range []string{"a", "b"} {
		wg.Go(func() {
			for range n {
				update(t, shared, account, func(st *alertv1.AccountAlertState) (bool, error) { st.ScoresSeq++; return true, nil })
			}
		})
		wg.Go(func() {
			for range n {
				update(t, shared, account, func(st *alertv1.AccountAlertState) (bool, error) { st.AccountChangesSeq++; return true, nil })
			}
		})
		wg.Go(func() {
			for range n {
				update(t, other, account, func(st *alertv1.AccountAlertState) (bool, error) {
					if st.Score == nil {
						st.Score = &scoringv1.HealthScore{}
					}
					st.Score.Score++
					return true, nil
				})
			}
		})
	}
	wg.Wait()
	for _, account := range []string{"a", "b"} {
		if got := stored(t, kv, account); got.ScoresSeq != n || got.AccountChangesSeq != n || got.GetScore().GetScore() != n {
			t.Errorf("%s: counters %d, %d, %v; want %d each", account, got.ScoresSeq, got.AccountChangesSeq, got.GetScore().GetScore(), n)
		}
	}
}

// A restarted process (a fresh store) reads what the last one stored; a
// small cache forgets accounts and reads them again; a failed change leaves
// the cached state as it was.
func TestCacheRestartEvictionAndFailure(t *testing.T) {
	js, kv := bucket(t)
	s := New(js, kv, 2)
	for round := uint64(1); round <= 2; round++ {
		for i := range 5 {
			update(t, s, fmt.Sprint("acct-", i), func(st *alertv1.AccountAlertState) (bool, error) {
				if st.ScoresSeq != round-1 {
					t.Errorf("acct-%d round %d: read scores seq %d", i, round, st.ScoresSeq)
				}
				st.ScoresSeq = round
				return true, nil
			})
		}
	}
	if n := s.cache.lru.Len(); n != 2 {
		t.Errorf("cache holds %d accounts, want 2", n)
	}

	boom := errors.New("boom")
	_, err := s.Update(context.Background(), tenant, "acct-4", func(st *alertv1.AccountAlertState) (bool, error) {
		st.ScoresSeq = 99
		return false, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	update(t, s, "acct-4", func(st *alertv1.AccountAlertState) (bool, error) {
		if st.ScoresSeq != 2 {
			t.Errorf("after a failed change: scores seq %d, want 2", st.ScoresSeq)
		}
		return false, nil
	})

	restarted := New(js, kv, 100)
	for i := range 5 {
		update(t, restarted, fmt.Sprint("acct-", i), func(st *alertv1.AccountAlertState) (bool, error) {
			if st.ScoresSeq != 2 {
				t.Errorf("acct-%d after restart: scores seq %d, want 2", i, st.ScoresSeq)
			}
			return false, nil
		})
	}
}

// The outbox is published and removed from the stored and the cached state.
func TestOutboxCached(t *testing.T) {
	js, kv := bucket(t)
	s := New(js, kv, 100)
	seq, err := s.Update(context.Background(), tenant, "a", func(st *alertv1.AccountAlertState) (bool, error) {
		st.ScoresSeq = 1
		st.Outbox = append(st.Outbox, &alertv1.OutboxMessage{Subject: streams.AlertSubject(tenant, "a"), MsgId: "m1", Data: []byte("x")})
		return true, nil
	})
	if err != nil || seq == 0 {
		t.Fatalf("update: seq %d, err %v", seq, err)
	}
	if got := stored(t, kv, "a"); len(got.Outbox) != 0 || got.ScoresSeq != 1 {
		t.Errorf("stored outbox %v, scores seq %d", got.Outbox, got.ScoresSeq)
	}
	update(t, s, "a", func(st *alertv1.AccountAlertState) (bool, error) {
		if len(st.Outbox) != 0 || st.ScoresSeq != 1 {
			t.Errorf("cached outbox %v, scores seq %d", st.Outbox, st.ScoresSeq)
		}
		return false, nil
	})
}

// UpdateMany applies each account's changes in order with one write, and an
// account someone else wrote since it was cached has its changes applied
// again one by one on the stored state.
func TestUpdateMany(t *testing.T) {
	js, kv := bucket(t)
	s, other := New(js, kv, 100), New(js, kv, 100)
	update(t, s, "b", func(st *alertv1.AccountAlertState) (bool, error) { st.ScoresSeq = 1; return true, nil })
	update(t, other, "b", func(st *alertv1.AccountAlertState) (bool, error) { st.AccountChangesSeq = 5; return true, nil })
	seq := func(account string, n uint64) Change {
		return Change{Tenant: tenant, Account: account, Fn: func(st *alertv1.AccountAlertState) (bool, error) {
			if n <= st.ScoresSeq {
				return false, nil // applied already
			}
			if n != st.ScoresSeq+1 {
				return false, fmt.Errorf("%s: change %d on scores seq %d", account, n, st.ScoresSeq)
			}
			st.ScoresSeq = n
			st.Outbox = append(st.Outbox, &alertv1.OutboxMessage{Subject: streams.AlertSubject(tenant, account), MsgId: fmt.Sprint(account, n), Data: []byte("x")})
			return true, nil
		}}
	}
	errs := s.UpdateMany(context.Background(), []Change{seq("a", 1), seq("b", 2), seq("a", 2), seq("b", 3), seq("a", 3), seq("c", 1)})
	for i, err := range errs {
		if err != nil {
			t.Errorf("change %d: %v", i, err)
		}
	}
	for account, want := range map[string]uint64{"a": 3, "b": 3, "c": 1} {
		got := stored(t, kv, account)
		if got.ScoresSeq != want || len(got.Outbox) != 0 {
			t.Errorf("%s: scores seq %d, outbox %d; want %d, 0", account, got.ScoresSeq, len(got.Outbox), want)
		}
	}
	if got := stored(t, kv, "b"); got.AccountChangesSeq != 5 {
		t.Errorf("b: the other store's write was lost (account changes seq %d)", got.AccountChangesSeq)
	}
	st, err := js.Stream(context.Background(), streams.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 6 {
		t.Errorf("ALERTS holds %d messages, want 6 (one per change)", info.State.Msgs)
	}
}
