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

// redisStartTimeout bounds starting a server or a cluster, or restarting
// a cluster's node.
const redisStartTimeout = 30 * time.Second

// A RedisClusterServer is a Redis Cluster of RedisClusterNodes masters
// without replicas or persistence, each a redis-server child process on
// loopback ports, started for one test.
type RedisClusterServer struct {
	// Addrs are the masters' client addresses.
	Addrs []string
	dir   string
	bus   []int // the masters' cluster bus ports
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
		c.bus = append(c.bus, freePort(t))
		c.start(t, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	for _, a := range c.Addrs {
		waitRedis(ctx, t, c.dir, a, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() })
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
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	c.waitOK(ctx, t)
}

func (c *RedisClusterServer) start(t testing.TB, i int) {
	t.Helper()
	_, port, _ := net.SplitHostPort(c.Addrs[i])
	c.nodes[i] = startRedis(t, c.dir, port,
		"--cluster-enabled", "yes",
		"--cluster-port", strconv.Itoa(c.bus[i]),
		"--cluster-config-file", filepath.Join(c.dir, "nodes-"+port+".conf"),
		"--cluster-node-timeout", "5000")
}

// startRedis starts a redis-server without persistence on a loopback port,
// its log in dir.
func startRedis(t testing.TB, dir, port string, args ...string) *exec.Cmd {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(dir, "redis-"+port+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("redis-server", append([]string{"--port", port, "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no"}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	return cmd
}

// RedisServer starts a Redis server of the test's own on a loopback port,
// killed when the test ends, and returns its address: for measurements
// that other tests' use of the shared Redis would disturb.
func RedisServer(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (scripts/ensure-redis.sh installs it): %v", err)
	}
	dir, port := t.TempDir(), strconv.Itoa(freePort(t))
	cmd := startRedis(t, dir, port)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	addr := "127.0.0.1:" + port
	waitRedis(ctx, t, dir, addr, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() })
	return addr
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
		waitRedis(ctx, t, c.dir, a, func(ctx context.Context, n *redis.Client) error {
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

// waitRedis polls ready on the server at addr until it returns nil, and
// fails the test with the logs in dir when ctx ends first.
func waitRedis(ctx context.Context, t testing.TB, dir, addr string, ready func(context.Context, *redis.Client) error) {
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
			logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			var b strings.Builder
			for _, l := range logs {
				out, _ := os.ReadFile(l)
				fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(l), out)
			}
			t.Fatalf("redis at %s: %v\n%s", addr, err, b.String())
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
