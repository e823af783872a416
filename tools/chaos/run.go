package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/natsembed"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// report collects the figures, printed as markdown at the end.
type report struct{ lines []string }

func (r *report) add(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.lines = append(r.lines, line)
	fmt.Println(line)
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	dir := o.workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "lodestar-chaos-"); err != nil {
			return err
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	w := newWorld("chaos"+hex.EncodeToString(b), o.accounts, o.days)
	logger.Info("chaos", "dir", dir, "tenant", w.tenant, "accounts", o.accounts, "events", w.events, "days", o.days)
	rc := redis.NewClient(&redis.Options{Addr: o.redis})
	defer rc.Close()
	rd := cache.NewRedis(rc, cache.Config{})
	defer deleteKeys(rc, w.tenant)
	rep := &report{}
	rep.add("# make chaos: tenant %s, %d accounts, %d events over %d days, lease TTL %s", w.tenant, o.accounts, w.events, o.days, o.leaseTTL)

	start := time.Now()
	base, baseAlerts, err := baseline(ctx, o, w, dir, rd)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	rep.add("- baseline (one process, scoring + churn-alert, single NATS server): %d scores, %d alerts opened, %s", len(base), len(baseAlerts.count), time.Since(start).Round(time.Second))
	deleteKeys(rc, w.tenant)

	cl, err := startCluster(filepath.Join(dir, "cluster"), 3)
	if err != nil {
		return err
	}
	defer cl.shutdown()
	nc, err := nats.Connect(cl.urls())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		return err
	}
	seen, err := watchScores(nc)
	if err != nil {
		return err
	}
	c := &chaos{o: o, dir: dir, w: w, js: js, rd: rd, seen: seen, rep: rep, logger: logger, url: cl.urls()}
	defer c.stopAll()
	if err := c.main(ctx, base, baseAlerts); err != nil {
		return err
	}
	if !strings.Contains(o.skip, "failover") {
		if err := c.failover(ctx); err != nil {
			return fmt.Errorf("failover: %w", err)
		}
	}
	if !strings.Contains(o.skip, "throughput") {
		if err := c.throughput(ctx); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(strings.Join(rep.lines, "\n")+"\n"), 0o644)
}

func deleteKeys(rc *redis.Client, tenant string) {
	ctx := context.Background()
	iter := rc.Scan(ctx, 0, "lodestar:{"+tenant+"}:*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for chunk := range slices.Chunk(keys, 1000) {
		rc.Unlink(ctx, chunk...)
	}
}

// rescanInterval is churn-alert's -churn-alert.rescan-interval in both
// runs. What falls due after an account's last score (a renewal coming
// near, an escalation) is decided by a rescan; rescans come at times that
// differ between the runs (the clustered run's pipelines restart), and must
// not change what is alerted. settle waits for two after the last change,
// so both runs let time pass to the history's end.
const rescanInterval = 5 * time.Second

// settle waits until every account is scored on the last day, the
// processes are ready and churn-alert applied every change, then until the
// scores stop changing and two rescans went by, and returns them.
func settle(ctx context.Context, js jetstream.JetStream, rd *cache.Redis, w *world, ready func() bool) (map[string]*scoringv1.HealthScore, error) {
	lastDay := w.lastDay()
	var scores map[string]*scoringv1.HealthScore
	err := waitUntil(ctx, 5*time.Minute, "every account scored on the last day", func() bool {
		if !ready() {
			return false
		}
		var err error
		if scores, err = readScores(ctx, rd, w); err != nil || len(scores) < len(w.accounts) {
			return false
		}
		for _, s := range scores {
			if !s.GetScoreTime().AsTime().Truncate(24 * time.Hour).Equal(lastDay) {
				return false
			}
		}
		ok, err := alertsCaughtUp(ctx, js)
		return err == nil && ok
	})
	if err != nil {
		return nil, err
	}
	for {
		time.Sleep(time.Second)
		again, err := readScores(ctx, rd, w)
		if err != nil {
			return nil, err
		}
		if n, _ := diffScores(scores, again); n == 0 {
			if ok, err := alertsCaughtUp(ctx, js); err == nil && ok {
				time.Sleep(2 * rescanInterval)
				return again, nil
			}
		}
		scores = again
	}
}

