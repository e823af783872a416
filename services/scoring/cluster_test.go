package scoring_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// TestRedisClusterMasterRestart runs scoring on a Redis Cluster of three
// masters with a tenant on each, and once every account is scored restarts
// each master in turn (SIGKILL, back empty). No event comes after, so only
// the refill brings a lost tenant back: every account must be readable
// again with the same score, and scoring ready, after each restart. The
// cache's marker must see a loss on any master, not only on the one that
// holds a single marker key.
func TestRedisClusterMasterRestart(t *testing.T) {
	t.Parallel() // its own NATS and Redis Cluster
	const accounts = 20
	rc := testenv.RedisCluster(t)
	client := rc.Client(t)
	_, nc := testenv.NATS(t)
	js, _ := natsx.NewJetStream(nc)
	ensureStreams(t, js)

	histories := map[string]history{}
	for m, tenant := range tenantsOnEveryMaster(t, rc, client) {
		h := makeHistory(tenant, accounts, 50)
		publishAccounts(t, js, h.accounts)
		publishBatches(t, js, tenant, h.batches)
		histories[tenant] = h
		t.Logf("tenant %s on master %d", tenant, m)
	}
	c := cache.NewRedis(client, cache.Config{})
	svc, err := newService(js, c)
	if err != nil {
		t.Fatal(err)
	}
	runService(t, svc)
	want := map[string]map[string]*scoringv1.HealthScore{}
	for tenant, h := range histories {
		want[tenant] = finalScores(t, c, tenant, h, svc.Ready)
	}

	for m := range rc.Addrs {
		rc.Restart(t, m)
		restarted := time.Now()
		for tenant, h := range histories {
			if diff := sameScores(want[tenant], finalScores(t, c, tenant, h, svc.Ready)); diff != "" {
				t.Fatalf("master %d restarted: tenant %s: %s", m, tenant, diff)
			}
		}
		t.Logf("master %d restarted: every account readable and scoring ready %v later", m, time.Since(restarted).Round(time.Millisecond))
	}
}

// tenantsOnEveryMaster returns a tenant for each master of the cluster, by
// the master's index in rc.Addrs.
func tenantsOnEveryMaster(t *testing.T, rc *testenv.RedisClusterServer, client *redis.ClusterClient) map[int]string {
	t.Helper()
	ctx := t.Context()
	ranges, err := client.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	base := testenv.Tenant(t)
	on := map[int]string{}
	for i := 0; len(on) < len(rc.Addrs); i++ {
		tenant := fmt.Sprintf("%s-%d", base, i)
		slot, err := client.ClusterKeySlot(ctx, "{"+tenant+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ranges {
			if m := slices.Index(rc.Addrs, r.Nodes[0].Addr); int64(r.Start) <= slot && slot <= int64(r.End) && m >= 0 && on[m] == "" {
				on[m] = tenant
			}
		}
	}
	return on
}
