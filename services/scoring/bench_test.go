package scoring_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/api"
)

// BenchmarkGetHealthScore measures GetHealthScore over gRPC on loopback,
// served from Redis, beside a raw go-redis GET of a value of the same size
// in the same run: the baseline the API's overhead is judged against.
func BenchmarkGetHealthScore(b *testing.B) {
	ctx := context.Background()
	rc := testenv.Redis(b)
	tenant := testenv.Tenant(b)
	c := cache.NewRedis(rc, cache.Config{KeyPrefix: "bench"})
	hs := benchScore(tenant)
	if err := c.PutScores(ctx, []cache.Update{{Score: hs}}); err != nil {
		b.Fatal(err)
	}
	raw, _ := proto.Marshal(hs)
	rawKey := "bench-raw:{" + tenant + "}"
	if err := rc.Set(ctx, rawKey, raw, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rc.Del(ctx, rawKey) })

	b.Run("raw-redis-get", func(b *testing.B) {
		measure(b, func() error { return rc.Get(ctx, rawKey).Err() })
	})
	b.Run("grpc", func(b *testing.B) {
		key := "ak_" + tenant + "_0123456789"
		reg, err := auth.NewRegistry([]auth.Tenant{{ID: tenant, APIKeys: []string{key}}})
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer(grpc.UnaryInterceptor(reg.UnaryServerInterceptor(nil)))
		scoringv1.RegisterScoringServiceServer(srv, api.New(c, nil, nil, nil))
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		go srv.Serve(lis)
		b.Cleanup(srv.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: key, Insecure: true}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		client := scoringv1.NewScoringServiceClient(conn)
		req := &scoringv1.GetHealthScoreRequest{AccountId: hs.GetAccountId()}
		measure(b, func() error { _, err := client.GetHealthScore(ctx, req); return err })
	})
}

// measure runs op b.N times and reports its latency percentiles.
func measure(b *testing.B, op func() error) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// benchScore is a score with a full explanation, as scoring writes it.
func benchScore(tenant string) *scoringv1.HealthScore {
	hs := &scoringv1.HealthScore{TenantId: tenant, AccountId: "acct-000", Score: 72.5, Band: scoringv1.Band_BAND_GREEN,
		Summary: "+3.1 to 72.5 green: core_usage +2.0 (18 → 22 events/wk), active_seats +1.1 (12 → 13 of 20 seats active)"}
	for _, name := range []string{"active_seats", "core_usage", "usage_trend", "recency", "stakeholders", "breadth", "nps", "support_load", "billing"} {
		hs.Measures = append(hs.Measures, &scoringv1.MeasureResult{Name: name, HasData: true, RawValue: 12, SubScore: 70,
			Weight: 10, EffectiveWeight: 0.1, Contribution: 7, Detail: "12 of 20 seats active in 14 days"})
	}
	return hs
}
