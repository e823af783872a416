package app_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/internal/testenv"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type instance struct {
	http     string
	grpc     *grpc.ClientConn
	writeKey string
}

// start runs the all-in-one for one fresh tenant and waits until /healthz
// says every service is ready.
func start(t testing.TB, redis cache.RedisConfig, configure ...func(*app.Config)) instance {
	t.Helper()
	tenant := testenv.Tenant(t)
	writeKey, apiKey := "wk_test_"+tenant+"_0123456789", "ak_test_"+tenant+"_0123456789"
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf("tenants:\n  - id: %s\n    write_keys: [%q]\n    api_keys: [%q]\n", tenant, writeKey, auth.HashKey(apiKey))
	if err := os.WriteFile(tenants, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.HTTPListenAddr, cfg.GRPCListenAddr, cfg.HTTP.AdminListenAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.DataDir, cfg.TenantsFile, cfg.Redis = t.TempDir(), tenants, redis
	cfg.Targets = config.StringList{app.TargetAll}
	// Small streams: the embedded server reserves their bounds from the free
	// disk, which parallel test runs share (see console_test.go).
	cfg.Limits.EventsMaxBytes, cfg.Limits.ScoresMaxBytes = 256<<20, 256<<20
	for _, c := range configure {
		c(&cfg)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, slog.New(slog.DiscardHandler), &bytes.Buffer{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lodestar stopped with: %v", err)
		}
	})
	testenv.WaitReady(t, "http://"+cfg.HTTPListenAddr, 30*time.Second)
	conn, err := grpc.NewClient(cfg.GRPCListenAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: apiKey, Insecure: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return instance{http: "http://" + cfg.HTTPListenAddr, grpc: conn, writeKey: writeKey}
}

// The three fates of the end-to-end test, with 20 seats each.
var fates = []struct {
	account string
	// activeUsers returns how many of the 20 users act on a day, 0 = 60 days ago.
	activeUsers func(day int) int
}{
	{"healthy", func(int) int { return 16 }},
	{"declining", func(day int) int { return max(1, 16-day/4) }},
	{"dead", func(day int) int {
		if day < 30 {
			return 16
		}
		return 0
	}},
}

func segmentBatches(now time.Time) [][]map[string]any {
	var batches [][]map[string]any
	var batch []map[string]any
	for day := range 60 {
		ts := now.Add(time.Duration(day-60) * 24 * time.Hour)
		for _, f := range fates {
			for u := range f.activeUsers(day) {
				batch = append(batch, map[string]any{
					"type": "track", "event": "Report Created",
					"userId":    fmt.Sprintf("%s-u%d", f.account, u),
					"timestamp": ts.Add(time.Duration(u) * time.Minute).Format(time.RFC3339Nano),
					"context":   map[string]any{"groupId": f.account},
				})
				if len(batch) == 100 {
					batches, batch = append(batches, batch), nil
				}
			}
		}
	}
	return append(batches, batch)
}

// TestEndToEnd sends the histories of a healthy, a declining and a dead
// account through the Segment HTTP API and expects scores over gRPC ordered
// and banded as their fates, with explanations naming the measures
// responsible. How fast they arrive is tools/bench's to measure: the wait
// here only bounds a hang, so a loaded machine cannot fail it.
func TestEndToEnd(t *testing.T) {
	const hangGuard = time.Minute
	for _, tc := range []struct {
		name  string
		redis func(t *testing.T) cache.RedisConfig
	}{
		{"in-process cache", func(*testing.T) cache.RedisConfig { return cache.RedisConfig{} }},
		{"redis", func(t *testing.T) cache.RedisConfig {
			testenv.Redis(t) // fail clearly when Redis is down
			return cache.RedisConfig{Addrs: config.StringList{testenv.RedisAddr()}}
		}},
		{"redis cluster", func(t *testing.T) cache.RedisConfig {
			return cache.RedisConfig{Addrs: testenv.RedisCluster(t).Addrs}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The simulated product's events, scored by its own scorecard as
			// the demo is: the product default reads them relative to a tenant's
			// accounts, and three accounts make no portfolio.
			in := start(t, tc.redis(t), func(c *app.Config) { c.Scoring.ScorecardFile = demoScorecard })
			ctx := context.Background()
			accounts := accountv1.NewAccountServiceClient(in.grpc)
			var accs []*accountv1.Account
			for _, f := range fates {
				accs = append(accs, &accountv1.Account{
					AccountId: f.account, Name: f.account, SeatsPurchased: 20,
					Tier:              accountv1.Tier_TIER_GROWTH,
					ContractStartTime: timestamppb.New(time.Now().Add(-400 * 24 * time.Hour)),
					RenewalTime:       timestamppb.New(time.Now().Add(200 * 24 * time.Hour)),
				})
			}
			if _, err := accounts.UpsertAccounts(ctx, &accountv1.UpsertAccountsRequest{Accounts: accs}); err != nil {
				t.Fatal(err)
			}

			now := time.Now()
			for _, b := range segmentBatches(now) {
				testenv.PostBatch(t, in.http, in.writeKey, b, now)
			}
			accepted := time.Now()

			scoring := scoringv1.NewScoringServiceClient(in.grpc)
			var scores []*scoringv1.HealthScore
			problem := "no scores"
			for time.Since(accepted) < hangGuard {
				resp, err := scoring.ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{})
				if err != nil {
					t.Fatal(err)
				}
				scores = resp.GetScores()
				if problem = checkFates(scores); problem == "" {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if problem != "" {
				for _, s := range scores {
					t.Logf("%s %.1f %v: %s", s.GetAccountId(), s.GetScore(), s.GetBand(), s.GetSummary())
				}
				t.Fatalf("%v after the last accepted event: %s", hangGuard, problem)
			}
			t.Logf("scores as expected %v after the last accepted event", time.Since(accepted).Round(time.Millisecond))

			// Health over gRPC says serving.
			hc, err := healthgrpc.NewHealthClient(in.grpc).Check(ctx, &healthgrpc.HealthCheckRequest{})
			if err != nil || hc.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
				t.Fatalf("health: %v %v", hc.GetStatus(), err)
			}
		})
	}
}

// checkFates returns what is wrong with the scores, or "".
// demoScorecard is the simulated product's scorecard, as make run uses it.
const demoScorecard = "../tools/loadgen/sim/scorecard.yaml"

func checkFates(scores []*scoringv1.HealthScore) string {
	if len(scores) != len(fates) {
		return fmt.Sprintf("%d scores, want %d", len(scores), len(fates))
	}
	// Worst first: dead, declining, healthy.
	order := []string{"dead", "declining", "healthy"}
	for i, s := range scores {
		if s.GetAccountId() != order[i] {
			return fmt.Sprintf("position %d is %s, want %s", i, s.GetAccountId(), order[i])
		}
	}
	if b := scores[0].GetBand(); b != scoringv1.Band_BAND_RED {
		return fmt.Sprintf("dead account is %v", b)
	}
	if b := scores[2].GetBand(); b != scoringv1.Band_BAND_GREEN {
		return fmt.Sprintf("healthy account is %v", b)
	}
	if scores[1].GetScore() >= scores[2].GetScore()-10 {
		return fmt.Sprintf("declining %.1f is not clearly below healthy %.1f", scores[1].GetScore(), scores[2].GetScore())
	}
	// The dead account's weakest measures explain it: recency and core usage.
	dead := map[string]float64{}
	for _, m := range scores[0].GetMeasures() {
		dead[m.GetName()] = m.GetSubScore()
	}
	if dead["recency"] > 10 || dead["core_usage"] > 10 {
		return fmt.Sprintf("dead account's recency %.0f and core usage %.0f should be near 0", dead["recency"], dead["core_usage"])
	}
	for _, s := range scores {
		if s.GetSummary() == "" || len(s.GetMeasures()) == 0 {
			return s.GetAccountId() + " has no explanation"
		}
	}
	if !strings.Contains(scores[0].GetSummary(), "recency") && !strings.Contains(scores[0].GetSummary(), "core_usage") &&
		!strings.Contains(scores[0].GetSummary(), "active_seats") {
		return "dead account's summary names no usage measure: " + scores[0].GetSummary()
	}
	return ""
}
