// Command bench measures Lodestar beside the raw limits of its own
// infrastructure, in one process run, and writes the report
// (docs/benchmarks.md and docs/benchmarks.json):
//
//   - baseline: raw JetStream async publish, pull consume, and both at once,
//     of the very payloads Lodestar publishes and of 256-byte messages;
//   - e2e: the highest sustained rate of Segment HTTP batches through
//     ingest, JetStream and scoring into Redis, by a bounded search, and its
//     ratio to the raw pipeline; with -cpuprofile / -memprofile, profiles of
//     a window at that rate;
//   - latency: event-to-score latency (HTTP 200 to score visible in Redis)
//     at 25%, 50% and 75% of the sustained rate, open loop;
//   - reads: GetHealthScore and ListHealthScores over gRPC beside the raw
//     Redis reads they make, and the cache's write rate beside pipelined SET;
//   - alert: event-to-alert latency (HTTP 200 to the signed webhook of
//     churn-alert at a local receiver) at 50% of the sustained rate, open
//     loop, with churn-alert added to the all-in-one;
//   - memory: bytes per account of the scoring core;
//   - restart: scoring's restart to caught up, from its snapshot and from
//     none.
//
// It starts what it measures: an embedded NATS server (pkg/natsembed, file
// store in a temporary directory, loopback) unless -nats.url is given, and
// the all-in-one in process (app.Run) on the Redis at -redis.addrs (one
// server: the bench reads its CPU time). Every
// flag of the lodestar binary applies to the Lodestar under test (for
// example -scoring.flush-interval, or -target=all to add the SCORES
// consumers to the default ingest,scoring), except the listen addresses,
// -data-dir and -config.file, which the bench sets. Every loop and wait is
// bounded; every address is loopback.
//
// Usage:
//
//	go run ./tools/bench -out docs/benchmarks.md -json docs/benchmarks.json
//	go run ./tools/bench -phases e2e,latency -duration 3s -out /tmp/b.md -json /tmp/b.json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/auth"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/pkg/natsembed"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	"github.com/lodestar-cs/lodestar/pkg/telemetry"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
	"github.com/lodestar-cs/lodestar/services/churnalert"
	"github.com/lodestar-cs/lodestar/services/ingest"
	"github.com/lodestar-cs/lodestar/services/scoring"
	"github.com/lodestar-cs/lodestar/tools/bench/internal/stats"
	"github.com/lodestar-cs/lodestar/tools/loadgen/sim"
)

// The phases, in the order they run.
const (
	phaseBaseline = "baseline"
	phaseE2E      = "e2e"
	phaseLatency  = "latency"
	phaseReads    = "reads"
	phaseAlert    = "alert"
	phaseMemory   = "memory"
	phaseRestart  = "restart"
)

// The bench's tenants and their keys. The keys only ever travel over
// loopback to the bench's own all-in-one.
const (
	benchTenant     = "bench"
	benchWriteKey   = "wk_bench_0123456789"
	benchAPIKey     = "ak_bench_0123456789"
	probeWriteKey   = "wk_probe_0123456789"
	restartTenant   = "restart"
	restartWriteKey = "wk_restart_0123456789"
	restartAPIKey   = "ak_restart_0123456789"
	memoryTenant    = "memory"
	// writeTenant receives the cache write baseline's copies of real scores.
	writeTenant = "bench-writes"
)

// cachePrefix starts the bench's Redis keys, apart from a local Lodestar's.
const cachePrefix = "lodestar-bench"

// options are the bench's own flags.
type options struct {
	out, jsonOut    string
	phases          config.StringList
	seed            uint64
	accounts        int
	poolEvents      int
	conns           int
	duration        time.Duration
	warmup          time.Duration
	searchFactor    float64
	searchPrecision float64
	searchSteps     int
	e2eStart        float64
	e2eRate         float64
	probeRate       float64
	latencyDuration time.Duration
	alertCatchUp    time.Duration
	readDuration    time.Duration
	readClients     int
	grpcConns       int
	memoryAccounts  intList
	memoryWorkdays  int
	restartAccounts int
	restartWorkdays int
	profile         bool
	cpuProfile      string
	memProfile      string
	quietWait       time.Duration
	quietCores      float64
	render          string
}

