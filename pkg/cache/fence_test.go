package cache

import (
	"errors"
	"testing"

	"github.com/lodestar-cs/lodestar/internal/testenv"
)

// TestFence: once a later owner of a partition wrote a tenant's scores (or
// claimed the tenant), the earlier owner's sets, indexes and puts are
// refused and change nothing; the later owner's go through.
func TestFence(t *testing.T) {
	client, tenant := testenv.Redis(t), testenv.Tenant(t)
	cleanupKeys(t, client, "lodestar:{"+tenant+"*")
	c := NewRedis(client, Config{})
	stale, owner := c.Fenced(Fence{Partition: 3, Epoch: 5}), c.Fenced(Fence{Partition: 3, Epoch: 9})
	other := c.Fenced(Fence{Partition: 4, Epoch: 1}) // another partition: its own fence

	put(t, stale, score(tenant, "a", 10)) // before the new owner: accepted
	put(t, owner, score(tenant, "a", 20))
	for name, write := range map[string]func() error{
		"set":   func() error { return stale.SetScores(t.Context(), recorded(score(tenant, "a", 30))) },
		"index": func() error { return stale.IndexScores(t.Context(), recorded(score(tenant, "a", 30))) },
		"put":   func() error { return stale.PutScores(t.Context(), recorded(score(tenant, "b", 30))) },
	} {
		if err := write(); !errors.Is(err, ErrFenced) {
			t.Errorf("stale %s: %v, want ErrFenced", name, err)
		}
	}
	if got, err := c.GetScore(t.Context(), tenant, "a"); err != nil || got.GetScore() != 20 {
		t.Fatalf("a = %v, %v; want the new owner's 20", got, err)
	}
	if _, err := c.GetScore(t.Context(), tenant, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b written by the stale owner: %v", err)
	}
	counts, err := c.BandCounts(t.Context(), tenant)
	if err != nil || counts.GetRed()+counts.GetYellow()+counts.GetGreen() != 1 || counts.GetRed() != 1 {
		t.Fatalf("band counts %v, %v: want a alone, red (the new owner's 20)", counts, err)
	}
	put(t, other, score(tenant, "c", 50))

	// A claim fences tenants the new owner has not written yet.
	tenant2 := tenant + "x"
	if err := owner.Claim(t.Context(), []string{tenant2}); err != nil {
		t.Fatal(err)
	}
	if err := stale.SetScores(t.Context(), recorded(score(tenant2, "a", 30))); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale set after a claim: %v", err)
	}
	if err := stale.Claim(t.Context(), []string{tenant2}); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale claim: %v", err)
	}
}
