package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/natsembed"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	accountv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/account/v1"
	"github.com/lodestar-cs/lodestar/services/ingest"
	"github.com/lodestar-cs/lodestar/services/scoring"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// Where scoring keeps its snapshot, as docs/architecture.md lists it: the
// object store bucket and, for an instance owning every partition, the
// object's name.
const (
	snapshotBucket = "SCORING_SNAPSHOTS"
	snapshotObject = "scoring"
)

// sentinelAccount gets the last event of the restart history: once its
// score is in the cache, scoring has applied and flushed everything.
const sentinelAccount = "sentinel"

// restart fills a fresh NATS server with the recent workdays of a product of
// -restart.accounts accounts through ingest, then restarts scoring from its
// snapshot and from none, timing each to ready and to caught up.
func (b *bench) restart(ctx context.Context) error {
	sec := b.report.section(phaseRestart, fmt.Sprintf("Restart: scoring with %d accounts, to caught up", b.cfg.restartAccounts))
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(b.dir, "restart-nats"), Port: -1})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	cfg := b.lcfg
	cfg.NATSURL, cfg.DataDir = srv.ClientURL(), filepath.Join(b.dir, "restart-data")
	if cfg.HTTPListenAddr, err = freeAddr(); err != nil {
		return err
	}
	if cfg.HTTP.AdminListenAddr, err = freeAddr(); err != nil {
		return err
	}
	if cfg.GRPCListenAddr, err = freeAddr(); err != nil {
		return err
	}
	cfg.Targets = config.StringList{ingest.Target, scoring.Target}
	defer deleteKeys(context.WithoutCancel(ctx), b.rc, cfg.Cache.KeyPrefix+":{"+restartTenant+"}:*")

	ls, err := startLodestar(ctx, cfg, b.lsLog, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("start the restart all-in-one: %w", err)
	}
	events, sentinelAt, fillErr := b.fill(ctx, ls)
	if err := errors.Join(fillErr, ls.drain(ctx, 10*time.Minute), ls.Stop()); err != nil {
		return fmt.Errorf("fill: %w", err)
	}

	nc, err := natsx.Connect(ctx, cfg.NATSURL, "bench-restart", b.logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		return err
	}
	obj, err := js.ObjectStore(ctx, snapshotBucket)
	if err != nil {
		return fmt.Errorf("snapshot bucket: %w", err)
	}
	info, err := obj.GetInfo(ctx, snapshotObject)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	cfg.Targets = config.StringList{scoring.Target}
	c := cache.NewRedis(b.rc, cache.Config{KeyPrefix: cfg.Cache.KeyPrefix})

	// From the snapshot: the state is restored and nothing is left to
	// replay; the cache already holds every score.
	b.quiet(ctx, "restart from snapshot")
	fromSnap, err := startLodestar(ctx, cfg, b.lsLog, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("restart from snapshot: %w", err)
	}
	if err := fromSnap.Stop(); err != nil {
		return err
	}

	// From no snapshot: every event is replayed and every score written.
	if err := obj.Delete(ctx, snapshotObject); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	if err := b.rc.Del(ctx, cfg.Cache.KeyPrefix+":{"+restartTenant+"}:score:"+sentinelAccount).Err(); err != nil {
		return err
	}
	b.quiet(ctx, "restart without snapshot")
	start := time.Now()
	fromNone, err := startLodestar(ctx, cfg, b.lsLog, 30*time.Minute)
	if err != nil {
		return fmt.Errorf("restart without snapshot: %w", err)
	}
	waitErr := waitScore(ctx, c, restartTenant, sentinelAccount, sentinelAt, 30*time.Minute)
	caughtUp := time.Since(start)
	if err := errors.Join(waitErr, fromNone.Stop()); err != nil {
		return err
	}
	res := restartResult{Events: events, SnapshotBytes: info.Size, FromSnapshot: fromSnap.Started, NoSnapshotReady: fromNone.Started, NoSnapshotCaughtUp: caughtUp}
	b.restartResult = &res
	sec.add(Figure{Name: "restart from snapshot to ready", Value: ptr(res.FromSnapshot.Seconds()), Unit: "s",
		Note: fmt.Sprintf("restores the %.1f MiB snapshot; nothing left to replay, the cache already current", float64(res.SnapshotBytes)/(1<<20))})
	sec.add(Figure{Name: "restart without snapshot to ready", Value: ptr(res.NoSnapshotReady.Seconds()), Unit: "s",
		Note: fmt.Sprintf("replays all %d events of EVENTS (%.0f events/s)", events, float64(events)/res.NoSnapshotReady.Seconds())})
	sec.add(Figure{Name: "restart without snapshot to caught up", Value: ptr(res.NoSnapshotCaughtUp.Seconds()), Unit: "s",
		Note: "until the score of the last event's account is in Redis: every score rewritten"})
	sec.note("A fresh embedded NATS server holds the %d most recent workdays of a simulated product of %d accounts (%d events, sent through ingest's Segment API with the accounts' CRM facts through AccountService). Scoring then restarts alone in the all-in-one (-target=scoring); the times run from app.Run to /healthz answering 200 (scoring's readiness: snapshot restored, the EVENTS backlog present at start replayed, the cache answering), and to the last event's score in Redis.",
		b.cfg.restartWorkdays, b.cfg.restartAccounts, events)
	return nil
}