func defaultOptions() options {
	return options{
		phases:          config.StringList{phaseBaseline, phaseE2E, phaseLatency, phaseReads, phaseAlert, phaseMemory, phaseRestart},
		seed:            1,
		accounts:        10_000,
		poolEvents:      100_000,
		conns:           256,
		duration:        10 * time.Second,
		warmup:          3 * time.Second,
		searchFactor:    1.5,
		searchPrecision: 0.1,
		searchSteps:     10,
		e2eStart:        20_000,
		probeRate:       20,
		latencyDuration: 20 * time.Second,
		alertCatchUp:    5 * time.Minute,
		readDuration:    5 * time.Second,
		readClients:     64,
		grpcConns:       1,
		memoryAccounts:  intList{10_000, 100_000},
		memoryWorkdays:  5,
		restartAccounts: 100_000,
		restartWorkdays: 1,
		profile:         true,
		quietWait:       time.Minute,
		quietCores:      0.25,
	}
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.out, "out", o.out, "Write the markdown report here (required).")
	fs.StringVar(&o.jsonOut, "json", o.jsonOut, "Write the JSON report here.")
	fs.Var(&o.phases, "phases", "Comma list of phases to run: "+strings.Join(o.phases, ", ")+".")
	fs.Uint64Var(&o.seed, "seed", o.seed, "Seed of the simulated products.")
	fs.IntVar(&o.accounts, "accounts", o.accounts, "Accounts of the product whose events make the end-to-end load.")
	fs.IntVar(&o.poolEvents, "pool.events", o.poolEvents, "Distinct simulated events the load cycles through (stamped with new ids and times on every send).")
	fs.IntVar(&o.conns, "e2e.conns", o.conns, "HTTP connections of the load generator: at most this many batches in flight.")
	fs.DurationVar(&o.duration, "duration", o.duration, "Measurement window of each step (raw pipelines, end-to-end search, profile).")
	fs.DurationVar(&o.warmup, "warmup", o.warmup, "Load before each measurement window, not measured.")
	fs.Float64Var(&o.searchFactor, "search.factor", o.searchFactor, "Rate multiplier of the sustained-rate searches before they bisect.")
	fs.Float64Var(&o.searchPrecision, "search.precision", o.searchPrecision, "Searches stop when the passing and failing rates are this close (relative).")
	fs.IntVar(&o.searchSteps, "search.steps", o.searchSteps, "Most steps of a sustained-rate search.")
	fs.Float64Var(&o.e2eStart, "e2e.start", o.e2eStart, "First offered rate of the end-to-end search, events/s.")
	fs.Float64Var(&o.e2eRate, "e2e.rate", o.e2eRate, "Take this as the sustained rate (events/s) instead of searching.")
	fs.Float64Var(&o.probeRate, "probe.rate", o.probeRate, "Latency probes per second.")
	fs.DurationVar(&o.latencyDuration, "latency.duration", o.latencyDuration, "Probing time at each load level.")
	fs.DurationVar(&o.alertCatchUp, "alert.catch-up", o.alertCatchUp, "Alert phase: longest wait, under load, for churn-alert to keep pace with scoring's changes before probing.")
	fs.DurationVar(&o.readDuration, "reads.duration", o.readDuration, "Time of each read and write measurement.")
	fs.IntVar(&o.readClients, "reads.clients", o.readClients, "Concurrent clients of the throughput reads.")
	fs.IntVar(&o.grpcConns, "reads.conns", o.grpcConns, "gRPC connections the read clients share.")
	fs.Var(&o.memoryAccounts, "memory.accounts", "Comma list of account counts to measure bytes per account at.")
	fs.IntVar(&o.memoryWorkdays, "memory.workdays", o.memoryWorkdays, "Workdays of simulated history replayed for the memory figures.")
	fs.IntVar(&o.restartAccounts, "restart.accounts", o.restartAccounts, "Accounts of the restart phase.")
	fs.IntVar(&o.restartWorkdays, "restart.workdays", o.restartWorkdays, "Workdays of simulated history stored before the restarts.")
	fs.DurationVar(&o.quietWait, "quiet.wait", o.quietWait, "Before each measurement, wait at most this long for other processes on the machine to go quiet.")
	fs.Float64Var(&o.quietCores, "quiet.cores", o.quietCores, "Other processes count as quiet below this many cores.")
	fs.BoolVar(&o.profile, "profile", o.profile, "Profile one more window at the sustained end-to-end rate, and summarise the profiles in the report.")
	fs.StringVar(&o.render, "render", o.render, "Measure nothing: write the markdown report (-out) from this JSON report of an earlier run.")
	fs.StringVar(&o.cpuProfile, "cpuprofile", o.cpuProfile, "Keep that window's CPU profile here.")
	fs.StringVar(&o.memProfile, "memprofile", o.memProfile, "Keep the allocation profile after that window here (and the one before it in <file>.base).")
}

