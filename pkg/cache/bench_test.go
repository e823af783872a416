package cache

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lodestar-cs/lodestar/internal/testenv"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// benchHistory keeps the benchmarks' Redis memory small while every put
// still pays for trimming a full history, as in steady state.
const benchHistory = 20

// benchScores are n accounts' scores the size of real ones: ten measures
// with their explanation, attributions, notes and account facts.
func benchScores(tenant string, n int) []*scoringv1.HealthScore {
	scores := make([]*scoringv1.HealthScore, n)
	for i := range scores {
		s := score(tenant, fmt.Sprintf("account-%06d", i), float64(i%100), func(s *scoringv1.HealthScore) {
			s.ScorecardVersion, s.AccountName, s.OwnerCsmId, s.Segment = 3, fmt.Sprintf("Customer %d Ltd", i), fmt.Sprintf("csm-%d", i%20), "mid-market"
			s.Tier, s.LifecycleStage = accountv1.Tier(1+i%3), accountv1.LifecycleStage(1+i%5)
			s.Arr, s.RenewalTime = &accountv1.Money{CurrencyCode: "USD", Units: 48000}, timestamppb.New(at(0).AddDate(0, 7, 0))
			s.Notes = []string{"survey left out: no answers in the window"}
			s.Summary = "core usage down 40% against its own baseline; 12 of 40 seats active"
		})
		for m := range 10 {
			s.Measures = append(s.Measures, &scoringv1.MeasureResult{
				Name: fmt.Sprintf("measure_%d", m), Kind: scoringv1.MeasureKind(1 + m), HasData: true,
				RawValue: 12, SubScore: 55, Weight: 2, EffectiveWeight: 0.1, Contribution: 5.5,
				Detail: "12 of 40 seats active over 30 days",
			})
		}
		for m := range 3 {
			s.Attributions = append(s.Attributions, &scoringv1.Attribution{Measure: fmt.Sprintf("measure_%d", m), Points: -3.5})
		}
		scores[i] = s
	}
	return scores
}

// Kinds of change the put benchmarks make.
const (
	// Score, drop_7d and most often the band change: every ranking moves.
	changeAll = "all"
	// The score moves a little within its band: the drop rankings and
	// every index stay, the usual change.
	changeScore = "score"
)

// touch turns scores into their next change.
func touch(scores []*scoringv1.HealthScore, round int, kind string) {
	for i, s := range scores {
		if kind == changeAll {
			s.Score = float64((i*7 + round*13) % 100)
			s.Drop_7D = -float64((i + round) % 30)
		} else {
			s.Score = float64(i%100) + float64(round%2)/2
		}
		s.Band = bandOf(s.Score)
		s.ScoreTime = timestamppb.New(at(round))
	}
}

// redisServer is a Redis a benchmark runs on.
type redisServer struct {
	name string
	// client returns a client and a fresh tenant.
	client func(b *testing.B) (redis.UniversalClient, string)
}

// redisServers are a Redis server and a Redis Cluster of three masters,
// both started for b (not the shared server, which other tests may be
// using), so that one run measures both on the same machine. A tenant
// lives on one master: the cluster costs routing, it adds no parallelism.
func redisServers(b *testing.B) []redisServer {
	single := redis.NewClient(&redis.Options{Addr: testenv.RedisServer(b)})
	b.Cleanup(func() { single.Close() })
	cluster := testenv.RedisCluster(b).Client(b)
	return []redisServer{
		{"single", func(b *testing.B) (redis.UniversalClient, string) { return single, testenv.Tenant(b) }},
		{"cluster", func(b *testing.B) (redis.UniversalClient, string) { return cluster, testenv.Tenant(b) }},
	}
}

