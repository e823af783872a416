package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterNodes is how many masters RedisCluster starts: the fewest
// Redis accepts for a cluster.
const RedisClusterNodes = 3

// redisClusterTimeout bounds starting (or restarting a node of) a cluster.
const redisClusterTimeout = 30 * time.Second

// A RedisClusterServer is a Redis Cluster of RedisClusterNodes masters
// without replicas or persistence, each a redis-server child process on
// loopback ports, started for one test.
type RedisClusterServer struct {
	// Addrs are the masters' client addresses.
	Addrs []string
	dir   string
	nodes []*exec.Cmd
}

// RedisCluster starts a Redis Cluster for the test and kills its processes
// when the test ends. It fails the test when redis-server or redis-cli is
// missing: scripts/ensure-redis.sh installs both.
func RedisCluster(t testing.TB) *RedisClusterServer {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (scripts/ensure-redis.sh installs it): %v", bin, err)
		}
	}
	c := &RedisClusterServer{dir: t.TempDir(), nodes: make([]*exec.Cmd, RedisClusterNodes)}
	t.Cleanup(c.kill) // after TempDir's, so it runs before the removal
	for i := range c.nodes {
		c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(freePort(t)))
		c.start(t, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisClusterTimeout)
	defer cancel()
	for _, a := range c.Addrs {
		c.waitNode(ctx, t, a, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() })
	}
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitOK(ctx, t)
	return c
}

// Client returns a cluster client, closed when the test ends.
func (c *RedisClusterServer) Client(t testing.TB) *redis.ClusterClient {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { client.Close() })
	return client
}

// Restart kills master i (SIGKILL) and starts it again on the same ports
// and cluster configuration: it rejoins as the master of its slots, with
// none of their keys, as a master without persistence comes back after a
// crash. It returns when the cluster is ok again.
func (c *RedisClusterServer) Restart(t testing.TB, i int) {
	t.Helper()
	c.stop(i)
	c.start(t, i)
	ctx, cancel := context.WithTimeout(context.Background(), redisClusterTimeout)
	defer cancel()
	c.waitOK(ctx, t)
}

func (c *RedisClusterServer) start(t testing.TB, i int) {
	t.Helper()
	_, port, _ := net.SplitHostPort(c.Addrs[i])
	log, err := os.OpenFile(filepath.Join(c.dir, "redis-"+port+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("redis-server",
		"--port", port, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-port", strconv.Itoa(freePort(t)),
		"--cluster-config-file", filepath.Join(c.dir, "nodes-"+port+".conf"),
		"--cluster-node-timeout", "5000",
		"--dir", c.dir, "--save", "", "--appendonly", "no")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c.nodes[i] = cmd
}

// stop kills node i by its pid and reaps it.
func (c *RedisClusterServer) stop(i int) {
	if cmd := c.nodes[i]; cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		c.nodes[i] = nil
	}
}

func (c *RedisClusterServer) kill() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// waitOK waits until every node says the cluster is ok with every slot
// served.
func (c *RedisClusterServer) waitOK(ctx context.Context, t testing.TB) {
	t.Helper()
	for _, a := range c.Addrs {
		c.waitNode(ctx, t, a, func(ctx context.Context, n *redis.Client) error {
			info, err := n.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				return fmt.Errorf("not ok yet:\n%s", info)
			}
			return nil
		})
	}
}

// waitNode polls ready on the node at addr until it returns nil.
func (c *RedisClusterServer) waitNode(ctx context.Context, t testing.TB, addr string, ready func(context.Context, *redis.Client) error) {
	t.Helper()
	n := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer n.Close()
	for {
		err := ready(ctx, n)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
			var b strings.Builder
			for _, l := range logs {
				out, _ := os.ReadFile(l)
				fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(l), out)
			}
			t.Fatalf("redis cluster node %s: %v\n%s", addr, err, b.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