func (o *options) validate() error {
	var errs []error
	if o.out == "" {
		errs = append(errs, errors.New("-out is required"))
	}
	for _, p := range o.phases {
		if !slices.ContainsFunc(phaseTitles, func(t struct{ phase, what string }) bool { return t.phase == p }) {
			errs = append(errs, fmt.Errorf("-phases: unknown phase %q", p))
		}
	}
	if o.accounts < 1 || o.poolEvents < batchEvents || o.conns < 1 || o.duration <= 0 || o.warmup < 0 ||
		o.probeRate <= 0 || o.latencyDuration <= 0 || o.alertCatchUp <= 0 || o.readDuration <= 0 || o.readClients < 1 || o.grpcConns < 1 ||
		o.memoryWorkdays < 1 || o.restartAccounts < 1 || o.restartWorkdays < 1 || o.e2eRate < 0 {
		errs = append(errs, errors.New("counts, rates and durations must be positive"))
	}
	if o.latencyDuration.Seconds()*o.probeRate*3 >= maxProbes {
		errs = append(errs, fmt.Errorf("-latency.duration × -probe.rate × 3 must stay under %d probes", maxProbes))
	}
	return errors.Join(errs...)
}

func (o *options) runs(phase string) bool { return slices.Contains(o.phases, phase) }

// intList is a comma list of integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		*l = append(*l, n)
	}
	return nil
}

// quiet waits for the machine's other processes to go quiet before a
// measurement, and says so when they do not.
func (b *bench) quiet(ctx context.Context, what string) {
	if others := waitQuiet(ctx, b.rc, b.cfg.quietWait, b.cfg.quietCores); others >= b.cfg.quietCores {
		b.logger.Warn("other processes busy; measuring anyway", "before", what, "other_cores", others)
	}
}

