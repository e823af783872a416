// Package testenv gives integration tests the real parts they talk to: an
// embedded NATS server with JetStream (on a random port or in-process, never
// 4222), the machine's Redis, and Redis servers and Redis Clusters of a
// test's own (child processes on random loopback ports).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/pkg/natsembed"
)

// NATS starts an embedded NATS server with JetStream in a temporary store,
// listening on a random loopback port, and returns it with a connection.
func NATS(t testing.TB) (*natsembed.Server, *nats.Conn) {
	t.Helper()
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect to embedded nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}

// RedisAddr is the Redis the tests use: LODESTAR_TEST_REDIS_ADDR, or the
// local default that .ci/run makes sure is up.
func RedisAddr() string {
	if a := os.Getenv("LODESTAR_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// Redis connects to the test Redis, failing the test when it is not up:
// integration tests need the real server, not a mock.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	c := RedisClient()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("redis at %s is not reachable (.ci/run starts it; set LODESTAR_TEST_REDIS_ADDR to use another): %v", RedisAddr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// RedisClient returns a client of the test Redis, for code outside a test
// (a test's child process).
func RedisClient() *redis.Client { return redis.NewClient(&redis.Options{Addr: RedisAddr()}) }

// Tenant returns a fresh tenant id, so tests sharing one Redis never see each
// other's keys.
func Tenant(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}