// BenchmarkRedisPutScores puts on a server and on a cluster in turn, case
// by case, so that the machine's load drifts alike on both.
func BenchmarkRedisPutScores(b *testing.B) {
	servers := redisServers(b)
	for _, batch := range []int{100, 1000} {
		for _, kind := range []string{changeAll, changeScore} {
			for _, srv := range servers {
				b.Run(fmt.Sprintf("cache/change=%s/batch=%d/server=%s", kind, batch, srv.name), func(b *testing.B) {
					client, tenant := srv.client(b)
					benchPut(b, NewRedis(client, Config{HistoryLength: benchHistory}), tenant, batch, kind)
				})
			}
		}
		for _, srv := range servers {
			b.Run(fmt.Sprintf("raw-set/batch=%d/server=%s", batch, srv.name), func(b *testing.B) {
				client, tenant := srv.client(b)
				v, err := marshal(benchScores(tenant, 1)[0])
				if err != nil {
					b.Fatal(err)
				}
				keys := make([]string, 10*batch)
				for i := range keys {
					keys[i] = fmt.Sprintf("lodestar:{%s}:raw:%d", tenant, i)
				}
				rounds := 0
				for b.Loop() {
					_, err := client.Pipelined(b.Context(), func(p redis.Pipeliner) error {
						for _, k := range keys[rounds%10*batch:][:batch] {
							p.Set(b.Context(), k, v, 0)
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					rounds++
				}
				b.ReportMetric(float64(rounds*batch)/b.Elapsed().Seconds(), "writes/s")
				b.ReportMetric(float64(len(v)), "value-bytes")
			})
		}
	}
}

func BenchmarkMemoryPutScores(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		for _, kind := range []string{changeAll, changeScore} {
			b.Run(fmt.Sprintf("change=%s/batch=%d", kind, batch), func(b *testing.B) {
				benchPut(b, NewMemory(Config{HistoryLength: benchHistory}), testenv.Tenant(b), batch, kind)
			})
		}
	}
}

// benchPut puts batches of changes of 10 x batch accounts round robin,
// after putting every account once: steady state, not first writes.
func benchPut(b *testing.B, c cache, tenant string, batch int, kind string) {
	scores := benchScores(tenant, 10*batch)
	if err := c.PutScores(b.Context(), recorded(scores...)); err != nil {
		b.Fatal(err)
	}
	v, err := marshal(scores[0])
	if err != nil {
		b.Fatal(err)
	}
	rounds := 0
	for b.Loop() {
		part := scores[rounds%10*batch:][:batch]
		touch(part, rounds, kind)
		if err := c.PutScores(b.Context(), recorded(part...)); err != nil {
			b.Fatal(err)
		}
		rounds++
	}
	b.ReportMetric(float64(rounds*batch)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(len(v)), "value-bytes")
}

func BenchmarkRedisGetScore(b *testing.B) {
	const accounts = 1000
	type setup struct {
		name   string
		client redis.UniversalClient
		cache  *Redis
		tenant string
		scores []*scoringv1.HealthScore
	}
	var setups []setup
	for _, srv := range redisServers(b) {
		client, tenant := srv.client(b)
		c := NewRedis(client, Config{HistoryLength: benchHistory})
		scores := benchScores(tenant, accounts)
		if err := c.PutScores(b.Context(), recorded(scores...)); err != nil {
			b.Fatal(err)
		}
		setups = append(setups, setup{srv.name, client, c, tenant, scores})
	}
	for _, op := range []string{"cache", "raw-get"} {
		for _, s := range setups {
			b.Run(op+"/server="+s.name, func(b *testing.B) {
				benchLatency(b, func(i int) error {
					id := s.scores[i%accounts].AccountId
					if op == "cache" {
						_, err := s.cache.GetScore(b.Context(), s.tenant, id)
						return err
					}
					return s.client.Get(b.Context(), s.cache.scoreKey(s.tenant, id)).Err()
				})
			})
		}
	}
}

func BenchmarkMemoryGetScore(b *testing.B) {
	const accounts = 1000
	c, tenant := NewMemory(Config{}), testenv.Tenant(b)
	scores := benchScores(tenant, accounts)
	if err := c.PutScores(b.Context(), recorded(scores...)); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if _, err := c.GetScore(b.Context(), tenant, scores[i%accounts].AccountId); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// benchLatency runs op once per iteration, one round trip at a time, and
// reports its p50 and p99.
func benchLatency(b *testing.B, op func(i int) error) {
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := op(len(took)); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100])/1e3, "p99-µs")
}

// BenchmarkRedisMemory reports what the cache costs Redis: bytes per
// account with one recorded change (current score, rankings, index hash,
// one history entry) and per further recorded change, from used_memory of
// a server of its own, over 10,000 accounts of real-sized scores.
func BenchmarkRedisMemory(b *testing.B) {
	const accounts, changes = 10000, 10
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisServer(b)})
	b.Cleanup(func() { client.Close() })
	used := func() float64 {
		b.Helper()
		info, err := client.InfoMap(b.Context(), "memory").Result()
		if err != nil {
			b.Fatal(err)
		}
		n, err := strconv.ParseFloat(info["Memory"]["used_memory"], 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	var perAccount, perChange float64
	for b.Loop() {
		if err := client.FlushAll(b.Context()).Err(); err != nil {
			b.Fatal(err)
		}
		c, tenant := NewRedis(client, Config{HistoryLength: changes}), testenv.Tenant(b)
		scores := benchScores(tenant, accounts)
		base := used()
		if err := c.PutScores(b.Context(), recorded(scores...)); err != nil {
			b.Fatal(err)
		}
		one := used()
		for round := 1; round < changes; round++ {
			touch(scores, round, changeAll)
			if err := c.PutScores(b.Context(), recorded(scores...)); err != nil {
				b.Fatal(err)
			}
		}
		perAccount, perChange = (one-base)/accounts, (used()-one)/accounts/(changes-1)
	}
	b.ReportMetric(perAccount, "bytes/account")
	b.ReportMetric(perChange, "bytes/change")
}