func baseline(ctx context.Context, o options, w *world, dir string, rd *cache.Redis) (map[string]*scoringv1.HealthScore, opened, error) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(dir, "baseline-nats"), Port: -1})
	if err != nil {
		return nil, opened{}, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return nil, opened{}, err
	}
	defer nc.Close()
	js, err := natsx.NewJetStream(nc)
	if err != nil {
		return nil, opened{}, err
	}
	p, err := startProc(o, dir, "baseline", "scoring,churn-alert", srv.ClientURL(), 1)
	if err != nil {
		return nil, opened{}, err
	}
	defer p.stop()
	if err := waitUntil(ctx, time.Minute, "baseline ready", p.ready); err != nil {
		return nil, opened{}, err
	}
	if err := w.publishAccounts(ctx, js); err != nil {
		return nil, opened{}, err
	}
	for d := range w.days {
		if err := w.publishDay(ctx, js, d); err != nil {
			return nil, opened{}, err
		}
	}
	scores, err := settle(ctx, js, rd, w, p.ready)
	if err != nil {
		return nil, opened{}, err
	}
	alerts, err := openedAlerts(ctx, js)
	return scores, alerts, err
}

// chaos is the clustered run.
type chaos struct {
	o      options
	dir    string
	w      *world
	js     jetstream.JetStream
	rd     *cache.Redis
	seen   *scoresSeen
	rep    *report
	logger *slog.Logger
	url    string
	procs  []*proc
	n      int
	// liveEvents counts the failover phase's events.
	liveEvents atomic.Int64
}

