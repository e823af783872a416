package cache

import (
	"flag"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/config"
)

// TestRedisConfig parses flags and their environment twins into a client:
// one server's or a cluster's, with the seeds and options asked for.
func TestRedisConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		cluster bool     // a cluster client, else a single server's
		addrs   []string // its (seed) addresses
		err     string   // the error of parsing or Validate, when one fails
	}{
		{name: "none"},
		{name: "one address", args: []string{"-redis.addrs=10.0.0.1:6379"}, addrs: []string{"10.0.0.1:6379"}},
		{name: "one cluster seed", args: []string{"-redis.addrs=10.0.0.1:6379", "-redis.cluster"}, cluster: true, addrs: []string{"10.0.0.1:6379"}},
		{name: "several addresses are a cluster", args: []string{"-redis.addrs=a:1, b:2,c:3"}, cluster: true, addrs: []string{"a:1", "b:2", "c:3"}},
		{name: "environment twins", env: map[string]string{"LODESTAR_REDIS_ADDRS": "a:1", "LODESTAR_REDIS_CLUSTER": "true"}, cluster: true, addrs: []string{"a:1"}},
		{name: "url", args: []string{"-redis.url=redis://u:p@r:6380/2"}, addrs: []string{"r:6380"}},
		{name: "cluster url with seeds", args: []string{"-redis.url=rediss://u:p@r:6380?addr=s:6381", "-redis.addrs=t:6382"}, cluster: true, addrs: []string{"r:6380", "s:6381", "t:6382"}},
		{name: "cluster url alone", args: []string{"-redis.url=redis://r:6380?addr=s:6381&dial_timeout=2s"}, cluster: true, addrs: []string{"r:6380", "s:6381"}},
		{name: "bad url", args: []string{"-redis.url=http://r:6379"}, err: "-redis.url"},
		{name: "cluster url with a database", args: []string{"-redis.url=redis://r:6379/3", "-redis.cluster"}, err: "database 0 only"},
		{name: "cluster of nothing", args: []string{"-redis.cluster"}, err: "-redis.cluster needs"},
		{name: "old flag", args: []string{"-redis.addr=r:6379"}, err: "renamed -redis.addrs"},
		{name: "old environment twin", env: map[string]string{"LODESTAR_REDIS_ADDR": "r:6379"}, err: "renamed -redis.addrs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c RedisConfig
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			c.RegisterFlags("redis", fs)
			err := config.Parse(fs, tc.args, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if err == nil {
				err = c.Validate()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Enabled() != (len(tc.addrs) > 0) {
				t.Fatalf("Enabled() = %v", c.Enabled())
			}
			if !c.Enabled() {
				return
			}
			client, err := c.NewClient()
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			var addrs []string
			switch cl := client.(type) {
			case *redis.ClusterClient:
				addrs = cl.Options().Addrs
			case *redis.Client:
				addrs = []string{cl.Options().Addr}
			}
			_, isCluster := client.(*redis.ClusterClient)
			if isCluster != tc.cluster || strings.Join(addrs, " ") != strings.Join(tc.addrs, " ") {
				t.Errorf("client: cluster %v, addrs %v; want cluster %v, addrs %v", isCluster, addrs, tc.cluster, tc.addrs)
			}
		})
	}
}

// TestRedisConfigConnects connects through the flags to the test Redis and
// to a Redis Cluster seeded by one node.
func TestRedisConfigConnects(t *testing.T) {
	t.Parallel() // it starts a cluster of its own
	rc := testenv.RedisCluster(t)
	for _, c := range []RedisConfig{
		{Addrs: config.StringList{testenv.RedisAddr()}},
		{URL: "redis://" + testenv.RedisAddr()},
		{Addrs: config.StringList{rc.Addrs[1]}, Cluster: true},
		{URL: "redis://" + rc.Addrs[0], Addrs: config.StringList{rc.Addrs[2]}},
	} {
		client, err := c.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() }) // after the key cleanup below
		r := NewRedis(client, Config{})
		tenant := testenv.Tenant(t)
		put(t, r, score(tenant, "a", 10))
		if got, err := r.GetScore(t.Context(), tenant, "a"); err != nil || got.Score != 10 {
			t.Errorf("%+v: get = %v, %v", c, got, err)
		}
		if c.IsCluster() {
			if n, err := client.(*redis.ClusterClient).ClusterSlots(t.Context()).Result(); err != nil || len(n) != testenv.RedisClusterNodes {
				t.Errorf("%+v: slot ranges %v, %v", c, n, err)
			}
		} else {
			cleanupKeys(t, client.(*redis.Client), "lodestar:{"+tenant+"}:*")
		}
	}
}