// bench is one run: what it started and what the phases found.
type bench struct {
	cfg     options
	lcfg    app.Config   // the Lodestar under test
	logger  *slog.Logger // the bench's progress
	lsLog   *slog.Logger // Lodestar's own log
	rc      *redis.Client
	dir     string
	runID   string
	now     time.Time
	machine Machine
	report  *Report

	natsSrv   *natsembed.Server // until stopMain; nil with -nats.url
	embedded  bool              // NATS is natsSrv, not -nats.url
	poolSize  int               // events in pool
	nc        *nats.Conn
	js        jetstream.JetStream
	ls        *lodestar
	pool      []*template
	shapes    []msgShape
	scorecard *scoringv1.Scorecard
	load      *driver
	probe     *prober
	product   *sim.Product // the simulated product of the load

	raw           map[string]rawResult
	sustained     float64
	e2eBest       *stepResult
	e2eFail       *stepResult
	latencies     map[float64]stats.Summary
	alertResult   *alertResult
	alertTargets  string                   // the targets the alert phase added churn-alert to, if it did
	readResults   map[string][2]readResult // name/clients -> gRPC, raw
	memResults    []memoryResult
	restartResult *restartResult
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := parse(args, logger)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if b.cfg.render != "" {
		if err := render(b.cfg.render, b.cfg.out); err != nil {
			logger.Error("render failed", "err", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.run(ctx, args); err != nil {
		logger.Error("bench failed", "err", err)
		return 1
	}
	return 0
}

// parse reads the bench's flags and the Lodestar flags into a bench.
func parse(args []string, logger *slog.Logger) (*bench, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := defaultOptions()
	o.register(fs)
	l := app.DefaultConfig()
	// The pipeline the issue measures; -target=all adds the SCORES
	// consumers (churn-alert, renewal-forecast), which share the CPU.
	l.Targets = config.StringList{ingest.Target, scoring.Target}
	l.Redis.Addrs, l.LogLevel = config.StringList{"127.0.0.1:6379"}, "warn"
	// The alert phase's webhook receiver is plain http on loopback.
	l.ChurnAlert.AllowHTTPEndpoints = true
	l.ChurnAlert.EndpointAllowList = config.StringList{"127.0.0.1"}
	// The bench searches for the most the machine takes, with 100k-account
	// products: the default per-tenant limits would measure themselves.
	l.Ingest.DefaultRate = auth.RateLimit{}
	l.Ingest.Accounts.MaxAccounts, l.Ingest.Accounts.NewAccountsPerHour = 0, 0
	l.RegisterFlags(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if !l.Redis.Enabled() || l.Redis.IsCluster() {
		return nil, errors.New("-redis.addrs must name one Redis server, not a cluster: the bench measures Lodestar on Redis and reads that server's CPU time")
	}
	level, err := telemetry.ParseLevel(l.LogLevel)
	if err != nil {
		return nil, err
	}
	l.Cache.KeyPrefix = cachePrefix
	return &bench{
		cfg: o, lcfg: l, logger: logger,
		lsLog:       telemetry.NewLogger(os.Stderr, level, l.LogFormat),
		raw:         map[string]rawResult{},
		latencies:   map[float64]stats.Summary{},
		readResults: map[string][2]readResult{},
	}, nil
}

func (b *bench) run(ctx context.Context, args []string) (err error) {
	start := time.Now()
	b.now = start.UTC().Truncate(time.Hour)
	b.sustained = b.cfg.e2eRate // the e2e phase searches for it when not given
	b.runID = strconv.FormatInt(start.UnixNano(), 36)
	if b.dir, err = os.MkdirTemp("", "lodestar-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	rc, err := b.lcfg.Redis.NewClient()
	if err != nil {
		return err
	}
	b.rc = rc.(*redis.Client) // one server: parse refused a cluster
	defer b.rc.Close()
	if err := b.rc.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w (start it, or give -redis.addrs)", b.rc.Options().Addr, err)
	}
	b.machine = describeMachine(ctx, b.rc)
	b.report = &Report{Generated: start, Command: "go run ./tools/bench " + strings.Join(args, " "), Machine: b.machine}
	b.logger.Info("bench starting", "phases", b.cfg.phases.String(), "dir", b.dir, "cpus", b.machine.CPUs)

	defer func() {
		err = errors.Join(err, b.stopMain())
		for _, t := range []string{benchTenant, probeTenant, alertTenant} {
			err = errors.Join(err, deleteKeys(context.WithoutCancel(ctx), b.rc, cachePrefix+":{"+t+"}:*"))
		}
	}()
	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, ph := range []struct {
		name string
		run  func(context.Context) error
	}{
		{phaseBaseline, b.baseline},
		{phaseE2E, b.e2e},
		{phaseLatency, b.latency},
		{phaseReads, b.reads},
		{phaseAlert, b.alert},
		{phaseMemory, b.memory},
		{phaseRestart, b.restart},
	} {
		if !b.cfg.runs(ph.name) {
			continue
		}
		if ph.name == phaseMemory {
			// The last phases measure the heap and restarts: nothing else runs.
			if err := b.stopMain(); err != nil {
				return err
			}
		}
		b.logger.Info("phase", "name", ph.name)
		if err := ph.run(ctx); err != nil {
			return fmt.Errorf("phase %s: %w", ph.name, err)
		}
	}
	for _, s := range b.report.Sections {
		s.Reproduce = b.reproduce(args, s.Phase)
	}
	b.report.Duration = time.Since(start).Round(time.Second).String()
	b.report.Settings = b.settings()
	b.report.Targets = b.targets()
	return b.write()
}

// setup writes the tenants, starts NATS and the all-in-one, pushes the
// product's accounts, builds the event pool and calibrates the payloads.
func (b *bench) setup(ctx context.Context) error {
	tenants := filepath.Join(b.dir, "tenants.yaml")
	yaml := fmt.Sprintf("tenants:\n"+
		"  - {id: %s, write_keys: [%q], api_keys: [%q]}\n"+
		"  - {id: %s, write_keys: [%q], api_keys: []}\n"+
		"  - {id: %s, write_keys: [%q], api_keys: [%q]}\n"+
		"  - {id: %s, write_keys: [%q], api_keys: [%q]}\n",
		benchTenant, benchWriteKey, auth.HashKey(benchAPIKey),
		probeTenant, probeWriteKey,
		restartTenant, restartWriteKey, auth.HashKey(restartAPIKey),
		alertTenant, alertWriteKey, auth.HashKey(alertAPIKey))
	if err := os.WriteFile(tenants, []byte(yaml), 0o600); err != nil {
		return err
	}
	b.lcfg.TenantsFile, b.lcfg.DataDir = tenants, filepath.Join(b.dir, "lodestar")
	for _, t := range []string{benchTenant, probeTenant, restartTenant, writeTenant, alertTenant} {
		if err := deleteKeys(ctx, b.rc, cachePrefix+":{"+t+"}:*"); err != nil {
			return fmt.Errorf("clear old bench keys: %w", err)
		}
	}
	if !slices.ContainsFunc(b.cfg.phases, func(p string) bool { return p != phaseRestart }) {
		return nil // the restart phase brings its own NATS and all-in-one
	}
	if err := b.startNATS(ctx, b.lcfg.NATSURL == "", "nats"); err != nil {
		return err
	}
	var err error
	if b.lcfg.HTTPListenAddr, err = freeAddr(); err != nil {
		return err
	}
	if b.lcfg.GRPCListenAddr, err = freeAddr(); err != nil {
		return err
	}
	if b.lcfg.HTTP.AdminListenAddr, err = freeAddr(); err != nil {
		return err
	}
	cfg := b.lcfg
	if alertAlone(b.cfg.phases) {
		// Nothing before the alert phase measures without churn-alert; the
		// restart phase keeps b.lcfg's targets.
		var added bool
		if cfg.Targets, added = withTarget(cfg.Targets, churnalert.Target); added {
			b.alertTargets = cfg.Targets.String()
		}
	}
	if b.ls, err = startLodestar(ctx, cfg, b.lsLog, 2*time.Minute); err != nil {
		return err
	}
	clients, closeClients, err := b.scoringClients(1)
	if err != nil {
		return err
	}
	defer closeClients()
	sc, err := clients[0].GetScorecard(ctx, &scoringv1.GetScorecardRequest{})
	if err != nil {
		return fmt.Errorf("get scorecard: %w", err)
	}
	b.scorecard = sc.GetScorecard()

	p, err := sim.New(sim.Config{Seed: b.cfg.seed, Accounts: b.cfg.accounts, Now: b.now, Mix: sim.DefaultMix()})
	if err != nil {
		return err
	}
	b.product = p
	if err := pushAccounts(ctx, b.lcfg.GRPCListenAddr, benchAPIKey, p); err != nil {
		return err
	}
	if b.pool, err = encodeBatches(recentEvents(p, b.now, b.cfg.poolEvents), true, "b"+b.runID+"-"); err != nil {
		return err
	}
	b.poolSize = len(b.pool) * batchEvents
	b.load = newDriver(b.lcfg.HTTPListenAddr, benchWriteKey, b.cfg.conns)
	b.probe = &prober{
		d:     newDriver(b.lcfg.HTTPListenAddr, probeWriteKey, 16),
		cache: cache.NewRedis(b.rc, cache.Config{KeyPrefix: cachePrefix}),
		base:  b.now.Add(-probeEpoch),
	}
	b.logger.Info("lodestar ready", "started_in", b.ls.Started, "pool_batches", len(b.pool), "accounts", b.cfg.accounts)
	return b.calibrate(ctx)
}

// startNATS starts an embedded NATS server with its store in b.dir/dir when
// embedded is set, and connects the bench to it (or to -nats.url).
func (b *bench) startNATS(ctx context.Context, embedded bool, dir string) error {
	if embedded {
		srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(b.dir, dir), Port: -1})
		if err != nil {
			return err
		}
		b.natsSrv, b.embedded = srv, true
		b.lcfg.NATSURL = srv.ClientURL()
	}
	var err error
	if b.nc, err = natsx.Connect(ctx, b.lcfg.NATSURL, "bench", b.logger); err != nil {
		return err
	}
	if b.js, err = natsx.NewJetStream(b.nc); err != nil {
		return err
	}
	return nil
}

// reproduce is the command that measures a phase again with this run's
// settings: the e2e ratio needs the baseline, and latency the sustained rate.
func (b *bench) reproduce(args []string, phase string) string {
	cmd := []string{"go run ./tools/bench"}
	cmd = append(cmd, dropFlags(args, "out", "json", "phases", "cpuprofile", "memprofile", "e2e.rate")...)
	switch phase {
	case phaseE2E:
		phase = phaseBaseline + "," + phaseE2E
	case phaseLatency, phaseAlert:
		cmd = append(cmd, fmt.Sprintf("-e2e.rate %.0f", b.sustained))
	}
	return strings.Join(append(cmd, "-phases "+phase, "-out /tmp/bench.md"), " ")
}

// dropFlags returns args without the named flags, given as -name value or
// -name=value (one or two dashes).
func dropFlags(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !slices.Contains(names, name) {
			out = append(out, a)
			continue
		}
		if !hasValue {
			i++ // the value is the next argument
		}
	}
	return out
}

// stopMain stops the all-in-one and NATS of the first phases and drops the
// connections to them, so that nothing of them is left to free while the
// memory phase measures the heap.
func (b *bench) stopMain() error {
	var err error
	if b.ls != nil {
		err = b.ls.Stop()
		b.ls = nil
	}
	for _, d := range []*driver{b.load, b.probe.driver()} {
		if d != nil {
			d.client.CloseIdleConnections()
		}
	}
	if b.nc != nil {
		b.nc.Close()
		b.nc = nil
	}
	if b.natsSrv != nil {
		b.natsSrv.Shutdown()
		b.natsSrv = nil
	}
	b.pool, b.product = nil, nil
	return err
}

// settings lists the knobs of the run.
func (b *bench) settings() []Setting {
	o, l := b.cfg, b.lcfg
	targets := l.Targets.String()
	if b.alertTargets != "" {
		targets += " (" + b.alertTargets + " in the alert phase)"
	}
	nats := "embedded (pkg/natsembed), file store in a temporary directory, clients over loopback TCP"
	if !b.embedded {
		nats = l.NATSURL
	}
	return []Setting{
		{"phases", o.phases.String()},
		{"Lodestar targets", targets},
		{"NATS", nats},
		{"Redis", b.rc.Options().Addr},
		{"simulated product", fmt.Sprintf("seed %d, %d accounts (tools/loadgen/sim, default fate mix), CRM facts pushed through AccountService", o.seed, o.accounts)},
		{"load", fmt.Sprintf("%d distinct events in %d-event Segment batches, message ids and times stamped anew per send; %d HTTP connections, open loop", b.poolSize, batchEvents, o.conns)},
		{"steps", fmt.Sprintf("%s warm-up + %s measured; searches ×%.2f then bisect to %.0f%%, at most %d steps", o.warmup, o.duration, o.searchFactor, 100*o.searchPrecision, o.searchSteps)},
		{"keep-up test", fmt.Sprintf("producer stores ≥ %.0f%% of the offered rate, backlog grows < %.0f%% of it per second, ends < %.1f s of it", 100*stats.DefaultKeepUp.MinProduced, 100*stats.DefaultKeepUp.MaxGrowth, stats.DefaultKeepUp.MaxLag)},
		{"latency probes", fmt.Sprintf("%.0f/s for %s at each load level (alert probes: the same, at %.0f%% of sustained)", o.probeRate, o.latencyDuration, 100*alertShare)},
		{"reads", fmt.Sprintf("%s per measurement, 1 and %d clients over %d gRPC connections", o.readDuration, o.readClients, o.grpcConns)},
		{"memory", fmt.Sprintf("%v accounts, %d workdays of history", []int(o.memoryAccounts), o.memoryWorkdays)},
		{"restart", fmt.Sprintf("%d accounts, %d workday(s) of history", o.restartAccounts, o.restartWorkdays)},
		{"quiet machine", fmt.Sprintf("each measurement waits up to %s for other processes to use < %.2f cores (the VM is shared); CPU figures list what others used", o.quietWait, o.quietCores)},
		{"-nats.partitions", strconv.Itoa(l.Limits.Partitions)},
		{"-scoring.flush-interval", l.Scoring.FlushInterval.String()},
		{"-scoring.index-interval", l.Scoring.IndexInterval.String()},
		{"-scoring.snapshot-interval", l.Scoring.SnapshotInterval.String()},
		{"-scoring.window-days", strconv.Itoa(l.Scoring.WindowDays)},
		{"-nats.duplicate-window", l.Limits.DuplicateWindow.String()},
		{"async publish window", fmt.Sprintf("%d PubAcks in flight (natsx.MaxPendingAcks)", natsx.MaxPendingAcks)},
		{"-cache.history-length", strconv.Itoa(l.Cache.HistoryLength)},
	}
}

// render writes the markdown report of a JSON report, so that its
// presentation can change without measuring again.
func render(jsonPath, out string) error {
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", jsonPath, err)
	}
	var md bytes.Buffer
	if err := r.writeMarkdown(&md); err != nil {
		return err
	}
	return os.WriteFile(out, md.Bytes(), 0o644)
}

// write writes the markdown and JSON reports.
func (b *bench) write() error {
	var md, js bytes.Buffer
	if err := b.report.writeMarkdown(&md); err != nil {
		return err
	}
	if err := os.WriteFile(b.cfg.out, md.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if b.cfg.jsonOut != "" {
		if err := b.report.writeJSON(&js); err != nil {
			return err
		}
		if err := os.WriteFile(b.cfg.jsonOut, js.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	b.logger.Info("report written", "markdown", b.cfg.out, "json", b.cfg.jsonOut, "took", b.report.Duration)
	return nil
}
