package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
)

// readResult is a read workload's throughput and latency.
type readResult struct {
	PerSec float64
	Lat    stats.Summary
}

// hammer runs op from clients goroutines for d, each calling it in a loop
// with its own random source, and measures every call. One client is the
// latency of one call at a time; many show throughput. Calls get no
// deadline of their own, so the end of the run never fails one.
func hammer(ctx context.Context, clients int, d time.Duration, op func(ctx context.Context, r *rand.Rand) error) (readResult, error) {
	var (
		mu    sync.Mutex
		all   []time.Duration
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 1))
			var mine []time.Duration
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(end) {
					break
				}
				if err := op(ctx, r); err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					break
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := errors.Join(first, ctx.Err()); err != nil {
		return readResult{}, err
	}
	return readResult{PerSec: float64(len(all)) / time.Since(start).Seconds(), Lat: stats.Summarize(all)}, nil
}

// scoringClients dials the all-in-one's gRPC server n times, sending the
// bench tenant's API key.
func (b *bench) scoringClients(n int) ([]scoringv1.ScoringServiceClient, func(), error) {
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	var out []scoringv1.ScoringServiceClient
	for range n {
		c, err := grpc.NewClient(b.lcfg.GRPCListenAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: benchAPIKey, Insecure: true}))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("dial gRPC: %w", err)
		}
		conns = append(conns, c)
		out = append(out, scoringv1.NewScoringServiceClient(c))
	}
	return out, closeAll, nil
}

// scoredAccounts lists the bench tenant's scored accounts.
func scoredAccounts(ctx context.Context, c scoringv1.ScoringServiceClient) ([]string, error) {
	var ids []string
	req := &scoringv1.ListHealthScoresRequest{PageSize: 1000}
	for {
		resp, err := c.ListHealthScores(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list scores: %w", err)
		}
		for _, s := range resp.GetScores() {
			ids = append(ids, s.GetAccountId())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return ids, nil
		}
	}
}

// reads measures the scoring API's reads over gRPC beside the raw Redis
// reads they make, one call at a time and with concurrent clients, and the
// cache's write rate beside pipelined SETs.
func (b *bench) reads(ctx context.Context) error {
	sec := b.report.section(phaseReads, "Reads: ScoringService over gRPC beside raw Redis, and cache writes")
	clients, closeClients, err := b.scoringClients(b.cfg.grpcConns)
	if err != nil {
		return err
	}
	defer closeClients()
	ids, err := scoredAccounts(ctx, clients[0])
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return errors.New("no scored accounts to read: run the e2e phase first")
	}
	// Keys as pkg/cache lays them out (see its Redis doc): simulated
	// account ids need no escaping.
	scoreKey := func(id string) string { return b.lcfg.Cache.KeyPrefix + ":{" + benchTenant + "}:score:" + id }
	rankKey := b.lcfg.Cache.KeyPrefix + ":{" + benchTenant + "}:rank:score"
	pick := func(r *rand.Rand) string { return ids[r.IntN(len(ids))] }
	client := func(r *rand.Rand) scoringv1.ScoringServiceClient { return clients[r.IntN(len(clients))] }

	rawGet := func(ctx context.Context, r *rand.Rand) error { return b.rc.Get(ctx, scoreKey(pick(r))).Err() }
	grpcGet := func(ctx context.Context, r *rand.Rand) error {
		_, err := client(r).GetHealthScore(ctx, &scoringv1.GetHealthScoreRequest{AccountId: pick(r)})
		return err
	}
	// ListHealthScores' first page reads a page of the ranking, the page's
	// scores and the band counts: its raw baseline is a ZRANGE, an MGET and
	// a pipeline of three ZCARDs, the same three round trips.
	rawList := func(ctx context.Context, r *rand.Rand) error {
		members, err := b.rc.ZRange(ctx, rankKey, 0, 99).Result()
		if err != nil {
			return err
		}
		keys := make([]string, len(members))
		for i, m := range members {
			keys[i] = scoreKey(m)
		}
		if err := b.rc.MGet(ctx, keys...).Err(); err != nil {
			return err
		}
		_, err = b.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for band := range 3 {
				p.ZCard(ctx, fmt.Sprintf("%s:band:%d", rankKey, band+1))
			}
			return nil
		})
		return err
	}
	grpcList := func(ctx context.Context, r *rand.Rand) error {
		_, err := client(r).ListHealthScores(ctx, &scoringv1.ListHealthScoresRequest{PageSize: 100})
		return err
	}

	type pair struct {
		name      string
		raw, grpc func(context.Context, *rand.Rand) error
		rawName   string
	}
	for _, p := range []pair{
		{"GetHealthScore", rawGet, grpcGet, "raw Redis GET of the same keys"},
		{"ListHealthScores (first page of 100)", rawList, grpcList, "raw ZRANGE 0 99, MGET of the 100 scores, 3 ZCARDs"},
	} {
		for _, clients := range []int{1, b.cfg.readClients} {
			b.quiet(ctx, p.name)
			raw, err := hammer(ctx, clients, b.cfg.readDuration, p.raw)
			if err != nil {
				return fmt.Errorf("%s baseline: %w", p.name, err)
			}
			got, err := hammer(ctx, clients, b.cfg.readDuration, p.grpc)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			b.readResults[fmt.Sprintf("%s/%d", p.name, clients)] = [2]readResult{got, raw}
			who := fmt.Sprintf("%d client", clients)
			if clients > 1 {
				who += "s"
			}
			sec.add(Figure{Name: fmt.Sprintf("%s, %s: throughput", p.name, who), Value: ptr(got.PerSec), Unit: "reads/s",
				Baseline: p.rawName, BaselineValue: ptr(raw.PerSec)})
			sec.add(Figure{Name: fmt.Sprintf("%s, %s: p50", p.name, who), Value: ms(got.Lat.P50), Unit: "ms",
				Baseline: p.rawName, BaselineValue: ms(raw.Lat.P50)})
			sec.add(Figure{Name: fmt.Sprintf("%s, %s: p99", p.name, who), Value: ms(got.Lat.P99), Unit: "ms",
				Baseline: p.rawName, BaselineValue: ms(raw.Lat.P99),
				Note: fmt.Sprintf("p99 %+.3f ms against the baseline", float64(got.Lat.P99-raw.Lat.P99)/1e6)})
		}
	}
	sec.note("Reads run with no event load, %s each, over %d gRPC connections with the API key in every call, against %d scored accounts picked at random; the baseline runs on the same keys just before. Every call is timed, one at a time per client (closed loop).",
		b.cfg.readDuration, b.cfg.grpcConns, len(ids))
	return b.writes(ctx, sec, ids)
}

