package pipeline

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/scorecore/engine"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	eventv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/event/v1"
)

// TestCheckCacheRefills checks that the pipeline writes every current score
// again when the cache lost them (its marker gone), is not complete until it
// did, and is not complete while the cache does not answer.
func TestCheckCacheRefills(t *testing.T) {
	ctx := context.Background()
	tenant := testenv.Tenant(t)
	rc := testenv.Redis(t)
	prefix := "refilltest-" + tenant
	store := cache.NewRedis(rc, cache.Config{KeyPrefix: prefix})
	eng, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := timestamppb.New(time.Now().Add(-time.Hour))
	for _, acct := range []string{"a", "b"} {
		eng.Apply(&eventv1.Event{TenantId: tenant, AccountId: acct, UserId: "u", MessageId: acct, Type: eventv1.EventType_EVENT_TYPE_TRACK,
			Event: "Report Created", EventTime: at, ReceivedTime: at}, time.Now())
	}
	eng.Flush() // scored, never written: as if the cache lost them
	p := New(Config{Name: "refilltest"}, Deps{Engine: eng, Store: store, Logger: slog.New(slog.DiscardHandler), Meter: noop.NewMeterProvider().Meter("test")})
	readable := func() bool {
		s, err := store.GetScores(ctx, tenant, []string{"a", "b"})
		return err == nil && s[0] != nil && s[1] != nil
	}
	for round := range 2 {
		if readable() {
			t.Fatalf("round %d: scores readable before the refill", round)
		}
		if err := p.checkCache(ctx); err != nil {
			t.Fatal(err)
		}
		if !p.cacheComplete.Load() || !readable() {
			t.Fatalf("round %d: after checkCache: complete %v, readable %v", round, p.cacheComplete.Load(), readable())
		}
		// Redis loses everything of ours, as a restart without persistence.
		iter := rc.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	}

	// A cache that does not answer is not complete.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { down.Close() })
	p.deps.Store = cache.NewRedis(down, cache.Config{KeyPrefix: prefix})
	if err := p.checkCache(ctx); err == nil || p.cacheComplete.Load() {
		t.Errorf("checkCache of an unreachable cache: %v, complete %v", err, p.cacheComplete.Load())
	}
}
