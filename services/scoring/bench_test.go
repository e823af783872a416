package scoring_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/grpcserver"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/telemetry"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/scoring/internal/api"
)

// benchClients is the concurrency of the throughput benchmarks, as in
// tools/bench's reads phase.
const benchClients = 64

// BenchmarkGetHealthScore measures GetHealthScore over gRPC on loopback,
// served from Redis by the server every Lodestar process runs (pkg/grpcserver
// with pkg/telemetry and API-key auth, as the all-in-one sets them up),
// beside a raw go-redis GET of a value of the same size in the same run: the
// baseline the API's overhead is judged against. The client is in the same
// process, so on a small machine its CPU is in the figures too, as in
// tools/bench. One client at a time gives the latency; "-64-clients" runs 64
// goroutines over one connection (one go-redis pool for the raw GET).
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
	client := benchServer(b, tenant, c)
	req := &scoringv1.GetHealthScoreRequest{AccountId: hs.GetAccountId()}
	rawGet := func() error { return rc.Get(ctx, rawKey).Err() }
	grpcGet := func() error { _, err := client.GetHealthScore(ctx, req); return err }

	b.Run("raw-redis-get", func(b *testing.B) { measure(b, 1, rawGet) })
	b.Run("grpc", func(b *testing.B) { measure(b, 1, grpcGet) })
	b.Run("raw-redis-get-64-clients", func(b *testing.B) { measure(b, benchClients, rawGet) })
	b.Run("grpc-64-clients", func(b *testing.B) { measure(b, benchClients, grpcGet) })
}

// benchServer serves the scoring API from c as the all-in-one does and
// returns a client of it with the tenant's API key.
func benchServer(b *testing.B, tenant string, c api.Reader) scoringv1.ScoringServiceClient {
	b.Helper()
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		b.Setenv(k, "")
	}
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "scoring-bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tel.Shutdown(context.Background()) })
	key := "ak_" + tenant + "_0123456789"
	reg, err := auth.NewRegistry([]auth.Tenant{{ID: tenant, APIKeys: []string{auth.HashKey(key)}}})
	if err != nil {
		b.Fatal(err)
	}
	logger := telemetry.NewLogger(io.Discard, slog.LevelWarn, telemetry.FormatJSON)
	srv := grpcserver.New(grpcserver.Config{
		Logger:         logger,
		TracerProvider: tel.TracerProvider(),
		MeterProvider:  tel.MeterProvider(),
		Propagator:     tel.Propagator(),
	}, grpcserver.WithUnaryInterceptors(reg.UnaryServerInterceptor(grpcserver.IsInfraMethod)))
	scoringv1.RegisterScoringServiceServer(srv.GRPC(), api.New(c, nil, nil, natsx.DefaultPartitions, logger))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: key, Insecure: true}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return scoringv1.NewScoringServiceClient(conn)
}

// measure runs op b.N times from clients goroutines and reports the
// throughput and latency percentiles.
func measure(b *testing.B, clients int, op func() error) {
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, b.N)
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	for range clients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, b.N/clients+1)
			for next.Add(1) <= int64(b.N) {
				t := time.Now()
				if err := op(); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "reads/s")
	// CPU per read of this process (client and server; Redis is another
	// process): steadier than the times on a busy machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-µs/read")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
