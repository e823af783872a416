package attribution

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := natsx.EnsureKeyValue(context.Background(), js, natsx.DefaultLimits().UserAccountsBucket())
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// calls builds compact events: "u1" tracks, "u1>acct" is a group call, "u1@acct"
// a call naming its account in context.groupId.
func calls(specs ...string) []*eventv1.Event {
	evs := make([]*eventv1.Event, len(specs))
	for i, s := range specs {
		ev := &eventv1.Event{Type: eventv1.EventType_EVENT_TYPE_TRACK}
		var user, account string
		if _, err := fmt.Sscanf(s, "%2s>%s", &user, &account); err == nil && account != "" {
			ev.Type = eventv1.EventType_EVENT_TYPE_GROUP
		} else if _, err := fmt.Sscanf(s, "%2s@%s", &user, &account); err != nil {
			user = s
		}
		ev.UserId, ev.AccountId = user, account
		evs[i] = ev
	}
	return evs
}

func accounts(evs []*eventv1.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.AccountId
	}
	return out
}

func TestAttribute(t *testing.T) {
	ctx := context.Background()
	kv := bucket(t)
	r := New(kv, 100)
	attribute := func(specs ...string) []string {
		t.Helper()
		evs := calls(specs...)
		groups, err := r.Attribute(ctx, "acme", evs)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Remember(ctx, groups); err != nil {
			t.Fatal(err)
		}
		return accounts(evs)
	}
	for _, tc := range []struct {
		name  string
		calls []string
		want  []string
	}{
		{"no account known", []string{"u1", "u2"}, []string{"", ""}},
		// u1's events before its first group call take that call's account,
		// later ones the latest group call's; context.groupId wins.
		{"group calls within the request", []string{"u1", "u1>A", "u1", "u1@C", "u1>B", "u1", "u2"}, []string{"A", "A", "A", "C", "B", "B", ""}},
		{"retry of that request", []string{"u1", "u1>A", "u1", "u1@C", "u1>B", "u1", "u2"}, []string{"A", "A", "A", "C", "B", "B", ""}},
		{"last known account", []string{"u1", "u2", "u1@C"}, []string{"B", "", "C"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := attribute(tc.calls...); !slices.Equal(got, tc.want) {
				t.Errorf("accounts %q, want %q", got, tc.want)
			}
		})
	}

	// The last known account is durable: a resolver with an empty cache
	// reads it from the bucket.
	evs := calls("u1")
	if _, err := New(kv, 100).Attribute(ctx, "acme", evs); err != nil || evs[0].AccountId != "B" {
		t.Errorf("fresh resolver: account %q, %v; want B", evs[0].AccountId, err)
	}
	// Tenants do not share users.
	evs = calls("u1")
	if _, err := r.Attribute(ctx, "globex", evs); err != nil || evs[0].AccountId != "" {
		t.Errorf("globex's u1: account %q, %v; want none", evs[0].AccountId, err)
	}
}

// TestWatch checks that a resolver learns of group calls another replica
// handled, for the users it caches.
func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	kv := bucket(t)
	r, other := New(kv, 100), New(kv, 100)
	apply, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- apply() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})

	evs := calls("u1")
	if _, err := r.Attribute(ctx, "acme", evs); err != nil || evs[0].AccountId != "" { // caches "no account"
		t.Fatalf("account %q, %v", evs[0].AccountId, err)
	}
	groups, err := other.Attribute(ctx, "acme", calls("u1>A"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Remember(ctx, groups); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		evs := calls("u1")
		if _, err := r.Attribute(ctx, "acme", evs); err != nil {
			t.Fatal(err)
		}
		if evs[0].AccountId == "A" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache did not learn u1's new account")
		}
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newCache(2)
	c.put("a", "1")
	c.put("b", "2")
	c.get("a")
	c.put("c", "3") // evicts b
	c.update("b", "9")
	for key, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, ok := c.get(key); ok != want {
			t.Errorf("%s cached: %v, want %v", key, ok, want)
		}
	}
}