func (c *chaos) start(target string) (*proc, error) {
	c.n++
	name := fmt.Sprintf("%s-%d", strings.ReplaceAll(target, "-", ""), c.n)
	p, err := startProc(c.o, c.dir, name, target, c.url, 3)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// live returns the running processes of a target.
func (c *chaos) live(target string) []*proc {
	var out []*proc
	for _, p := range c.procs {
		select {
		case <-p.exited:
		default:
			if p.target == target {
				out = append(out, p)
			}
		}
	}
	return out
}

func (c *chaos) allReady() bool {
	for _, t := range []string{"scoring", "churn-alert"} {
		for _, p := range c.live(t) {
			if !p.ready() {
				return false
			}
		}
	}
	return true
}

func (c *chaos) stopAll() {
	for _, p := range c.procs {
		p.stop()
	}
}

// failoverOf returns, for each partition lost by SIGKILLing victim at t0,
// the time from t0 to the first score published by its new owner.
func (c *chaos) failoverOf(ctx context.Context, lost map[uint32]uint64, t0 time.Time, timeout time.Duration) ([]time.Duration, error) {
	var out []time.Duration
	err := waitUntil(ctx, timeout, "every lost partition scored by its new owner", func() bool {
		out = out[:0]
		for p, e := range lost {
			at, _, ok := c.seen.after(p, e)
			if !ok {
				return false
			}
			out = append(out, at.Sub(t0))
		}
		return true
	})
	slices.Sort(out)
	return out, err
}

func (c *chaos) leasesOf(ctx context.Context, member string) (map[uint32]uint64, error) {
	ls, err := owners(ctx, c.js, "scoring")
	if err != nil {
		return nil, err
	}
	out := map[uint32]uint64{}
	for p, l := range ls {
		if l.Member == member {
			out[p] = l.Epoch
		}
	}
	return out, nil
}

func (c *chaos) main(ctx context.Context, base map[string]*scoringv1.HealthScore, baseAlerts opened) error {
	// Five processes at once on a fresh cluster: none may die creating the
	// streams and buckets (the start race).
	t0 := time.Now()
	for _, t := range []string{"scoring", "scoring", "scoring", "churn-alert", "churn-alert"} {
		if _, err := c.start(t); err != nil {
			return err
		}
	}
	if err := waitUntil(ctx, 2*time.Minute, "five processes ready on a fresh cluster", func() bool {
		return len(c.live("scoring")) == 3 && len(c.live("churn-alert")) == 2 && c.allReady()
	}); err != nil {
		return err
	}
	c.rep.add("- three scoring and two churn-alert processes started together on a fresh 3-node cluster: all ready in %s", time.Since(t0).Round(100*time.Millisecond))
	if err := c.w.publishAccounts(ctx, c.js); err != nil {
		return err
	}
	scoring := c.live("scoring")
	alerting := c.live("churn-alert")
	days := len(c.w.days)
	var killed, paused *proc
	var killedAt, joinedAt time.Time
	var lostByKill map[uint32]uint64
	var before map[uint32]lease
	for d := range days {
		if err := c.w.publishDay(ctx, c.js, d); err != nil {
			return err
		}
		var err error
		// The failures, at distinct days (-days at least 12).
		if d == days/4 {
			killed = scoring[0]
			if lostByKill, err = c.leasesOf(ctx, killed.name); err != nil {
				return err
			}
			killed.kill()
			killedAt = time.Now()
			c.logger.Info("SIGKILL", "proc", killed.name, "partitions", len(lostByKill))
		}
		if d == days/4+1 {
			paused = scoring[1]
			paused.signal(syscall.SIGSTOP)
			c.logger.Info("SIGSTOP", "proc", paused.name)
		}
		if d == days/2 {
			alerting[0].kill()
			c.logger.Info("SIGKILL", "proc", alerting[0].name)
		}
		if d == days/2+1 {
			paused.signal(syscall.SIGCONT)
			c.logger.Info("SIGCONT", "proc", paused.name)
		}
		if d == 2*days/3+1 {
			if before, err = owners(ctx, c.js, "scoring"); err != nil {
				return err
			}
			p, err := c.start("scoring")
			if err != nil {
				return err
			}
			joinedAt = time.Now()
			c.logger.Info("joined", "proc", p.name)
		}
		time.Sleep(c.o.dayInterval)
	}
	got, err := settle(ctx, c.js, c.rd, c.w, c.allReady)
	if err != nil {
		return err
	}
	n, first := diffScores(base, got)
	c.rep.add("- scores: %d of %d accounts differ from the single-process run%s", n, len(base), suffix(first))
	alerts, err := openedAlerts(ctx, c.js)
	if err != nil {
		return err
	}
	var lost, extra, repeated []string
	byRule := map[string]int{}
	for id := range baseAlerts.count {
		if alerts.count[id] == 0 {
			lost = append(lost, id)
			byRule["lost "+baseAlerts.rule[id]]++
		}
	}
	for id, k := range alerts.count {
		if baseAlerts.count[id] == 0 {
			extra = append(extra, id)
			byRule["extra "+alerts.rule[id]]++
		}
		if k > 1 {
			repeated = append(repeated, id)
		}
	}
	c.rep.add("- alerts opened: %d (single process: %d); lost %d, repeated %d, not in the single-process run %d; by rule: %v",
		len(alerts.count), len(baseAlerts.count), len(lost), len(repeated), len(extra), byRule)
	c.trails(baseAlerts, alerts, lost, extra, repeated)
	total, stale, err := staleScores(ctx, c.js)
	if err != nil {
		return err
	}
	c.rep.add("- SCORES: %d messages; %d of an epoch below one published before them in their partition (a stale owner's write)", total, stale)

	fo, err := c.failoverOf(ctx, lostByKill, killedAt, time.Minute)
	if err != nil {
		return err
	}
	c.rep.add("- SIGKILL of %s mid-stream: its %d partitions scored by their new owners after %s (first) to %s (last)", killed.name, len(fo), fo[0].Round(time.Millisecond), fo[len(fo)-1].Round(time.Millisecond))
	after, err := owners(ctx, c.js, "scoring")
	if err != nil {
		return err
	}
	var moved []time.Duration
	for p, l := range after {
		if l.Member != before[p].Member && l.Epoch > before[p].Epoch {
			if at, _, ok := c.seen.after(p, before[p].Epoch); ok {
				moved = append(moved, at.Sub(joinedAt))
			}
		}
	}
	slices.Sort(moved)
	if len(moved) > 0 {
		c.rep.add("- a fourth scoring process joining while events arrive: %d partitions moved; each scored by its new owner %s to %s after the process started (its start included)", len(moved), moved[0].Round(time.Millisecond), moved[len(moved)-1].Round(time.Millisecond))
	}
	if n > 0 || len(lost) > 0 || len(repeated) > 0 || stale > 0 {
		return fmt.Errorf("chaos run failed its checks (see above)")
	}
	return nil
}

// trails adds to the report the alert events of the first accounts whose
// alerts differ from the single-process run's, both runs side by side.
func (c *chaos) trails(base, got opened, lost, extra, repeated []string) {
	seen := map[string]bool{}
	var accounts []string
	for _, id := range slices.Concat(lost, extra, repeated) {
		a := base.account[id]
		if a == "" {
			a = got.account[id]
		}
		if !seen[a] {
			seen[a] = true
			accounts = append(accounts, a)
		}
	}
	slices.Sort(accounts)
	for _, a := range accounts[:min(len(accounts), 5)] {
		c.rep.add("  - %s, single process:\n      %s\n    clustered:\n      %s", a,
			strings.Join(base.trail[a], "\n      "), strings.Join(got.trail[a], "\n      "))
	}
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

// failover SIGKILLs a scoring process -kills times while live events
// arrive, measuring SIGKILL to the first score of each lost partition's new
// owner, and starts a replacement after each.
func (c *chaos) failover(ctx context.Context) error {
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for seq := 0; lctx.Err() == nil; seq++ {
			if natsx.PublishAll(lctx, c.js, c.w.liveEvents(seq)) == nil {
				c.liveEvents.Add(natsx.DefaultPartitions)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var firsts, lasts []time.Duration
	for i := range c.o.kills {
		if err := waitUntil(ctx, time.Minute, "scoring balanced before a kill", func() bool {
			ls, err := owners(ctx, c.js, "scoring")
			if err != nil || len(ls) != natsx.DefaultPartitions {
				return false
			}
			return c.allReady()
		}); err != nil {
			return err
		}
		victim := c.live("scoring")[i%len(c.live("scoring"))]
		lost, err := c.leasesOf(ctx, victim.name)
		if err != nil {
			return err
		}
		victim.kill()
		t0 := time.Now()
		fo, err := c.failoverOf(ctx, lost, t0, time.Minute)
		if err != nil {
			return err
		}
		firsts, lasts = append(firsts, fo[0]), append(lasts, fo[len(fo)-1])
		c.logger.Info("failover", "kill", i+1, "partitions", len(fo), "first", fo[0], "last", fo[len(fo)-1])
		if _, err := c.start("scoring"); err != nil {
			return err
		}
	}
	slices.Sort(firsts)
	slices.Sort(lasts)
	c.rep.add("- failover over %d SIGKILLs (lease TTL %s), live events arriving: first lost partition scored by its new owner p50 %s, max %s; last lost partition p50 %s, max %s",
		len(firsts), c.o.leaseTTL, firsts[len(firsts)/2].Round(time.Millisecond), firsts[len(firsts)-1].Round(time.Millisecond),
		lasts[len(lasts)/2].Round(time.Millisecond), lasts[len(lasts)-1].Round(time.Millisecond))
	return nil
}

// throughput replays EVENTS from scratch with 1, 2 and 3 scoring processes.
func (c *chaos) throughput(ctx context.Context) error {
	for _, p := range c.live("scoring") {
		p.stop()
	}
	st, err := c.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	events := c.w.events + int(c.liveEvents.Load())
	c.logger.Info("throughput", "messages", info.State.Msgs)
	c.o.leaseTTL = c.o.replayTTL
	for k := 1; k <= 3; k++ {
		if err := c.js.DeleteObjectStore(ctx, "SCORING_SNAPSHOTS"); err != nil {
			return err
		}
		t0, nats0 := time.Now(), selfCPU()
		var ps []*proc
		for range k {
			p, err := c.start("scoring")
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		if err := waitUntil(ctx, 10*time.Minute, "replay done", func() bool {
			for _, p := range ps {
				if !p.ready() {
					return false
				}
			}
			return true
		}); err != nil {
			return err
		}
		took := time.Since(t0)
		var cpu time.Duration
		for _, p := range ps {
			cpu += p.cpu()
		}
		natsCPU := selfCPU() - nats0
		c.rep.add("- replay of EVENTS from scratch (%d messages, %d events) with %d scoring process(es), lease TTL %s: %s to all ready, %.0f events/s; scoring CPU %s (%.1f µs/event), NATS servers' CPU %s",
			info.State.Msgs, events, k, c.o.leaseTTL, took.Round(100*time.Millisecond), float64(events)/took.Seconds(), cpu.Round(100*time.Millisecond),
			float64(cpu.Microseconds())/float64(events), natsCPU.Round(100*time.Millisecond))
		for _, p := range ps {
			p.stop()
		}
	}
	return nil
}