// writes measures pkg/cache's PutScores, the scoring flush's write, with
// real scores, beside pipelined SETs of values of the same size.
func (b *bench) writes(ctx context.Context, sec *Section, ids []string) error {
	c := cache.NewRedis(b.rc, cache.Config{KeyPrefix: b.lcfg.Cache.KeyPrefix})
	scores, err := c.GetScores(ctx, benchTenant, ids[:min(len(ids), 1000)])
	if err != nil {
		return err
	}
	// Written as another tenant: the same scores and indexes, fresh keys.
	var updates []cache.Update
	size := 0
	for _, s := range scores {
		if s != nil {
			s.TenantId = writeTenant
			updates = append(updates, cache.Update{Score: s})
			size += proto.Size(s)
		}
	}
	if len(updates) == 0 {
		return errors.New("no scores to write")
	}
	defer deleteKeys(context.WithoutCancel(ctx), b.rc, b.lcfg.Cache.KeyPrefix+":{"+writeTenant+"}:*")
	value := make([]byte, size/len(updates))
	put := func(ctx context.Context, _ *rand.Rand) error {
		for i, u := range updates {
			u.Score.Score = float64((i*7+int(time.Now().UnixNano()))%1000) / 10 // every put moves the rankings
		}
		return c.PutScores(ctx, updates)
	}
	set := func(ctx context.Context, _ *rand.Rand) error {
		_, err := b.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range updates {
				p.Set(ctx, fmt.Sprintf("%s:{%s}:raw:%d", b.lcfg.Cache.KeyPrefix, writeTenant, i), value, 0)
			}
			return nil
		})
		return err
	}
	raw, err := hammer(ctx, 1, b.cfg.readDuration, set)
	if err != nil {
		return fmt.Errorf("pipelined SET: %w", err)
	}
	cpu := startCPU(ctx, b.rc)
	got, err := hammer(ctx, 1, b.cfg.readDuration, put)
	if err != nil {
		return fmt.Errorf("PutScores: %w", err)
	}
	use := cpu.stop(ctx)
	n := float64(len(updates))
	sec.add(Figure{Name: fmt.Sprintf("cache writes (PutScores, batches of %d real scores)", len(updates)), Value: ptr(got.PerSec * n), Unit: "scores/s",
		Baseline: "pipelined SET of values of the same size", BaselineValue: ptr(raw.PerSec * n),
		Note: fmt.Sprintf("one Lua script per score: the score, its rankings and indexes; Redis used %.2f cores, %.0f µs of Redis CPU per score", use.Redis, use.Redis*1e6/(got.PerSec*n))})
	if best := b.e2eBest; best != nil {
		sec.note("At the sustained end-to-end rate scoring wrote %.0f scores/s, %.0f%% of this write rate: Redis shares the machine's cores with everything else there.",
			best.Scores, 100*best.Scores/(got.PerSec*n))
	}
	return nil
}

// deleteKeys deletes the keys matching pattern.
func deleteKeys(ctx context.Context, rc *redis.Client, pattern string) error {
	iter := rc.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := rc.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := rc.Unlink(ctx, batch...).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}
