package cache

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// masterOf returns the index in rc.Addrs of the master serving slot.
func masterOf(t *testing.T, rc *testenv.RedisClusterServer, client *redis.ClusterClient, slot int) int {
	t.Helper()
	ranges, err := client.ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if r.Start <= slot && slot <= r.End {
			if i := slices.Index(rc.Addrs, r.Nodes[0].Addr); i >= 0 {
				return i
			}
			t.Fatalf("slot %d is on %s, not one of %v", slot, r.Nodes[0].Addr, rc.Addrs)
		}
	}
	t.Fatalf("slot %d is not served", slot)
	return -1
}

// tenantsOnEveryMaster returns tenants whose slots are on every master, at
// least one per master.
func tenantsOnEveryMaster(t *testing.T, rc *testenv.RedisClusterServer, client *redis.ClusterClient) map[int]string {
	t.Helper()
	base := testenv.Tenant(t)
	on := map[int]string{}
	for i := 0; len(on) < len(rc.Addrs); i++ {
		tenant := fmt.Sprintf("%s-%d", base, i)
		if m := masterOf(t, rc, client, keySlot(escape(tenant))); on[m] == "" {
			on[m] = tenant
		}
	}
	return on
}

// TestKeySlot checks the slot function against the cluster's own, and that
// each slot's tag is in it.
func TestKeySlot(t *testing.T) {
	t.Parallel() // each starts a cluster of its own
	client := testenv.RedisCluster(t).Client(t)
	tags := slotTags()
	for s, tag := range tags {
		if keySlot(tag) != s {
			t.Fatalf("tag %q of slot %d is in slot %d", tag, s, keySlot(tag))
		}
	}
	for _, key := range []string{"", "a", "lodestar", "tenant-1", "123456789", "t%2Fx", tags[0], tags[numSlots-1], strings.Repeat("z", 100)} {
		want, err := client.ClusterKeySlot(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(key); got != int(want) {
			t.Errorf("keySlot(%q) = %d, redis says %d", key, got, want)
		}
	}
}

// TestRedisClusterCrossSlot puts one batch of scores of tenants on every
// master and reads each tenant's back through every read path. The cluster
// refuses a multi-key command whose keys are in different slots, which the
// test shows first: so a command, pipeline or script of the cache that
// mixed a tenant's keys with another slot's would fail here.
func TestRedisClusterCrossSlot(t *testing.T) {
	t.Parallel() // each starts a cluster of its own
	rc := testenv.RedisCluster(t)
	client := rc.Client(t)
	tenants := tenantsOnEveryMaster(t, rc, client)
	c := NewRedis(client, Config{})

	var a, b string
	for _, tenant := range tenants {
		a, b = b, c.scoreKey(tenant, "x")
	}
	if err := client.MGet(t.Context(), a, b).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("MGET across slots: err = %v, want CROSSSLOT", err)
	}

	var batch []*scoringv1.HealthScore
	for _, tenant := range tenants {
		batch = append(batch, fixture(tenant, 40)...)
	}
	put(t, c, batch...)
	for _, tenant := range tenants {
		want := fixture(tenant, 40)
		got, err := c.GetScores(t.Context(), tenant, ids(want))
		if err != nil {
			t.Fatalf("%s: get scores: %v", tenant, err)
		}
		if !slices.Equal(ids(got), ids(want)) {
			t.Errorf("%s: got %v", tenant, ids(got))
		}
		// Two filters: the multi-filter path, ZCARDs and paged scans.
		q := ListQuery{Band: scoringv1.Band_BAND_RED, Tier: want[1].Tier, PageSize: 3}
		if got := listAll(t, c, tenant, q, nil); !slices.Equal(got, expect(want, q)) {
			t.Errorf("%s: list %v = %v, want %v", tenant, q, got, expect(want, q))
		}
		if _, err := c.BandCounts(t.Context(), tenant); err != nil {
			t.Errorf("%s: band counts: %v", tenant, err)
		}
		if h, _, err := c.History(t.Context(), tenant, want[0].AccountId, HistoryQuery{}); err != nil || len(h) != 1 {
			t.Errorf("%s: history = %v, %v", tenant, h, err)
		}
	}
}

// TestRedisClusterMarker restarts each master in turn (SIGKILL, back empty)
// and expects the marker gone each time, with the scores of the tenant on
// that master: the loss a writer must see to write its scores again.
func TestRedisClusterMarker(t *testing.T) {
	t.Parallel() // each starts a cluster of its own
	rc := testenv.RedisCluster(t)
	client := rc.Client(t)
	tenants := tenantsOnEveryMaster(t, rc, client)
	c := NewRedis(client, Config{})
	has := func() bool {
		t.Helper()
		ok, err := c.HasMarker(t.Context(), "scoring")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if has() {
		t.Fatal("marker set on a new cluster")
	}
	for m := range rc.Addrs {
		if err := c.SetMarker(t.Context(), "scoring"); err != nil {
			t.Fatal(err)
		}
		put(t, c, score(tenants[m], "a", 10))
		if !has() {
			t.Fatalf("master %d: marker not set", m)
		}
		rc.Restart(t, m)
		if _, err := c.GetScore(t.Context(), tenants[m], "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("master %d restarted: score of its tenant: err = %v, want not found", m, err)
		}
		if has() {
			t.Errorf("master %d restarted empty: marker still set", m)
		}
	}
}