// restartResult is what the restart phase measured.
type restartResult struct {
	Events             int64
	SnapshotBytes      uint64
	FromSnapshot       time.Duration
	NoSnapshotReady    time.Duration
	NoSnapshotCaughtUp time.Duration
}

// fill sends the restart product's history through ls's ingest, then the
// sentinel's event, and returns the events stored and the sentinel's time.
func (b *bench) fill(ctx context.Context, ls *lodestar) (int64, time.Time, error) {
	p, err := sim.New(sim.Config{Seed: b.cfg.seed, Accounts: b.cfg.restartAccounts, Now: b.now, Mix: sim.DefaultMix()})
	if err != nil {
		return 0, time.Time{}, err
	}
	if err := pushAccounts(ctx, ls.cfg.GRPCListenAddr, restartAPIKey, p); err != nil {
		return 0, time.Time{}, err
	}
	d := newDriver(ls.cfg.HTTPListenAddr, restartWriteKey, b.cfg.conns)
	bodies := make(chan *template, 4*b.cfg.conns)
	sent := make(chan error, 1)
	var stored int64
	go func() {
		var err error
		stored, err = d.sendAll(ctx, bodies)
		sent <- err
	}()
	hours := workdayHours(b.now, b.cfg.restartWorkdays)
	genErr := generate(ctx, p, hours, runtime.GOMAXPROCS(0), func(evs []sim.Event) error {
		ts, err := encodeBatches(evs, false, "")
		if err != nil {
			return err
		}
		for _, t := range ts {
			bodies <- t
		}
		return nil
	})
	close(bodies)
	if err := errors.Join(genErr, <-sent); err != nil {
		return 0, time.Time{}, err
	}
	// After every simulated event, and in the past by more than a tick's
	// reach would matter: the sentinel's score_time is at least this.
	at := hours[len(hours)-1].Add(time.Hour)
	body := fmt.Appendf(nil, `{"batch":[{"type":"track","messageId":"sentinel","userId":"sentinel-user","event":"Report Created","timestamp":%q,"context":{"groupId":%q}}]}`,
		at.Format(timeLayout), sentinelAccount)
	if err := d.post(ctx, body); err != nil {
		return 0, time.Time{}, err
	}
	b.logger.Info("restart history stored", "events", stored+1, "accounts", b.cfg.restartAccounts)
	return stored + 1, at, nil
}

// waitScore waits until an account's score has a score_time at or after
// at.
func waitScore(ctx context.Context, c *cache.Redis, tenant, account string, at time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		hs, err := c.GetScore(ctx, tenant, account)
		if err == nil && !hs.GetScoreTime().AsTime().Before(at) {
			return nil
		}
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("score of %s not current after %s", account, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pushAccounts sends a product's accounts as a CRM integration would.
func pushAccounts(ctx context.Context, grpcAddr, apiKey string, p *sim.Product) error {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Key: apiKey, Insecure: true}))
	if err != nil {
		return fmt.Errorf("dial gRPC: %w", err)
	}
	defer conn.Close()
	client := accountv1.NewAccountServiceClient(conn)
	accts := p.Accounts()
	const perCall = 1000 // AccountService's limit
	for start := 0; start < len(accts); start += perCall {
		req := &accountv1.UpsertAccountsRequest{}
		for _, a := range accts[start:min(start+perCall, len(accts))] {
			req.Accounts = append(req.Accounts, a.CRM())
		}
		if _, err := client.UpsertAccounts(ctx, req); err != nil {
			return fmt.Errorf("upsert accounts: %w", err)
		}
	}
	return nil
}
